from .sampler import IteratedLocalSearchSampler

__all__ = ["IteratedLocalSearchSampler"]
