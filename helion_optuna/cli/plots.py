"""``helion-optuna plot``: a study's optimization history, parameter importances, and the
time of each config by sampler, drawn by ``optuna.visualization``: into an HTML page
(plotly) or, through its matplotlib twin, a PNG image.

Only the study's evaluations are plotted: a trial that repeated a config evaluated before
(user attribute ``duplicate_of``) would count that config twice. "By sampler" groups the
evaluations by the sampler that proposed them (user attribute ``sampler``: a study continued
with another sampler has several), each numbered from its first.
"""

from __future__ import annotations

import argparse
import io
import warnings
from pathlib import Path

import optuna
from optuna.exceptions import ExperimentalWarning
from optuna.trial import TrialState

from helion_optuna.errors import PlotError
from helion_optuna.storage import records

__all__ = ["PlotError", "out_path", "write"]

SUFFIXES = (".html", ".png")
TARGET = "time (ms)"
PER_SAMPLER = "evaluation (numbered per sampler)"


def out_path(text: str) -> Path:
    """``--out``'s argparse type: a path ending in one of SUFFIXES."""
    path = Path(text)
    if path.suffix.lower() not in SUFFIXES:
        raise argparse.ArgumentTypeError(
            f"{text!r} must end in {' or '.join(SUFFIXES)} (an HTML page or a PNG image)")
    return path


def write(study: optuna.Study, path: Path) -> None:
    """Draw the three plots of ``study`` into ``path`` (its suffix picks the format)."""
    evaluations = [t for t in study.get_trials(deepcopy=False)
                   if t.state.is_finished() and not records.is_duplicate(t)]
    if sum(t.state == TrialState.COMPLETE for t in evaluations) < 2:
        raise PlotError(f"study {study.study_name!r} has fewer than 2 configs that ran "
                        "correctly: nothing to plot")
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # not a line per study copied
    try:
        whole = _study(study.study_name, evaluations)
        samplers = sorted({records.sampler_of(t) for t in evaluations})
        by_sampler = [_study(s, [t for t in evaluations if records.sampler_of(t) == s])
                      for s in samplers]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)  # optuna's matplotlib plots
            if path.suffix.lower() == ".html":
                _write_html(whole, by_sampler, path)
            else:
                _write_png(whole, by_sampler, path)
    finally:
        optuna.logging.set_verbosity(verbosity)


def _study(name: str, trials: list) -> optuna.Study:
    """An in-memory study of ``trials`` (renumbered from 0), named ``name``."""
    copy = optuna.create_study(study_name=name, direction="minimize")
    copy.add_trials(trials)
    return copy


def _by_sampler_title(by_sampler: list[optuna.Study]) -> str:
    """The title; optuna's legend names the samplers only when there are several."""
    title = "Time of each config by sampler"
    return title if len(by_sampler) > 1 else f"{title}: {by_sampler[0].study_name}"


def _write_html(whole: optuna.Study, by_sampler: list[optuna.Study], path: Path) -> None:
    try:
        from optuna import visualization as vis
    except ImportError as e:
        raise PlotError(f"an HTML plot needs plotly ({e}): pip install "
                        "'helion-optuna[plot]'") from e
    if not vis.is_available():
        raise PlotError("an HTML plot needs plotly: pip install 'helion-optuna[plot]'")
    figures = [vis.plot_optimization_history(whole, target_name=TARGET),
               vis.plot_param_importances(whole, target_name=TARGET),
               vis.plot_optimization_history(by_sampler, target_name=TARGET)]
    figures[0].update_layout(title=f"{whole.study_name}: optimization history")
    figures[2].update_layout(title=_by_sampler_title(by_sampler))
    figures[2].update_xaxes(title=PER_SAMPLER)
    body = "\n".join(f.to_html(full_html=False, include_plotlyjs=i == 0)
                     for i, f in enumerate(figures))
    path.write_text(f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>"
                    f"{whole.study_name}</title></head><body>\n{body}\n</body></html>\n")


def _write_png(whole: optuna.Study, by_sampler: list[optuna.Study], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display needed
        import matplotlib.pyplot as plt
        import numpy as np
        from optuna.visualization import matplotlib as vis
    except ImportError as e:
        raise PlotError(f"a PNG plot needs matplotlib ({e}): pip install "
                        "'helion-optuna[plot]'") from e
    axes = [vis.plot_optimization_history(whole, target_name=TARGET),
            vis.plot_param_importances(whole, target_name=TARGET),
            vis.plot_optimization_history(by_sampler, target_name=TARGET)]
    axes[0].set_title(f"{whole.study_name}: optimization history")
    axes[2].set_title(_by_sampler_title(by_sampler))
    axes[2].set_xlabel(PER_SAMPLER)
    images = []
    for ax in axes:  # optuna draws each on a figure of its own: stack their images
        buffer = io.BytesIO()
        ax.figure.savefig(buffer, format="png", bbox_inches="tight", dpi=100)
        plt.close(ax.figure)
        buffer.seek(0)
        images.append(plt.imread(buffer))
    width = max(image.shape[1] for image in images)
    padded = [np.pad(image, ((0, 0), (0, width - image.shape[1]), (0, 0)), constant_values=1)
              for image in images]
    plt.imsave(path, np.concatenate(padded))
