from .sampler import ScreenedSearchSampler

__all__ = ["ScreenedSearchSampler"]
