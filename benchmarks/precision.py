"""What a bf16 or int8 backbone costs in accuracy and saves in memory, under the committed fp32 task deltas.

    python benchmarks/precision.py          # about 5 minutes on 2 cores; run it on a quiet machine

For each committed delta of ``results/deployment/classroom/deltas`` (one per task: CoLA, MRPC, RTE, SST-2,
STS-B) and each backbone format (``deploy.backbone_precision``: fp32, bf16, int8), the delta is served as
``predict`` serves it (``serving.serve``: its reference rows checked at that format's tolerance) and answers
its task's whole dev set, in batches of 32 rows grouped by length. It reports each task's dev score (the
mean of its GLUE metrics, in points) and the largest change any dev logit shows against fp32, and each
delta's gap on its own reference rows (what ``REFERENCE_TOLERANCES`` must allow). Then, in a process of its
own per format, the memory the backbone takes: resident memory added by loading the classifier and putting it
in that format (the freed fp32 weights handed back to the system first), and the bytes its weights hold.
Speed is measured by ``benchmarks/multitask.py``.

It writes ``results/benchmarks/precision.json`` with each target met or missed: every task's dev score within
0.3 points of fp32, and every reference gap within its format's tolerance.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from datetime import datetime, timezone

import numpy as np
import torch
from transformers import DataCollatorWithPadding

from bitfit_edu.console import quiet_outputs
from bitfit_edu.core.precision import cpu_name, hardware_name, native_bf16
from bitfit_edu.core.readout import load_tokenizer
from bitfit_edu.data import glue
from bitfit_edu.data.locations import course_root, results_folder
from bitfit_edu.deploy.backbone_precision import PRECISIONS, REFERENCE_TOLERANCES
from bitfit_edu.deploy.deltas import read_delta, reference_gap
from bitfit_edu.deploy.serving import serve
from bitfit_edu.experiments.profiles import get_profile

DELTAS = results_folder("deployment", "classroom", "deltas")
OUTPUT = results_folder("benchmarks", "precision.json")
SCORE_POINTS = 0.3  # the most a task's dev score may move from fp32, in points
BATCH = 32

MEMORY_PROBE = """
import gc, json, sys
from pathlib import Path
from bitfit_edu.core.readout import load_classifier
from bitfit_edu.deploy.backbone_precision import backbone_bytes
from bitfit_edu.deploy.memory import return_freed_memory
from bitfit_edu.deploy.serving import MultiTask
def rss():
    line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024
model_name, readout, precision = sys.argv[1:]
before = rss()
server = MultiTask(load_classifier(model_name, 2, readout), precision=precision)
gc.collect()
return_freed_memory()  # the fp32 weights a conversion freed go back to the system, as serve's batches' do
print(json.dumps({"rss_added_mb": rss() - before, "weight_mb": backbone_bytes(server.model) / 2**20}))
"""


@torch.no_grad()
def dev_logits(server, task: glue.GlueTask, tokenizer, max_length: int) -> tuple[np.ndarray, np.ndarray]:
    """The switched-in task's logits for every row of its dev set (batches of rows of similar length), and the
    labels."""
    dev = glue.load_split(task, "validation")
    encoded = glue.tokenize(dev, tokenizer, task, max_length)
    order = np.argsort([len(ids) for ids in encoded["input_ids"]], kind="stable")
    collate = DataCollatorWithPadding(tokenizer)
    columns = [c for c in encoded.column_names if c != "label"]
    logits = np.zeros((len(encoded), server.model.classifier.out_features), dtype=np.float32)
    for start in range(0, len(order), BATCH):
        rows = order[start:start + BATCH]
        batch = dict(collate([{c: encoded[int(i)][c] for c in columns} for i in rows]))
        logits[rows] = server.logits(batch).numpy()
    return logits, np.asarray(dev["label"])


def memory(model_name: str, readout: str, precision: str) -> dict:
    """What the backbone takes in ``precision``, measured in a fresh process of its own."""
    found = subprocess.run([sys.executable, "-c", MEMORY_PROBE, model_name, readout, precision], check=True,
                           capture_output=True, text=True)
    return json.loads(found.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--precisions", default=",".join(PRECISIONS), help="default: %(default)s")
    args = parser.parse_args()
    precisions = ["fp32", *(p for p in args.precisions.split(",") if p != "fp32")]
    quiet_outputs()
    profile = get_profile("classroom")
    tokenizer = load_tokenizer(profile.model)
    print(f"classroom model, {torch.get_num_threads()} threads, {hardware_name()}, bf16 kernels: {native_bf16()}")
    tasks = []
    for path in sorted(DELTAS.glob("*.safetensors")):
        manifest, _ = read_delta(path)
        task = glue.get_task(manifest.task)
        found, exact = {"task": manifest.task, "delta": path.name, "dev rows": 0}, None
        for precision in precisions:
            server = serve([path], precision=precision)
            name = next(iter(server.tasks))
            server.switch(name)
            logits, labels = dev_logits(server, task, tokenizer, profile.max_length)
            metrics = glue.glue_metrics(task, glue.predictions_from_logits(task, logits), labels)
            exact = logits if exact is None else exact
            found["dev rows"] = len(labels)
            found[f"{precision} score"] = 100 * glue.task_score(task, metrics)
            found[f"{precision} max |logit change| vs fp32"] = float(np.abs(logits - exact).max())
            found[f"{precision} reference gap"] = reference_gap(server.model, manifest.reference)
        tasks.append(found)
        print(f"  {manifest.task}: " + ", ".join(
            f"{p} {found[f'{p} score']:.2f} (logits moved <= {found[f'{p} max |logit change| vs fp32']:.3g}, "
            f"reference gap {found[f'{p} reference gap']:.2g})" for p in precisions), flush=True)
    memories = {precision: memory(profile.model, profile.readout, precision) for precision in precisions}
    for precision, found in memories.items():
        print(f"  {precision} backbone: +{found['rss_added_mb']:.0f} MB resident, weights {found['weight_mb']:.0f} MB")
    targets = {}
    for precision in precisions[1:]:
        worst = max(abs(t[f"{precision} score"] - t["fp32 score"]) for t in tasks)
        targets[f"{precision}: largest |dev score - fp32| over the tasks (points)"] = {
            "measured": worst, "target": f"<= {SCORE_POINTS}", "met": worst <= SCORE_POINTS}
    for precision in precisions:
        worst = max(t[f"{precision} reference gap"] for t in tasks)
        targets[f"{precision}: largest reference gap / its tolerance"] = {
            "measured": worst / REFERENCE_TOLERANCES[precision], "target": "<= 1",
            "met": worst <= REFERENCE_TOLERANCES[precision]}
    for name, found in targets.items():
        print(f"  {name}: {found['measured']:.3g} (target {found['target']}): {'met' if found['met'] else 'MISSED'}")
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(json.dumps({
        "tasks": tasks, "memory": memories, "targets": targets, "tolerances": REFERENCE_TOLERANCES,
        "device": hardware_name(), "cpu": cpu_name(), "bf16_kernels": native_bf16(),
        "torch_threads": torch.get_num_threads(), "cpu_cores": os.cpu_count(), "torch": torch.__version__,
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }, indent=1) + "\n")
    print(f"wrote {OUTPUT.relative_to(course_root())}")


if __name__ == "__main__":
    main()
