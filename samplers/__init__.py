"""Optuna samplers of helion_optuna, one folder each (OptunaHub package layout)."""

from .differential_evolution import DifferentialEvolutionSampler
from .local_search import IteratedLocalSearchSampler

__all__ = ["DifferentialEvolutionSampler", "IteratedLocalSearchSampler"]
