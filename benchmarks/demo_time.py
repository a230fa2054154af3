"""Time the main job, ``python -m bitfit_edu demo``, from a cold start: is it within 5 minutes on 2 cores?

Runs the demo as a user does, in a fresh results folder (so all three runs train), and measures its wall
time and the process's peak memory; the seconds of each run come from its record. Prints a table and
writes ``results/benchmarks/demo_<number format>.json``:

    python benchmarks/demo_time.py            # the demo's own number format on this machine
    python benchmarks/demo_time.py --no-bf16  # fp32, what a CPU without bfloat16 kernels (AVX2) runs

Run it on a quiet machine: anything else on the cores slows the demo down.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from bitfit_edu.core import precision
from bitfit_edu.data.locations import results_folder
from bitfit_edu.experiments.results import ResultStore

ROOT = Path(__file__).resolve().parents[1]
TARGET_SECONDS = 300


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, help="passed on to the demo")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, "-m", "bitfit_edu", "demo", "--results", folder]
        if args.bf16 is not None:
            command.append("--bf16" if args.bf16 else "--no-bf16")
        started = time.perf_counter()
        subprocess.run(command, check=True, cwd=ROOT)
        wall = time.perf_counter() - started
        records = ResultStore.in_folder(folder, os.environ.get("BITFIT_EDU_PROFILE", "classroom")).records()
    number_format = records[0].timing.matrix_products
    summary = {
        "command": " ".join(["python -m bitfit_edu demo", *command[6:]]),
        "wall_seconds": round(wall, 1),
        "target_seconds": TARGET_SECONDS,
        "within_target": wall <= TARGET_SECONDS,
        "peak_memory_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024),
        "runs": {r.label: {"wall_seconds": round(r.timing.wall_seconds, 1),
                           "train_seconds": round(r.timing.train_seconds, 1),
                           "best_dev": round(100 * r.best.score, 1)} for r in records},
        "matrix_products": number_format,
        "device": precision.hardware_name(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": records[0].timing.torch_threads,
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    out = results_folder("benchmarks", f"demo_{'fp32' if number_format == 'fp32' else 'bf16'}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\ndemo: {wall:.0f} s wall ({'within' if summary['within_target'] else 'OVER'} the {TARGET_SECONDS} s "
          f"target), peak memory {summary['peak_memory_mb']:,} MB, {number_format} on {summary['device']}, "
          f"{summary['torch_threads']} threads")
    for label, run in summary["runs"].items():
        print(f"  {label:8} {run['wall_seconds']:6.1f} s wall, {run['train_seconds']:6.1f} s training, "
              f"best dev {run['best_dev']:.1f}")
    print(f"written to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
