"""Grids that are quick on a GPU and slow on a 2-core CPU, in stages, for several worker processes at once.

    python scripts/gpu_batch.py STAGE [--results DIR] [--processes N] [--deadline SECONDS]

With ``--processes N`` it starts N one-thread copies of itself, which share the stage's runs (claims keep
them from training a run twice; a GPU has room for many such small runs at once), and stops them at the
deadline: a run cut off leaves no record and trains again next time. Stages:

* ``first``: the peft learning-rate sweep (``--experiment peft_sweep``) and the fp32 BitFit runs on RTE that
  draw Figure 1 in exact arithmetic (``--experiment figure_1``, notebook 5);
* ``second``: LoRA, IA3 and BEFT on every task and seed (``--experiment peft``), each at the rate the sweep
  chose (``analysis.best_rates``), and then Full-FT and BitFit as in the main grid, seeds 0-2, into
  ``results/h200_check/<profile>``, beside the CPU records of the same configurations (notebook 8's
  hardware check).

The classroom profile holds the chosen rates once they are committed; until then this script reads them
from the sweep's records, so that one GPU session runs both stages.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

from bitfit_edu import analysis
from bitfit_edu.experiments import PEFT_SEEDS, experiment_configs
from bitfit_edu.grid import run_grid
from bitfit_edu.profiles import get_profile
from bitfit_edu.results import ResultStore


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stage", choices=("first", "second"))
    parser.add_argument("--results", default="results/classroom")
    parser.add_argument("--profile", default="classroom")
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--deadline", type=float, default=None, help="seconds before the processes are stopped")
    args = parser.parse_args()
    if args.processes > 1:
        share(args)
        return
    profile = get_profile(args.profile)
    store = ResultStore(args.results)
    sweep = experiment_configs(profile, "peft_sweep")
    if args.stage == "first":
        run_grid(sweep + experiment_configs(profile, "figure_1"), store, progress=False)
        return
    rates = analysis.best_rates(store.load(sweep)[0])
    print("rates chosen by the sweep:", rates, file=sys.stderr)
    chosen = replace(profile, learning_rates={**profile.learning_rates, **rates})
    run_grid(experiment_configs(chosen, "peft"), store, progress=False)
    baselines = [c for c in experiment_configs(profile, "main", seeds=profile.seeds[:PEFT_SEEDS])
                 if c.method in ("full", "bitfit")]
    results = Path(args.results)
    run_grid(baselines, ResultStore(results.parent / "h200_check" / results.name), progress=False)


def share(args: argparse.Namespace) -> None:
    """Run the stage in ``args.processes`` one-thread processes until they finish or the deadline passes."""
    command = [sys.executable, __file__, args.stage, "--results", args.results, "--profile", args.profile]
    workers = []
    for k in range(args.processes):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_DATASETS_CACHE": f"/tmp/datasets_cache_{k}"}
        workers.append(subprocess.Popen(command, env=env))
        time.sleep(1)  # staggered, so that each claims a different first run
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
    main()
