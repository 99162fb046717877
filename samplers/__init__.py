"""Optuna samplers of helion_optuna, one folder each (OptunaHub package layout)."""
