"""Does ``doctor``'s demo estimate predict the demo? Both, side by side, on this machine.

For each thread count, ``doctor.demo_estimate`` (a few timed training steps per method, scaled by the committed
demo benchmark) and the real ``python -m bitfit_edu demo`` from a cold start in a fresh results folder, with
that many threads. Prints the two and their ratio, and writes ``results/benchmarks/doctor_estimate.json``; the
target is a ratio within 1.5 either way (issue #47):

    python benchmarks/doctor_estimate.py --threads 2 1

Run it on a quiet machine: anything else on the cores moves both.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone

import torch

from bitfit_edu.classroom import doctor
from bitfit_edu.core import precision
from bitfit_edu.data.locations import results_folder

TARGET = 1.5


def estimate_minutes(threads: int) -> float:
    torch.set_num_threads(threads)
    found = doctor.demo_estimate()
    return float(re.search(r"about ([\d.]+) min", found.found).group(1))


def demo_minutes(threads: int) -> float:
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "bitfit_edu", "demo", "--results", folder], check=True,
                       capture_output=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
        return (time.perf_counter() - started) / 60


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, nargs="+", default=[2, 1])
    args = parser.parse_args()
    rows = []
    for threads in args.threads:
        estimate, measured = estimate_minutes(threads), demo_minutes(threads)
        ratio = estimate / measured
        rows.append({"threads": threads, "doctor estimate (min)": round(estimate, 2),
                     "demo measured (min)": round(measured, 2), "ratio": round(ratio, 2),
                     "within 1.5": 1 / TARGET <= ratio <= TARGET})
        print(f"{threads} thread(s): doctor says {estimate:.1f} min, the demo took {measured:.1f} min "
              f"(ratio {ratio:.2f})")
    report = {"what": "doctor's demo estimate beside the measured demo (cold start, fresh results folder)",
              "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "machine": {"cores": os.cpu_count(), "hardware": precision.hardware_name(),
                          "bf16 kernels": precision.native_bf16()}, "target": f"ratio within {TARGET}", "rows": rows}
    out = results_folder("benchmarks", "doctor_estimate.json")
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
