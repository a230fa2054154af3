"""The resumable grid runner: train an experiment's runs, each record written the moment its run finishes.

``run_grid`` skips every run whose record is already in the store, so a grid can be stopped at any point
and resumed later, by another session, on another machine; workers (``worker_runs``) and claims
(``ResultStore.claim``) let several processes fill one grid. What the grids are: ``experiments``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..console import is_main_process
from ..deploy.deltas import DELTA_METHODS
from ..errors import BitFitError, raise_if_terminated
from .results import ResultStore
from .runs import RunConfig, RunRecord


@dataclass
class GridReport:
    """What a grid call trained (the files of its new records), and the runs it left to another live process
    that holds their claim."""

    trained: list[Path] = field(default_factory=list)
    held: list[RunConfig] = field(default_factory=list)


def load_grid(configs: list[RunConfig], store: ResultStore,
              retrain: bool = False) -> tuple[list[RunRecord], list[RunConfig]]:
    """A grid's finished records and its missing runs (``ResultStore.load``); with ``retrain`` the missing runs
    are trained first (hours on a CPU for a whole grid). Without it the training engine is never imported."""
    if retrain:
        run_grid(configs, store)
    return store.load(configs)


def worker_runs(configs: list[RunConfig], worker: int, workers: int) -> list[RunConfig]:
    """Worker ``worker`` of ``workers`` (counted from 1) takes every ``workers``-th run of the grid, so that
    several processes (one thread each on a small CPU) or machines sharing the results folder fill one grid
    without training a run twice. On 2 cores, two 1-thread workers train about 20% more steps per
    second than one 2-thread worker (``benchmarks/step_time.py``)."""
    if not 1 <= worker <= workers:
        raise BitFitError(f"worker {worker} of {workers} does not exist: K/N needs 1 <= K <= N, e.g. 1/2 and 2/2")
    return configs[worker - 1::workers]


def then_the_others(configs: list[RunConfig], mine: list[RunConfig]) -> list[RunConfig]:
    """A worker's runs ``mine``, then the other workers' runs in the grid's order: a worker whose share is done
    helps with the first run left instead of idling. A grid lists its runs most important first (``settle``:
    the claims' seeds before the extra baselines), so two workers always train the two most important runs
    left, whichever share they are in. ``run_grid`` skips a run another worker has claimed or finished, so no
    run trains twice."""
    own = set(mine)
    return mine + [config for config in configs if config not in own]


def run_grid(configs: list[RunConfig], store: ResultStore, glue_dir=None, progress: bool = True,
             run_fn: Callable[..., RunRecord] | None = None, deltas: str | Path | None = None) -> GridReport:
    """Train every pending run, writing each record as soon as it finishes. A run listed twice trains
    once; a run another worker has claimed (``ResultStore.claim``) or finished meanwhile is skipped.
    With ``deltas`` (a folder), each BitFit or Frozen run also saves its delta there (``delta_path``), and
    a finished run whose delta is missing trains again (a record holds no weights)."""
    configs = list(dict.fromkeys(config.with_data(glue_dir) for config in configs))
    todo = to_train(configs, store, deltas)
    report = GridReport()
    if run_fn is None:  # the training engine loads only when a run is to be trained
        from .training import run as run_fn
    writer = is_main_process()  # under torchrun, one process writes the records
    alone = int(os.environ.get("WORLD_SIZE", "1")) == 1  # torchrun's processes train each run together
    if todo and writer:
        store.check_writable()
    for config in todo:
        raise_if_terminated()  # SIGTERM came, but its exception was lost where it landed
        with store.claim(config) if alone else contextlib.nullcontext(True) as claimed:
            if not claimed:
                report.held.append(config)
                continue
            if store.finished(config) and not _delta_missing(config, deltas):
                continue
            delta = {"delta": delta_path(config, deltas)} if delta_path(config, deltas) else {}
            record = run_fn(config, glue_dir=glue_dir, progress=progress, **delta)
            if writer:
                report.trained.append(store.write(record))
    return report


def to_train(configs: list[RunConfig], store: ResultStore, deltas: str | Path | None = None) -> list[RunConfig]:
    """The runs ``run_grid`` trains: those without a finished record, and with ``deltas`` those whose
    delta is missing. Reads every existing record first: a corrupt one stops the grid before training."""
    return [config for config in configs if store.finished(config) is None or _delta_missing(config, deltas)]


def delta_path(config: RunConfig, deltas: str | Path | None) -> Path | None:
    """Where a run saves its delta in the folder ``deltas``: ``<run id>.safetensors``; None for a run
    that has no delta (Full-FT, the random baselines) or without a folder."""
    if deltas is None or config.method not in DELTA_METHODS:
        return None
    return Path(deltas) / f"{config.run_id}.safetensors"


def _delta_missing(config: RunConfig, deltas: str | Path | None) -> bool:
    path = delta_path(config, deltas)
    return path is not None and not path.exists()
