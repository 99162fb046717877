from .sampler import DifferentialEvolutionSampler

__all__ = ["DifferentialEvolutionSampler"]
