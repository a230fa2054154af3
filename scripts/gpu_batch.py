"""Grids that are quick on a GPU and slow on a 2-core CPU, in stages, for several worker processes at once.

    python scripts/gpu_batch.py STAGE [--results DIR] [--processes N] [--deadline SECONDS]
    python scripts/gpu_batch.py grid --experiment NAME [--seeds 0-39] [--methods full,bitfit] --results DIR ...

With ``--processes N`` it starts N one-thread copies of itself, workers 1/N ... N/N of the grid's own split
(``runner.worker_runs``; a GPU has room for many such small runs at once), and stops them at the
deadline: a run cut off leaves no record and trains again next time. Stages:

* ``first``: the peft learning-rate sweep (``--experiment peft_sweep``) and the fp32 BitFit runs on RTE that
  draw Figure 1 in exact arithmetic (``--experiment figure_1``, notebook 5);
* ``second``: LoRA, IA3 and BEFT on every task and seed (``--experiment peft``), each at the rate the sweep
  chose (``tables.best_rates``), and then Full-FT and BitFit as in the main grid, seeds 0-2, into
  ``results/h200_check/<profile>``, beside the CPU records of the same configurations (notebook 8's
  hardware check);
* ``open``: the plan of notebook 3, "What a lent GPU would settle": for every claim of notebooks 3, 4 and 8
  that no verdict has settled yet, both methods on each of its tasks with the seeds (from 0) that settle it
  with probability 0.8 (``power.open_claims``, ``grids.comparison_configs``), the claims that need the fewest
  runs first; into a results folder of its own (``--results``), so that no verdict mixes machines;
* ``grid``: any experiment (``--experiment``, optionally ``--seeds FIRST-LAST`` and ``--methods``), e.g.
  ``--experiment resampled`` (each seed also draws the training subsample).

The classroom profile holds the chosen rates once they are committed; until then this script reads them
from the sweep's records, so that one GPU session runs both stages.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from bitfit_edu.errors import BitFitError
from bitfit_edu.evidence import power, tables
from bitfit_edu.experiments import grids
from bitfit_edu.experiments.grids import PEFT_SEEDS, experiment_configs
from bitfit_edu.experiments.profiles import get_profile
from bitfit_edu.experiments.results import ResultStore
from bitfit_edu.experiments.runner import run_grid, worker_runs


def seed_range(text: str) -> range:
    """``--seeds FIRST-LAST`` (or one seed) as a range, or one clear error."""
    first, dash, last = text.partition("-")
    if not first.strip().isdigit() or (dash and not last.strip().isdigit()) or int(last or first) < int(first):
        raise BitFitError(f"--seeds {text!r}: give FIRST-LAST with FIRST <= LAST, e.g. 0-39, or one seed")
    return range(int(first), int(last or first) + 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stage", choices=("first", "second", "open", "grid"))
    parser.add_argument("--experiment", help="stage 'grid': the experiment to run")
    parser.add_argument("--seeds", help="stage 'grid': FIRST-LAST (default: the experiment's)")
    parser.add_argument("--methods", help="stage 'grid': comma-separated method labels (default: all)")
    parser.add_argument("--results", default="results", help="the results folder (as the CLI's --results)")
    parser.add_argument("--profile", default="classroom")
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--worker", default="1/1", help="K/N: this process's share of the runs (set by --processes)")
    parser.add_argument("--deadline", type=float, default=None, help="seconds before the processes are stopped")
    args = parser.parse_args()
    if args.processes > 1:
        share(args)
        return
    worker, workers = map(int, args.worker.split("/"))
    profile = get_profile(args.profile)
    store = ResultStore.in_folder(args.results, profile.name)
    if args.stage == "open":
        run_grid(worker_runs(open_claims_runs(profile), worker, workers), store, progress=False)
        return
    if args.stage == "grid":
        seeds = seed_range(args.seeds) if args.seeds else None
        configs = [c for c in experiment_configs(profile, args.experiment, seeds=seeds)
                   if not args.methods or c.label in args.methods.split(",")]
        run_grid(worker_runs(configs, worker, workers), store, progress=False)
        return
    sweep = experiment_configs(profile, "peft_sweep")
    if args.stage == "first":
        run_grid(worker_runs(sweep + experiment_configs(profile, "figure_1"), worker, workers), store, progress=False)
        return
    rates = tables.best_rates(store.load(sweep)[0])
    print("rates chosen by the sweep:", rates, file=sys.stderr)
    run_grid(worker_runs(experiment_configs(profile.with_learning_rates(rates), "peft"), worker, workers), store,
             progress=False)
    baselines = [c for c in experiment_configs(profile, "main", seeds=profile.seeds[:PEFT_SEEDS])
                 if c.method in ("full", "bitfit")]
    check = ResultStore.in_folder(Path(args.results) / "h200_check", profile.name)
    run_grid(worker_runs(baselines, worker, workers), check, progress=False)


def open_claims_runs(profile) -> list:
    """The runs that settle every open claim (``power.open_claims``), the cheapest claim first, each run once."""
    plans = [item for item in power.open_claims(power.committed_judgements(profile)) if item["seeds"]]
    runs = [grids.comparison_configs(profile, (item["claim"].method, item["claim"].baseline), item["tasks"],
                                     range(item["seeds"])) for item in plans]
    for item, claim_runs in zip(plans, runs, strict=True):
        print(f"{item['claim'].statement}: {item['seeds']} seeds per method, {len(claim_runs)} runs", file=sys.stderr)
    return list(dict.fromkeys(config for claim_runs in sorted(runs, key=len) for config in claim_runs))


def share(args: argparse.Namespace) -> None:
    """Run the stage in ``args.processes`` one-thread workers (``runner.worker_runs``) until they finish or the
    deadline passes."""
    command = [sys.executable, __file__, args.stage, "--results", args.results, "--profile", args.profile,
               *(f"--{name}={value}" for name in ("experiment", "seeds", "methods")
                 if (value := getattr(args, name)) is not None)]
    workers = [subprocess.Popen([*command, "--worker", f"{k}/{args.processes}"], env={
        **os.environ, "OMP_NUM_THREADS": "1", "HF_DATASETS_CACHE": f"/tmp/datasets_cache_{k}"})
               for k in range(1, args.processes + 1)]
    stop = time.monotonic() + (args.deadline or float("inf"))
    for worker in workers:
        try:
            worker.wait(timeout=max(stop - time.monotonic(), 0) if args.deadline else None)
        except subprocess.TimeoutExpired:
            worker.kill()
    for worker in workers:
        if worker.poll() is None:
            worker.kill()
        worker.wait()


if __name__ == "__main__":
    try:
        main()
    except BitFitError as error:
        sys.exit(f"error: {error}")
