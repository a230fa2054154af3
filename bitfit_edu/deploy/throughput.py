"""Measurements of a multi-task server (``serving.MultiTask``): what each delta holds and how exactly it gives its
model back, how long a switch takes, how many rows a second a batch gets through, and how close a mixed batch
comes to each task answering alone. Notebook 06 and ``benchmarks/deployment.py`` read them.
"""

from __future__ import annotations

import math
import time

import pandas as pd
import torch

from ..core.counting import pretrained_count, share_of_model
from ..core.methods import display_name
from .deltas import reference_gap
from .serving import MultiTask


def delta_table(server: MultiTask) -> pd.DataFrame:
    """Per loaded task: its method, how many tensors and numbers its delta holds, their share of the
    backbone's parameters, and the largest |logit difference| between backbone + delta and the fine-tuned
    model on the reference inputs its delta carries (the task is switched in to measure it)."""
    backbone = pretrained_count(server.model)
    rows = []
    for task, delta in server.tasks.items():
        numbers = sum(math.prod(shape) for shape in delta.manifest.tensors.values())
        server.switch(task)
        rows.append({"task": task, "method": display_name(delta.manifest.label),
                     "tensors": len(delta.manifest.tensors), "numbers": numbers,
                     "% of backbone": share_of_model(numbers, backbone),
                     "max |Δ logit| vs fine-tuned": reference_gap(server.model, delta.manifest.reference)})
    return pd.DataFrame(rows).set_index("task")


def switch_milliseconds(server: MultiTask, repeats: int = 1000) -> float:
    """Mean time of one task switch, cycling through the loaded tasks."""
    tasks = list(server.tasks)
    started = time.perf_counter()
    for index in range(repeats):
        server.switch(tasks[index % len(tasks)])
    return 1000 * (time.perf_counter() - started) / repeats


def examples_per_second(server: MultiTask, batch: dict[str, torch.Tensor], tasks: list[str] | None = None,
                        repeats: int = 10) -> float:
    """Rows answered per second, after one call of warm-up: the current task's forward of ``batch``, or with
    ``tasks`` (one per row) the mixed-task forward."""
    def answer() -> None:
        if tasks:
            server.mixed_logits(batch, tasks)
        else:
            server.logits(batch)
    answer()
    started = time.perf_counter()
    for _ in range(repeats):
        answer()
    return len(batch["input_ids"]) * repeats / (time.perf_counter() - started)


def mixed_batch_gap(server: MultiTask, batch: dict[str, torch.Tensor], tasks: list[str]) -> float:
    """Largest |logit difference| between a mixed batch answered in one pass and each row answered by its
    own task switched in (the whole batch forwarded once per task)."""
    mixed = server.mixed_logits(batch, tasks)
    gap = 0.0
    for task in dict.fromkeys(tasks):
        server.switch(task)
        alone = server.logits(batch)
        gap = max(gap, *(float((mixed[row] - alone[row]).abs().max()) for row, t in enumerate(tasks) if t == task))
    return gap
