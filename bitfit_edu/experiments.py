"""Experiment grids and the resumable grid runner.

An experiment is a list of run configurations built from a profile. ``run_grid`` skips every run whose
record is already in the store and writes each new record the moment its run finishes, so a grid can
be stopped at any point and resumed later, by another session, on another machine.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from .errors import unknown_choice
from .profiles import Profile
from .results import ResultStore
from .training import RunConfig, run

# Method variants, by the label used in tables: (method, bias groups).
VARIANTS: dict[str, tuple[str, tuple[str, ...] | None]] = {
    "full": ("full", None),
    "bitfit": ("bitfit", None),
    "frozen": ("frozen", None),
    "bitfit:b_q+b_m2": ("bitfit", ("b_q", "b_m2")),
    "bitfit:b_m2": ("bitfit", ("b_m2",)),
    "bitfit:b_q": ("bitfit", ("b_q",)),
    "rand_uniform": ("rand_uniform", None),
    "rand_row_col": ("rand_row_col", None),
}
MAIN = ("full", "bitfit", "frozen")
ABLATION = ("bitfit:b_q+b_m2", "bitfit:b_m2", "bitfit:b_q", "rand_uniform", "rand_row_col")
LR_SWEEP = {"full": (2e-5, 5e-5, 1e-4, 2e-4), "bitfit": (1e-4, 3e-4, 1e-3, 3e-3), "frozen": (1e-4, 1e-3, 1e-2)}


def variant(label: str) -> tuple[str, tuple[str, ...] | None]:
    if label not in VARIANTS:
        raise unknown_choice("method variant", label, VARIANTS)
    return VARIANTS[label]


def experiment_configs(profile: Profile, experiment: str, tasks: Iterable[str] | None = None,
                       seeds: Iterable[int] | None = None) -> list[RunConfig]:
    """The runs of a named experiment, seed by seed (a grid stopped early holds whole seeds first).

    'main': Full-FT, BitFit, Frozen on the profile's tasks. 'ablation': the bias subsets and random
    baselines. 'lr_sweep': every method family at several rates on the profile's sweep task, first
    seed only unless ``seeds`` says otherwise (the paper, too, searched rates minimally).
    """
    if experiment == "main":
        runs = [(variant(label), None) for label in MAIN]
    elif experiment == "ablation":
        runs = [(variant(label), None) for label in ABLATION]
    elif experiment == "lr_sweep":
        # rate by rate across the families, so that a sweep stopped early has covered each of them
        runs = [(variant(label), rates[i]) for i in range(max(map(len, LR_SWEEP.values())))
                for label, rates in LR_SWEEP.items() if i < len(rates)]
    else:
        raise unknown_choice("experiment", experiment, ("main", "ablation", "lr_sweep"))
    sweep = experiment == "lr_sweep"
    tasks = tuple(tasks or ((profile.sweep_task,) if sweep else profile.tasks))
    seeds = tuple(seeds if seeds is not None else (profile.seeds[:1] if sweep else profile.seeds))
    return [RunConfig.from_profile(profile, task, method, groups=groups, seed=seed, learning_rate=lr)
            for seed in seeds for task in tasks for (method, groups), lr in runs]


@dataclass
class GridReport:
    """What a grid call did: runs it trained (their files) and runs it found finished."""

    trained: list[Path] = field(default_factory=list)
    skipped: int = 0


def pending(configs: list[RunConfig], store: ResultStore) -> list[RunConfig]:
    """The configurations without a finished record. Checks every existing file first, so a corrupt or
    foreign file stops the grid before any time is spent training."""
    return [c for c in configs if store.finished(c) is None]


def run_grid(configs: list[RunConfig], store: ResultStore, glue_dir=None, progress: bool = True,
             run_fn: Callable[..., dict] = run) -> GridReport:
    """Train every pending run, writing each record as soon as it finishes."""
    todo = pending(configs, store)
    report = GridReport(skipped=len(configs) - len(todo))
    writer = int(os.environ.get("RANK", "0")) == 0  # under torchrun, one process writes the records
    for config in tqdm(todo, desc="grid", unit="run", disable=not progress or len(todo) < 2):
        record = run_fn(config, glue_dir=glue_dir, progress=progress)
        if writer:
            report.trained.append(store.write(record))
    return report
