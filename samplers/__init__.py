"""Optuna samplers of helion_optuna, one folder each (OptunaHub package layout)."""

from samplers.differential_evolution import DifferentialEvolutionSampler
from samplers.screened_search import ScreenedSearchSampler

__all__ = ["DifferentialEvolutionSampler", "ScreenedSearchSampler"]
