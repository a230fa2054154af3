r"""Mixed-task batches at 1 to 1,024 tasks: BitFit's gathered biases against peft's LoRA, on the same rows.

    python benchmarks/multitask.py            # a few minutes on 2 cores; run it on a quiet machine

The classroom model, fp32, real SST-2 dev sentences (the first ``--rows``, padded to the longest), and the
threads torch has. Tasks beyond the committed SST-2 delta are derived from it by small perturbations
(``deltas.derived_delta``: each tensor plus noise of 1% of its spread, reference logits recomputed), so they
are plausible tasks, not trained ones. For each number of tasks N (at N >= rows, each row its own task):

- **one-task batch**: the same rows answered by one switched-in task (what a single-task server does);
- **BitFit mixed**: ``MultiTask.mixed_logits``, each row its own task's biases and head, one forward pass;
- **LoRA mixed**: peft LoRA r=8 on W_q and W_v with N adapters, called with ``adapter_names`` (one per row),
  heads left out (they cost the same for both methods and little).

A batch of more than ``serving.PART_TOKENS`` tokens (256 and 1,024 rows) goes through in parts of at most that
many, as ``MultiTask`` answers it; LoRA's in the same parts.

With ``--precisions`` (default fp32, bf16, int8) the same servers are built with their backbone's matrix
products in each format (``deploy.backbone_precision``: biases and heads fp32), and at ``--precision-task-counts``
(default 1, 64, 1,024) their one-task and mixed batches take their turns in the same rounds. For each it states
the FLOP rate reached (the backbone's multiply-adds per row, counted from its shapes, times rows per second)
against the core's peak in that format, which it measures: the best rate of a large matrix product
(4,096 x 1,024 by 1,024 x 1,024) with the same kernels and threads.

Throughput is rows per second, the median of interleaved rounds (the paths take turns), and each
ratio is the median of the ratios within a round. It also measures the 1,024-task server: the time to add
1,024 deltas at once (``MultiTask.add_many``, as ``serve`` adds a folder: each delta read and checked, their
reference rows answered together in mixed batches), the memory they add against their bytes, and the largest
logit difference, on sampled rows, between the mixed batch and each row's task switched in. It writes
``results/benchmarks/multitask.json`` (every target met or missed, and by how much) and the figure
``results/figures/multitask_throughput.png``.

A service answers far smaller batches: with 32 requests in flight each of ``serve``'s two model workers (one
thread each) takes 6 to 11 rows at a time (``load_test_workers.json``). The same comparison at that size, on
one thread, says what the backbone formats can gain there::

    OMP_NUM_THREADS=1 python benchmarks/multitask.py --rows 8 --task-counts 1,8 --precision-task-counts 1,8 \
        --output results/benchmarks/multitask_small_batches.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

import torch

from bitfit_edu.console import quiet_outputs
from bitfit_edu.core.precision import cpu_name, hardware_name
from bitfit_edu.core.readout import load_classifier, load_tokenizer, mean_pool
from bitfit_edu.data import glue
from bitfit_edu.data.locations import results_folder
from bitfit_edu.deploy.backbone_precision import PRECISIONS, peak_gflops
from bitfit_edu.deploy.deltas import derived_delta, read_delta
from bitfit_edu.deploy.serving import MultiTask, RowLinear, parts, rows_of
from bitfit_edu.evidence import plots
from bitfit_edu.experiments.profiles import get_profile

DELTAS = results_folder("deployment", "classroom", "deltas")
OUTPUT = results_folder("benchmarks", "multitask.json")
TASK_COUNTS = (1, 4, 16, 64, 256, 1024)
PRECISION_TASK_COUNTS = (1, 64, 1024)
TARGETS = {"BitFit mixed / one-task batch, worst task count": (">=", 0.95),
           "mixed / one-task batch, worst precision and task count": (">=", 0.95),
           "bf16 / fp32 rows/s, one-task batch, worst task count": (">=", 1.7),
           "bf16 / fp32 rows/s, mixed batch, worst task count": (">=", 1.7),
           "BitFit mixed / LoRA mixed at 64 tasks": (">=", 1.25),
           "seconds to add the deltas (1,024)": ("<=", 10.0),
           "memory added by the deltas / their bytes": ("<=", 1.2),
           "max |logit difference|, every row its own task (sampled rows)": ("<=", 1e-5)}


def memory_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def rows_batch(tokenizer, count: int) -> dict[str, torch.Tensor]:
    sentences = glue.load_split(glue.get_task("sst2"), "validation")["sentence"]
    chosen = [sentences[i % len(sentences)] for i in range(count)]
    return dict(tokenizer(chosen, padding=True, return_tensors="pt"))


def lora_encoder(model_name: str, adapters: int, budget_seconds: float):
    """The encoder with ``adapters`` LoRA r=8 adapters (random, so that they compute), or None past the budget."""
    import peft
    from transformers import AutoModel

    from bitfit_edu.data.locations import model_options

    encoder = AutoModel.from_pretrained(model_name, **model_options()).eval()
    config = peft.LoraConfig(r=8, lora_alpha=8, lora_dropout=0.0, target_modules=["query", "value"],
                             init_lora_weights=False)
    started = time.perf_counter()
    model = peft.get_peft_model(encoder, config, adapter_name="task0")
    for k in range(1, adapters):
        model.add_adapter(f"task{k}", config)
        if time.perf_counter() - started > budget_seconds:
            return None, time.perf_counter() - started
    return model.eval(), time.perf_counter() - started


def seconds_of(answer) -> float:
    started = time.perf_counter()
    answer()
    return time.perf_counter() - started


def path_name(precision: str, path: str) -> str:
    """'one-task batch' on the fp32 backbone (the names of the committed results), 'bf16 one-task batch' on another."""
    return path if precision == "fp32" else f"{precision} {path}"


def answers(servers: dict[str, MultiTask], batch: dict[str, torch.Tensor], tasks: list[str], lora) -> dict:
    """The ways to answer ``batch``: a one-task and a mixed batch on each server (a backbone format), and LoRA's
    when peft could hold the adapters."""
    paths = {}
    for precision, server in servers.items():
        paths[path_name(precision, "one-task batch")] = lambda server=server: server.logits(batch)
        paths[path_name(precision, "BitFit mixed")] = lambda server=server: server.mixed_logits(batch, tasks)
    if lora is not None:
        adapter_names = [f"task{int(name.removeprefix('task'))}" for name in tasks]
        inputs = {k: v for k, v in batch.items() if k != "token_type_ids"}

        def lora_mixed() -> list[torch.Tensor]:  # in the parts MultiTask answers a large batch in, as fair
            return [mean_pool(lora(**rows_of(inputs, part), adapter_names=adapter_names[part]).last_hidden_state,
                              batch["attention_mask"][part]) for part in parts(batch)]

        paths["LoRA mixed"] = lora_mixed
    return paths


def median_ratio(seconds: dict[str, list[float]], faster: str, slower: str) -> float:
    """How many times faster path ``faster`` ran than ``slower``: the median over rounds of the ratio within one."""
    return statistics.median(slow / fast for fast, slow in zip(seconds[faster], seconds[slower], strict=True))


def backbone_flop_per_row(model: torch.nn.Module, length: int) -> float:
    """Multiply-adds x 2 of one padded row through the backbone: every Linear of the encoder (its shapes) and
    attention's two products per layer (scores and weighted values); the head's are negligible and left out."""
    linear = sum(m.in_features * m.out_features for m in model.modules() if isinstance(m, RowLinear))
    config = model.config
    attention = config.num_hidden_layers * 2 * length * config.hidden_size
    return 2.0 * length * (linear + attention)


@torch.no_grad()
def measure(servers: dict[str, MultiTask], names: list[str], tokenizer, model_name: str, count: int, rows: int,
            repeats: int, lora_budget: float, peaks: dict[str, float]) -> tuple[dict, list[dict]]:
    """Rows per second of each path with ``count`` distinct tasks (the median of interleaved rounds), and each
    path's speed against the one-task batch: the median over rounds of the ratio within a round, so that a
    slow moment of the machine slows both sides of a ratio alike. Returns the fp32 row (with LoRA) and a row per
    backbone format of ``servers``."""
    size = max(rows, count)
    batch = rows_batch(tokenizer, size)
    tasks = [names[i % count] for i in range(size)]
    for server in servers.values():
        server.switch(tasks[0])
    lora, built = lora_encoder(model_name, count, lora_budget)
    server = servers["fp32"]
    paths = answers(servers, batch, tasks, lora)
    for answer in paths.values():
        answer()  # warm-up
    seconds = {name: [] for name in paths}
    for _ in range(repeats):  # interleaved: each path once per round
        for name, answer in paths.items():
            seconds[name].append(seconds_of(answer))
    row = {"tasks": count, "rows": size, "rounds": repeats, "lora_adapters_built_seconds": built,
           "lora": "measured" if lora is not None else f"stopped: {count} adapters took over {lora_budget:.0f} s"}
    for name in ("one-task batch", "BitFit mixed", "LoRA mixed"):
        if name in seconds:
            row[f"{name} rows/s"] = size / statistics.median(seconds[name])
    flop = backbone_flop_per_row(server.model, batch["input_ids"].shape[1]) * size
    formats = []
    for precision in servers:
        one, mixed = path_name(precision, "one-task batch"), path_name(precision, "BitFit mixed")
        formats.append({
            "tasks": count, "precision": precision, "rows": size, "tokens per row": batch["input_ids"].shape[1],
            "one-task rows/s": size / statistics.median(seconds[one]),
            "mixed rows/s": size / statistics.median(seconds[mixed]),
            "mixed / one-task": median_ratio(seconds, mixed, one),
            "one-task / fp32": median_ratio(seconds, one, "one-task batch"),
            "mixed / fp32": median_ratio(seconds, mixed, "BitFit mixed"),
            "mixed GFLOP/s": flop / statistics.median(seconds[mixed]) / 1e9,
            "mixed % of peak": 100 * flop / statistics.median(seconds[mixed]) / 1e9 / peaks[precision]})
    for name in ("BitFit mixed", "LoRA mixed"):
        if name in seconds:
            ratios = [one / other for one, other in zip(seconds["one-task batch"], seconds[name], strict=True)]
            row[f"{name} / one-task batch"] = statistics.median(ratios)
            row[f"{name} / one-task batch, quartiles"] = statistics.quantiles(ratios, n=4)[::2]
    if "LoRA mixed" in seconds:
        row["BitFit mixed / LoRA mixed"] = statistics.median(
            [lora_seconds / bitfit for lora_seconds, bitfit in zip(seconds["LoRA mixed"], seconds["BitFit mixed"],
                                                                   strict=True)])
    print(f"  {count:>5} tasks, {size} rows, {repeats} rounds: "
          + ", ".join(f"{name} {size / statistics.median(spent):.0f} rows/s" for name, spent in seconds.items())
          + f"; BitFit mixed / one-task {row['BitFit mixed / one-task batch']:.3f} ({row['lora']})", flush=True)
    for found in formats[1:]:
        print(f"        {found['precision']}: one-task {found['one-task / fp32']:.2f}x fp32, mixed "
              f"{found['mixed / fp32']:.2f}x fp32, mixed / one-task {found['mixed / one-task']:.3f}", flush=True)
    return row, formats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=64, help="rows per batch below 64 tasks (default 64)")
    parser.add_argument("--repeats", type=int, default=15, help="interleaved rounds per task count (default 15)")
    parser.add_argument("--large-repeats", type=int, default=5,
                        help="rounds where a batch has over 64 rows (256 and 1,024 tasks; default 5)")
    parser.add_argument("--task-counts", default=",".join(map(str, TASK_COUNTS)),
                        help="comma separated (default: %(default)s); the largest is the server's size")
    parser.add_argument("--lora-budget", type=float, default=120.0,
                        help="seconds peft may take to build the adapters of one task count before it is skipped")
    parser.add_argument("--precisions", default=",".join(PRECISIONS),
                        help="backbone formats measured side by side (default: %(default)s)")
    parser.add_argument("--precision-task-counts", default=",".join(map(str, PRECISION_TASK_COUNTS)),
                        help="task counts where every format is measured (default: %(default)s)")
    parser.add_argument("--output", type=Path, default=OUTPUT,
                        help="where to write the results (default: %(default)s); the figure only with the default")
    args = parser.parse_args()
    counts = [int(count) for count in args.task_counts.split(",")]
    precisions = ["fp32", *(p for p in args.precisions.split(",") if p != "fp32")]
    precision_counts = {int(count) for count in args.precision_task_counts.split(",")}
    quiet_outputs()
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)  # peft 0.21
    profile = get_profile("classroom")
    source = DELTAS / next(p.name for p in sorted(DELTAS.glob("sst2_*.safetensors")))
    manifest, _ = read_delta(source)
    print(f"classroom model, backbone in {', '.join(precisions)}, {torch.get_num_threads()} threads, "
          f"{hardware_name()}")
    servers, adding = {}, {}
    with tempfile.TemporaryDirectory() as folder:
        model = load_classifier(profile.model, manifest.num_labels, profile.readout)
        started = time.perf_counter()
        derived = [derived_delta(model, source, Path(folder) / f"task{k}.safetensors", seed=k)
                   for k in range(max(counts))]
        print(f"derived {len(derived)} deltas from {source.name} in {time.perf_counter() - started:.0f} s")
        delta_mb = sum(t.numel() * t.element_size() for path in derived for t in read_delta(path)[1].values()) / 2**20
        for precision in precisions:
            server = MultiTask(load_classifier(profile.model, manifest.num_labels, profile.readout),
                               precision=precision)
            before = memory_mb()
            started = time.perf_counter()
            names = server.add_many(derived, [f"task{k}" for k in range(len(derived))])  # as `serve` adds a folder
            adding[precision] = {"seconds": time.perf_counter() - started, "added_mb": memory_mb() - before}
            servers[precision] = server
            print(f"{precision}: added {len(names)} deltas in {adding[precision]['seconds']:.1f} s; memory "
                  f"+{adding[precision]['added_mb']:.0f} MB for {delta_mb:.0f} MB of deltas", flush=True)
    server = servers["fp32"]
    add_seconds, added_mb = adding["fp32"]["seconds"], adding["fp32"]["added_mb"]
    table_mb = (server.bias_rows.numel() * 4 + server.head_weights.numel() * 4 + server.head_biases.numel() * 4) / 2**20
    tokenizer = load_tokenizer(profile.model)
    batch = rows_batch(tokenizer, len(names))
    gaps = {}
    for precision, each in servers.items():  # a mixed batch against each sampled row's task switched in alone
        mixed = each.mixed_logits(batch, names)
        gaps[precision] = 0.0
        for row in range(0, len(names), 97):
            each.switch(names[row])
            alone = each.logits({k: v[row:row + 1] for k, v in batch.items()})
            gaps[precision] = max(gaps[precision], float((mixed[row] - alone[0]).abs().max()))
    gap = gaps["fp32"]
    peaks = {precision: peak_gflops(precision) for precision in precisions}
    print("peak of a large product (GFLOP/s): " + ", ".join(f"{p} {g:.0f}" for p, g in peaks.items()))
    print("throughput (rows per second, median of interleaved repeats):")
    results, by_precision = [], []
    for count in counts:
        measured_here = {p: servers[p] for p in precisions if p == "fp32" or count in precision_counts}
        row, formats = measure(measured_here, names, tokenizer, profile.model, count, args.rows,
                               args.repeats if max(count, args.rows) <= 64 else args.large_repeats, args.lora_budget,
                               peaks)
        results.append(row)
        by_precision += [found for found in formats if count in precision_counts]
    at = {row["tasks"]: row for row in results}
    bf16 = [found for found in by_precision if found["precision"] == "bf16"]
    measured = {
        "BitFit mixed / one-task batch, worst task count": min(row["BitFit mixed / one-task batch"] for row in results),
        "mixed / one-task batch, worst precision and task count": min(f["mixed / one-task"] for f in by_precision),
        "bf16 / fp32 rows/s, one-task batch, worst task count": min((f["one-task / fp32"] for f in bf16),
                                                                     default=float("nan")),
        "bf16 / fp32 rows/s, mixed batch, worst task count": min((f["mixed / fp32"] for f in bf16),
                                                                  default=float("nan")),
        "BitFit mixed / LoRA mixed at 64 tasks": at.get(64, {}).get("BitFit mixed / LoRA mixed", float("nan")),
        "seconds to add the deltas (1,024)": add_seconds,
        "memory added by the deltas / their bytes": added_mb / delta_mb,
        "max |logit difference|, every row its own task (sampled rows)": gap,
    }
    compare = {"<=": lambda a, b: a <= b, ">=": lambda a, b: a >= b}
    targets = {name: {"measured": value, "target": f"{TARGETS[name][0]} {TARGETS[name][1]:g}",
                      "met": bool(compare[TARGETS[name][0]](value, TARGETS[name][1])),
                      "by": value / TARGETS[name][1]} for name, value in measured.items()}
    for name, found in targets.items():
        print(f"  {name}: {found['measured']:.4g} (target {found['target']}): {'met' if found['met'] else 'MISSED'}")
    if args.output == OUTPUT:
        chart = plots.multitask_throughput_figure(results, f"classroom model, {torch.get_num_threads()} threads, "
                                                           f"{hardware_name()}")
        print(chart.save("multitask_throughput"))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({
        "throughput": results, "targets": targets, "deltas": len(names), "derived_from": source.name,
        "delta_mb": delta_mb, "added_mb": added_mb, "table_mb": table_mb, "add_seconds": add_seconds,
        "precisions": by_precision, "peak_gflops": peaks, "adding_by_precision": adding,
        "max |logit difference| mixed vs alone, by precision": gaps,
        "peak_measured_as": "best rate of a (4096 x 1024) by (1024 x 1024) product, same kernels and threads",
        "device": hardware_name(), "cpu": cpu_name(),
        "torch_threads": torch.get_num_threads(), "cpu_cores": os.cpu_count(), "torch": torch.__version__,
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }, indent=1) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
