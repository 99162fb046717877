"""Optuna samplers of helion_optuna, one folder each (OptunaHub package layout)."""

from samplers.differential_evolution import DifferentialEvolutionSampler

__all__ = ["DifferentialEvolutionSampler"]
