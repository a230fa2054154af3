"""Experiment grids and the resumable grid runner.

An experiment is a list of run configurations built from a profile. ``run_grid`` skips every run whose
record is already in the store and writes each new record the moment its run finishes, so a grid can
be stopped at any point and resumed later, by another session, on another machine.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from . import paper
from .biases import head_parameters
from .errors import BitFitError, unknown_choice
from .methods import parse_label, prepare
from .profiles import Profile
from .readout import load_classifier
from .results import ResultStore
from .runs import RunConfig
from .training import is_main_process, run

MAIN = ("full", "bitfit", "frozen")
ABLATION = ("bitfit:b_q+b_m2", "bitfit:b_m2", "bitfit:b_q", "rand_uniform", "rand_row_col")
EXPERIMENTS = ("main", "ablation", "lr_sweep", "checks", "size_curve")
SIZE_CURVE = ("full", "bitfit")
VARIANTS = (*MAIN, *ABLATION)  # method labels (methods.method_label / parse_label)
LR_SWEEP = {"full": (2e-5, 5e-5, 1e-4, 2e-4), "bitfit": (1e-4, 3e-4, 1e-3, 3e-3), "frozen": (1e-4, 1e-3, 1e-2)}


def variant_parameters(model_name: str, readout: str, labels: Iterable[str] = VARIANTS,
                       num_labels: int = 2) -> pd.DataFrame:
    """What each method variant trains in the encoder (head excluded), counted on the real model as
    ``prepare`` leaves it (random masks drawn with seed 0), its share of the encoder, and the paper's
    %param column (BERT-base) beside it."""
    rows = []
    for label in labels:
        method, groups = parse_label(label)
        model = load_classifier(model_name, num_labels, readout, seed=0)
        prepared = prepare(model, method, groups or "all", seed=0)
        head = sum(p.numel() for p in head_parameters(model).values())
        trained = prepared.trainable_count(include_head=False)
        rows.append({"variant": label, "trained entries (excl. head)": trained,
                     "% of encoder": 100 * trained / (prepared.total_count() - head),
                     "paper: %param (BERT-base)": paper.BERT_BASE_PARAM_PERCENT[label]})
    return pd.DataFrame(rows).set_index("variant")


def experiment_configs(profile: Profile, experiment: str, tasks: Iterable[str] | None = None,
                       seeds: Iterable[int] | None = None) -> list[RunConfig]:
    """The runs of a named experiment, seed by seed (a grid stopped early holds whole seeds first).

    'main': Full-FT, BitFit, Frozen on the profile's tasks. 'ablation': the bias subsets and random
    baselines on the profile's ablation tasks. 'lr_sweep': every method family at several rates on the
    profile's sweep task with its sweep settings, first seed only unless ``seeds`` says otherwise (the
    paper, too, searched rates minimally). 'checks' and 'size_curve': see :func:`check_configs` and
    :func:`size_curve_configs`.
    """
    if experiment in ("checks", "size_curve") and tasks:
        raise BitFitError(f"experiment {experiment!r} runs on the profile's own task: drop the task list")
    if experiment == "checks":
        return check_configs(profile)
    if experiment == "size_curve":
        return size_curve_configs(profile, seeds)
    if experiment == "main":
        runs = [(parse_label(label), None) for label in MAIN]
    elif experiment == "ablation":
        runs = [(parse_label(label), None) for label in ABLATION]
    elif experiment == "lr_sweep":
        # rate by rate across the families, so that a sweep stopped early has covered each of them
        runs = [(parse_label(label), rates[i]) for i in range(max(map(len, LR_SWEEP.values())))
                for label, rates in LR_SWEEP.items() if i < len(rates)]
    else:
        raise unknown_choice("experiment", experiment, EXPERIMENTS)
    sweep = experiment == "lr_sweep"
    default_tasks = {"lr_sweep": (profile.sweep_task,), "ablation": profile.ablation_tasks or profile.tasks}
    tasks = tuple(tasks or default_tasks.get(experiment, profile.tasks))
    seeds = tuple(seeds if seeds is not None else (profile.seeds[:1] if sweep else profile.seeds))
    overrides = profile.sweep_settings if sweep else {}
    return [RunConfig.from_profile(profile, task, method, groups=groups, seed=seed, learning_rate=lr, **overrides)
            for seed in seeds for task in tasks for (method, groups), lr in runs]


def check_configs(profile: Profile) -> list[RunConfig]:
    """The runs that justify two settings of a profile, on its sweep task, seed 0, at the swept rates:
    BitFit for three times the sweep's epochs (where does its dev curve level off?) and Full-FT as in the
    sweep, both in the profile's number format. Beside the sweep's own runs they show whether that format
    (e.g. bf16 autocast) changes the scores: with a constant learning rate, the first epochs of a run do not
    depend on how many follow."""
    sweep_epochs = profile.sweep_settings.get("epochs", profile.epochs_for("bitfit"))
    return [RunConfig.from_profile(profile, profile.sweep_task, "bitfit", epochs=3 * sweep_epochs),
            RunConfig.from_profile(profile, profile.sweep_task, "full", epochs=sweep_epochs)]


def size_curve_configs(profile: Profile, seeds: Iterable[int] | None = None) -> list[RunConfig]:
    """Full-FT and BitFit on the profile's size task at each of its training sizes, seed by seed.

    A run trains its method's usual epochs, unless those are fewer steps than ``profile.step_range[0]``
    (a few epochs of 100 examples are a handful of steps: that would starve the small sizes) or more than
    ``step_range[1]`` (the whole of a large training set, many times over, is CPU-hours); then it trains
    exactly that many steps instead, evaluated ``profile.evaluations`` times. A run whose epochs fit the
    range is the same configuration as in the other grids, so finished runs are reused.
    """
    fewest, most = profile.step_range
    configs = []
    for seed in seeds if seeds is not None else profile.seeds:
        for size in profile.size_curve:
            for method in SIZE_CURVE:
                steps = profile.epochs_for(method) * math.ceil(size / profile.batch_size)
                budget = None if fewest <= steps <= most else min(max(steps, fewest), most)
                overrides = {} if budget is None else {"max_steps": budget,
                                                       "eval_every": budget // profile.evaluations}
                configs.append(RunConfig.from_profile(profile, profile.size_task, method, seed=seed,
                                                      train_size=size, **overrides))
    return configs


@dataclass
class GridReport:
    """What a grid call did: runs it trained (their files) and runs it found finished."""

    trained: list[Path] = field(default_factory=list)
    skipped: int = 0


def pending(configs: list[RunConfig], store: ResultStore) -> list[RunConfig]:
    """The configurations without a finished record. Checks every existing file first, so a corrupt or
    foreign file stops the grid before any time is spent training."""
    return finished_records(configs, store)[1]


def finished_records(configs: list[RunConfig], store: ResultStore) -> tuple[list[dict], list[RunConfig]]:
    """The records of the finished configurations, and the configurations still to run. Tables are
    built from exactly an experiment's configs, so other runs in the same folder (a sweep, a check
    with other settings) never leak into them."""
    records, missing = [], []
    for config in configs:
        record = store.finished(config)
        if record is None:
            missing.append(config)
        else:
            records.append(record)
    return records, missing


def load_grid(configs: list[RunConfig], store: ResultStore,
              retrain: bool = False) -> tuple[list[dict], list[RunConfig]]:
    """A grid's finished records and its missing runs, as ``finished_records``; with ``retrain`` the
    missing runs are trained first (hours on a CPU for a whole grid)."""
    if retrain:
        run_grid(configs, store)
    return finished_records(configs, store)


def counterparts(record: dict, store: ResultStore, epochs: int) -> dict[str, dict]:
    """A re-run with emulated bf16 products beside the runs it repeats: the same configuration with bf16
    kernels for ``epochs`` (the grid's), and in fp32. Only those that have finished are returned."""
    config = RunConfig.from_dict(record["config"])
    runs = {"bf16, emulated": record, "bf16, kernels": store.finished(replace(config, epochs=epochs)),
            "fp32": store.finished(replace(config, bf16=False))}
    return {number_format: run for number_format, run in runs.items() if run}


def grid_progress(configs: list[RunConfig], store: ResultStore) -> pd.DataFrame:
    """Finished runs over all runs ('2/3') per method variant (rows, in grid order) and task (columns)."""
    rows = pd.DataFrame([{"method": c.label, "task": c.task, "finished": store.finished(c) is not None}
                         for c in configs])
    counts = rows.groupby(["method", "task"], sort=False)["finished"].agg(["sum", "size"])
    cells = (counts["sum"].astype(str) + "/" + counts["size"].astype(str)).unstack()
    return cells.reindex(index=list(dict.fromkeys(rows["method"])), columns=list(dict.fromkeys(rows["task"])))


def worker_runs(configs: list[RunConfig], worker: int, workers: int) -> list[RunConfig]:
    """Worker ``worker`` of ``workers`` (counted from 1) takes every ``workers``-th run of the grid, so that
    several processes (one thread each on a small CPU) or machines sharing the results folder fill one grid
    without training a run twice. On 2 cores, two 1-thread workers train about 20% more steps per
    second than one 2-thread worker (``benchmarks/step_time.py``)."""
    if not 1 <= worker <= workers:
        raise BitFitError(f"worker {worker} of {workers} does not exist: K/N needs 1 <= K <= N, e.g. 1/2 and 2/2")
    return configs[worker - 1::workers]


def run_grid(configs: list[RunConfig], store: ResultStore, glue_dir=None, progress: bool = True,
             run_fn: Callable[..., dict] = run) -> GridReport:
    """Train every pending run, writing each record as soon as it finishes. A run listed twice trains
    once; a run another worker has claimed (``ResultStore.claim``) or finished meanwhile is skipped."""
    configs = list(dict.fromkeys(config.with_data(glue_dir) for config in configs))
    todo = pending(configs, store)
    report = GridReport(skipped=len(configs) - len(todo))
    writer = is_main_process()  # under torchrun, one process writes the records
    alone = int(os.environ.get("WORLD_SIZE", "1")) == 1  # torchrun's processes train each run together
    if todo and writer:
        store.check_writable()
    for config in todo:
        with store.claim(config) if alone else contextlib.nullcontext(True) as claimed:
            if not claimed or store.finished(config):
                report.skipped += 1
                continue
            record = run_fn(config, glue_dir=glue_dir, progress=progress)
            if writer:
                report.trained.append(store.write(record))
    return report
