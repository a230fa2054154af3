"""What BitFit costs and saves, measured on the classroom model: training, padding, and serving many tasks.

    python benchmarks/deployment.py            # about 10 minutes on 2 cores; run it on a quiet machine

1. **Training cost per method** (Full-FT, BitFit, Frozen), each in a process of its own so that its peak
   memory is its own: seconds per optimizer step, tokens per second and memory at batch 8 and 32, 128
   tokens, fp32. Memory is the process's peak RSS and, apart, what training added to it after the model
   was loaded (gradients, optimizer state, saved activations).
2. **Padding**: BitFit steps over real SST-2 training sentences, padded to 128 tokens every batch (the
   original recipe) against dynamic padding of batches grouped by length; real (unpadded) tokens per second.
3. **Serving**: the task deltas of ``results/deployment/classroom/deltas`` (``python -m bitfit_edu grid
   --experiment deployment --results results/deployment --deltas results/deployment/classroom/deltas``):
   delta bytes against the full checkpoint's, the time of a task switch, and the throughput of a batch of
   four tasks mixed against a batch of one task of the same size.

It prints a table per part and writes ``results/benchmarks/deployment.json``, with each target of issue
#21 and whether it was met.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import torch
from safetensors.torch import save_file
from transformers import DataCollatorWithPadding

from bitfit_edu.console import set_progress_bars
from bitfit_edu.core.precision import hardware_name
from bitfit_edu.core.readout import load_classifier, load_tokenizer
from bitfit_edu.data import glue
from bitfit_edu.data.locations import course_root, results_folder
from bitfit_edu.deploy.costs import step_seconds, token_batch
from bitfit_edu.deploy.serving import MultiTask
from bitfit_edu.deploy.throughput import examples_per_second, switch_milliseconds
from bitfit_edu.experiments.profiles import get_profile

DELTAS = results_folder("deployment", "classroom", "deltas")
OUTPUT = results_folder("benchmarks", "deployment.json")
TARGETS = {  # issue #21
    "BitFit step time / Full-FT (batch 32)": ("<=", 0.70),
    "BitFit training memory / Full-FT (batch 8)": ("<=", 0.60),
    "delta bytes / checkpoint bytes": ("<=", 0.0015),
    "task switch, ms": ("<", 1.0),
    "4-task mixed batch / one-task batch throughput": (">=", 0.90),
    "real tokens/s, dynamic padding / padding to 128": (">=", 2.0),
}


def memory_mb(field: str) -> float:
    """A field of /proc/self/status in MB: 'VmRSS' (resident now) or 'VmHWM' (its peak). Linux only."""
    with open("/proc/self/status") as status:
        kib = next(line.split()[1] for line in status if line.startswith(f"{field}:"))
    return int(kib) / 1024


def reset_peak_memory() -> None:
    """Start VmHWM again from the current resident memory (Linux: ``clear_refs`` 5)."""
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")


def classroom_model() -> torch.nn.Module:
    profile = get_profile("classroom")
    return load_classifier(profile.model, num_labels=2, readout=profile.readout)


def one_method(method: str, batch_size: int, steps: int) -> dict:
    """Part 1 for one method and batch size, in this process (see ``--one``)."""
    torch.manual_seed(0)
    batches = [token_batch(batch_size, 128)]
    model = classroom_model()
    loaded = memory_mb("VmRSS")
    reset_peak_memory()  # what loading needed does not count as training memory
    timings = step_seconds(model, method, batches, steps)
    peak = memory_mb("VmHWM")
    seconds = sum(timings) / len(timings)
    return {"method": method, "batch": batch_size, "seconds_per_step": seconds,
            "tokens_per_second": batch_size * 128 / seconds, "peak_rss_mb": peak, "loaded_rss_mb": loaded,
            "training_memory_mb": peak - loaded}


def training_costs(steps: int) -> pd.DataFrame:
    """Part 1: every method and batch size in a fresh process."""
    rows = []
    for batch_size in (8, 32):
        for method in ("full", "bitfit", "frozen"):
            done = subprocess.run([sys.executable, __file__, "--one", method, str(batch_size), "--steps", str(steps)],
                                  capture_output=True, text=True, check=True)
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"  {method} batch {batch_size}: {rows[-1]['seconds_per_step']:.2f} s/step", flush=True)
    return pd.DataFrame(rows)


def padding_costs(steps: int) -> pd.DataFrame:
    """Part 2: BitFit steps over real SST-2 sentences, padded to 128 or dynamically within length groups."""
    tokenizer = load_tokenizer(get_profile("classroom").model)
    task = glue.get_task("sst2")
    sentences = glue.subsample(glue.load_split(task, "train"), 32 * steps * 4, seed=0)
    encoded = glue.tokenize(sentences, tokenizer, task, max_length=128)
    rows = [{"input_ids": ids, "attention_mask": mask, "labels": label}
            for ids, mask, label in zip(encoded["input_ids"], encoded["attention_mask"], encoded["label"], strict=True)]
    results = []
    for name, order, padding in (("padded to 128 (original recipe)", rows, "max_length"),
                                 ("dynamic, grouped by length", sorted(rows, key=lambda r: len(r["input_ids"])),
                                  "longest")):
        collate = DataCollatorWithPadding(tokenizer, padding=padding, max_length=128)
        batches = [dict(collate(order[i:i + 32])) for i in range(0, len(order), 32)]
        batches = [batches[i] for i in torch.randperm(len(batches), generator=torch.Generator().manual_seed(0))]
        timings = step_seconds(classroom_model(), "bitfit", batches, steps)
        used = batches[1:steps + 1] if len(batches) > steps else batches
        real = sum(int(b["attention_mask"].sum()) for b in used)
        padded = sum(b["input_ids"].numel() for b in used)
        results.append({"padding": name, "seconds_per_step": sum(timings) / len(timings),
                        "real_tokens_per_second": real / sum(timings), "padding_share": 1 - real / padded})
    return pd.DataFrame(results)


@torch.no_grad()
def serving_costs(repeats: int) -> dict:
    """Part 3: delta and checkpoint bytes, task switch latency, mixed against one-task batches."""
    paths = sorted(DELTAS.glob("*.safetensors"))
    if len(paths) < 4:
        raise SystemExit(f"{DELTAS} holds {len(paths)} deltas; train them first (see this script's docstring)")
    profile = get_profile("classroom")
    model = load_classifier(profile.model, 2, profile.readout)
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = Path(folder) / "model.safetensors"
        save_file({n: p.detach().contiguous() for n, p in model.state_dict().items()}, checkpoint)
        checkpoint_bytes = checkpoint.stat().st_size
    server = MultiTask(model)
    tasks = [server.add(path) for path in paths]
    delta_bytes = {task: path.stat().st_size for task, path in zip(tasks, paths, strict=True)}
    switch_ms = switch_milliseconds(server, repeats)
    tokenizer = load_tokenizer(profile.model)
    sentences = glue.load_split(glue.get_task("sst2"), "validation")["sentence"][:32]
    batch = dict(tokenizer(sentences, padding=True, return_tensors="pt"))
    mixed_tasks = [tasks[i % 4] for i in range(32)]
    server.switch(tasks[0])
    one_task = examples_per_second(server, batch, repeats=repeats // 100)
    mixed = examples_per_second(server, batch, mixed_tasks, repeats=repeats // 100)
    return {"tasks": tasks, "checkpoint_bytes": checkpoint_bytes, "delta_bytes": delta_bytes,
            "switch_ms": switch_ms, "one_task_examples_per_second": one_task,
            "mixed_examples_per_second": mixed, "batch": 32, "mixed_tasks": 4}


def verdicts(training: pd.DataFrame, padding: pd.DataFrame, serving: dict) -> dict:
    at = training.set_index(["method", "batch"])
    measured = {
        "BitFit step time / Full-FT (batch 32)":
            at.loc[("bitfit", 32), "seconds_per_step"] / at.loc[("full", 32), "seconds_per_step"],
        "BitFit training memory / Full-FT (batch 8)":
            at.loc[("bitfit", 8), "training_memory_mb"] / at.loc[("full", 8), "training_memory_mb"],
        "delta bytes / checkpoint bytes": max(serving["delta_bytes"].values()) / serving["checkpoint_bytes"],
        "task switch, ms": serving["switch_ms"],
        "4-task mixed batch / one-task batch throughput":
            serving["mixed_examples_per_second"] / serving["one_task_examples_per_second"],
        "real tokens/s, dynamic padding / padding to 128":
            padding["real_tokens_per_second"].iloc[1] / padding["real_tokens_per_second"].iloc[0],
    }
    met = {"<=": lambda a, b: a <= b, "<": lambda a, b: a < b, ">=": lambda a, b: a >= b}
    return {name: {"measured": value, "target": f"{TARGETS[name][0]} {TARGETS[name][1]}", "limit": TARGETS[name][1],
                   "met": bool(met[TARGETS[name][0]](value, TARGETS[name][1]))} for name, value in measured.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=1000, help="task switches timed (mixed batches: 1/100 of it)")
    parser.add_argument("--one", nargs=2, metavar=("METHOD", "BATCH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    set_progress_bars(False)
    if args.one:
        print(json.dumps(one_method(args.one[0], int(args.one[1]), args.steps)))
        return
    print(f"classroom model, fp32, {torch.get_num_threads()} threads, {hardware_name()}")
    print("1. training cost per method (each in its own process):")
    training = training_costs(args.steps)
    print(training.round(2).to_string(index=False))
    print("\n2. padding (BitFit, real SST-2 sentences, batch 32):")
    padding = padding_costs(args.steps)
    print(padding.round(3).to_string(index=False))
    print("\n3. serving several tasks on one backbone:")
    serving = serving_costs(args.repeats)
    print(json.dumps({k: v for k, v in serving.items() if k != "tasks"}, indent=1))
    targets = verdicts(training, padding, serving)
    print("\ntargets (issue #21):")
    for name, found in targets.items():
        print(f"  {name}: {found['measured']:.4g} (target {found['target']}): {'met' if found['met'] else 'MISSED'}")
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(json.dumps({
        "training": training.to_dict("records"), "padding": padding.to_dict("records"), "serving": serving,
        "targets": targets, "device": hardware_name(), "torch_threads": torch.get_num_threads(),
        "cpu_cores": os.cpu_count(), "torch": torch.__version__,
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }, indent=1) + "\n")
    print(f"\nwrote {OUTPUT.relative_to(course_root())}")


if __name__ == "__main__":
    main()
