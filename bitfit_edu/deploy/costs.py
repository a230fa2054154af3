"""What training costs, measured: seconds per optimizer step of a method on given batches.

Both benchmarks (``benchmarks/step_time.py``, ``benchmarks/deployment.py``) time training with this one loop,
so their figures are comparable.
"""

from __future__ import annotations

import time

import torch

from ..core.methods import optimizer_groups, prepare
from ..core.precision import bf16_products


def token_batch(batch: int, length: int, num_labels: int = 2) -> dict[str, torch.Tensor]:
    """A batch of ``batch`` random token sequences of ``length`` tokens, for timing (what it says is not read)."""
    return {"input_ids": torch.randint(1000, 2000, (batch, length)),
            "attention_mask": torch.ones(batch, length, dtype=torch.long),
            "labels": torch.randint(0, num_labels, (batch,))}


def step_seconds(model: torch.nn.Module, method: str, batches: list[dict], steps: int,
                 number_format: str = "fp32") -> list[float]:
    """Seconds of each of ``steps`` optimizer steps (forward, backward, AdamW) of ``method`` over ``batches``,
    after one step of warm-up that is not counted. Dropout on, as in a run (attention then takes PyTorch's
    math path, not flash attention). ``number_format``: 'fp32', 'bf16' (bf16 products emulated in fp32
    where the CPU lacks the kernels, ``precision``) or 'bf16-pytorch' (PyTorch's own bf16 products)."""
    prepared = prepare(model, method)
    model.train()
    optimizer = torch.optim.AdamW(optimizer_groups(prepared, 0.0), lr=1e-4)
    timings = []
    for step in range(steps + 1):
        batch = batches[step % len(batches)]
        started = time.perf_counter()
        with bf16_products(number_format == "bf16"):  # the backward pass's products too
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=number_format != "fp32"):
                loss = model(**batch).loss
            loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        timings.append(time.perf_counter() - started)
    return timings[1:]
