"""One measured run: model x task x method x seed x hyperparameters -> a result record.

The recipe follows the paper's original code (the README's "Training recipe"): AdamW without weight
decay, a constant learning rate (no warm-up, no schedule), gradient clipping at 1.0, max length 128,
evaluation after every epoch on the dev set and on a fixed subsample of the training set, best epoch
chosen on dev. Training goes through ``transformers.Trainer``, so ``torchrun`` or ``accelerate launch``
spread the same code over several processes.
"""

from __future__ import annotations

import math
import os
import resource
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import datasets
import torch
import transformers
from torch import nn
from tqdm.auto import tqdm
from transformers import (
    DataCollatorWithPadding,
    PrinterCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    get_constant_schedule,
)

from ..console import is_main_process, set_progress_bars
from ..core import counting, precision
from ..core.biases import BiasTerm, snapshot_biases
from ..core.methods import PreparedModel, display_name, optimizer_groups, prepare
from ..core.readout import READOUTS, load_classifier, load_tokenizer
from ..data import glue
from ..deploy.deltas import DeltaManifest, backbone_digest, package_version, reference_for, save_delta
from ..errors import BitFitError, raise_if_terminated
from .runs import SCHEMA, RunConfig, RunRecord


class RunProgress(TrainerCallback):
    """One progress bar per run: its training steps, with the last dev score beside them. It stands in
    for the Trainer's own bars (training and every evaluation) and its printed log dicts."""

    def __init__(self, description: str):
        self.description = description
        self.bar: tqdm | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.bar = tqdm(total=state.max_steps, desc=self.description, unit="step", dynamic_ncols=True)

    def on_step_end(self, args, state, control, **kwargs):
        self.bar.update(state.global_step - self.bar.n)

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if metrics and "eval_dev_score" in metrics:
            self.bar.set_postfix_str(f"dev score {100 * metrics['eval_dev_score']:.1f}")

    def on_train_end(self, args, state, control, **kwargs):
        self.bar.close()


class StopWhenAsked(TrainerCallback):
    """Ends training cleanly after the current step once ``event`` is set (a Stop button): that step is
    evaluated and logged first, so the record keeps everything measured until then."""

    def __init__(self, event: threading.Event):
        self.event = event

    def on_step_end(self, args, state, control, **kwargs):
        if self.event.is_set():
            control.should_training_stop = control.should_evaluate = control.should_log = True


class StopWhenTerminated(TrainerCallback):
    """Raises ``Terminated`` after a training step if SIGTERM came and its first ``Terminated`` was lost
    (``errors.raise_if_terminated``)."""

    def on_step_end(self, args, state, control, **kwargs):
        raise_if_terminated()


@dataclass
class PreparedData:
    """Tokenized splits of one run: train, the train subsample scored each epoch, and the dev splits."""

    train: datasets.Dataset
    evaluation: dict[str, datasets.Dataset]  # 'dev' (MNLI also 'dev_mismatched') and 'train'


def load_data(config: RunConfig, glue_dir=None) -> dict[str, datasets.Dataset]:
    """A run's raw splits: 'train' (subsampled), 'dev' (MNLI also 'dev_mismatched') and the training
    subsample scored every epoch. Subsamples use seed 0: every method and seed of a grid trains on the
    same examples, so differences come from the method, not the data. A config's ``data_seed`` draws another
    training subsample (experiment 'resampled': intervals that cover data noise too)."""
    task = config.task_spec
    full_train = glue.load_split(task, "train", glue_dir)
    if config.train_size is not None and config.train_size > len(full_train):
        raise BitFitError(f"train_size {config.train_size:,} is more than the {len(full_train):,} training examples "
                          f"of {task.folder}: give at most {len(full_train):,}, or none for all of them")
    train = glue.subsample(full_train, config.train_size, seed=config.data_seed or 0)
    splits = {"train": train}
    for split in task.dev_files:
        name = "dev" if split == task.dev_split else split.replace("validation", "dev")
        splits[name] = glue.subsample(glue.load_split(task, split, glue_dir), config.dev_size, seed=0)
    splits["train_eval"] = glue.subsample(train, config.train_eval_size, seed=0)
    return splits


def prepare_data(config: RunConfig, splits: dict[str, datasets.Dataset], tokenizer) -> PreparedData:
    """Tokenize a run's splits; the evaluated ones are keyed as their metrics will be ('dev', 'train')."""
    task = config.task_spec
    encoded = {name: glue.tokenize(split, tokenizer, task, config.max_length) for name, split in splits.items()}
    evaluation = {name: split for name, split in encoded.items() if name.startswith("dev")}
    evaluation["train"] = encoded["train_eval"]
    return PreparedData(encoded["train"], evaluation)


def build_trainer(config: RunConfig, prepared: PreparedModel, data: PreparedData, tokenizer,
                  output_dir: str, progress: bool, callbacks: Sequence[TrainerCallback] = ()) -> Trainer:
    """A Trainer with the original recipe: AdamW, constant LR, clipping, evaluation after every epoch
    (or every ``eval_every`` steps of a step budget)."""
    if config.max_steps is None:
        schedule = dict(num_train_epochs=config.epochs, eval_strategy="epoch", logging_strategy="epoch")
    else:
        schedule = dict(max_steps=config.max_steps, eval_strategy="steps", eval_steps=config.eval_every,
                        logging_strategy="steps", logging_steps=config.eval_every)
    processes = int(os.environ.get("WORLD_SIZE", "1"))  # torchrun: the recipe's batch is split between them
    if config.batch_size % processes:
        raise BitFitError(f"batch size {config.batch_size} does not split evenly between {processes} processes: "
                          "start a number of processes that divides it")
    per_process = config.batch_size // processes
    args = TrainingArguments(
        output_dir=output_dir, seed=config.seed, **schedule,
        per_device_train_batch_size=per_process, per_device_eval_batch_size=2 * per_process,
        learning_rate=config.learning_rate, weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm, lr_scheduler_type="constant", warmup_steps=0,
        save_strategy="no", report_to="none",
        bf16=config.bf16, use_cpu=not torch.cuda.is_available(),  # CPU autocast and CPU torchrun (gloo) need it
        disable_tqdm=True, dataloader_pin_memory=torch.cuda.is_available(),  # RunProgress shows progress
        ddp_find_unused_parameters=False,  # frozen parameters get no gradient and DDP does not track them
    )
    optimizer = torch.optim.AdamW(optimizer_groups(prepared, config.weight_decay), lr=config.learning_rate)
    trainer = Trainer(
        model=prepared.model, args=args, data_collator=DataCollatorWithPadding(tokenizer),
        train_dataset=data.train, eval_dataset=data.evaluation, processing_class=tokenizer,
        compute_metrics=glue.trainer_metrics(config.task_spec),
        optimizers=(optimizer, get_constant_schedule(optimizer)),
    )
    trainer.remove_callback(PrinterCallback)  # it would print every log dict
    trainer.add_callback(StopWhenTerminated())
    if progress and is_main_process():
        trainer.add_callback(RunProgress(f"{config.task} {display_name(config.label)} seed {config.seed}"))
    for callback in callbacks:
        trainer.add_callback(callback)
    return trainer


def train_on_examples(prepared: PreparedModel, examples: datasets.Dataset, tokenizer, task: str, steps: int,
                      learning_rate: float) -> list[float]:
    """The package's own training step (``build_trainer``: Trainer, AdamW, a constant rate, clipping at 1.0),
    ``steps`` times on ``examples`` (tokenized) as one batch: what notebook 02's hand-written loop is checked
    against. Returns the training loss of each step."""
    config = RunConfig(model=prepared.model.config.name_or_path, task=task, method=prepared.method, seed=0,
                       learning_rate=learning_rate, batch_size=len(examples), train_size=len(examples),
                       train_eval_size=len(examples), max_steps=steps, eval_every=steps).validated()
    data = PreparedData(examples, {"dev": examples, "train": examples})
    with tempfile.TemporaryDirectory() as output_dir:
        trainer = build_trainer(config, prepared, data, tokenizer, output_dir, progress=False)
        trainer.args.logging_steps = 1
        trainer.train()
    return [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]


def epoch_records(log_history: list[dict], splits: list[str], by_step: bool = False) -> list[dict]:
    """Training loss and metrics of every evaluated split at each evaluation, from
    ``Trainer.state.log_history``: one entry per epoch, or with ``by_step`` one per evaluation of a step
    budget, keyed by its 'step' with the (fractional) epoch beside it."""
    evaluations: dict[int, dict] = {}
    for entry in log_history:
        if "epoch" not in entry:
            continue
        key = entry["step"] if by_step else round(entry["epoch"])
        start = {"step": key, "epoch": round(entry["epoch"], 2)} if by_step else {"epoch": key}
        record = evaluations.setdefault(key, start)
        if "loss" in entry:
            record["train_loss"] = entry["loss"]
        for split in splits:
            prefix = f"eval_{split}_"
            metrics = {k[len(prefix):]: v for k, v in entry.items() if k.startswith(prefix)}
            if metrics:
                record[split] = {k: v for k, v in metrics.items()
                                 if k not in ("runtime", "samples_per_second", "steps_per_second", "loss")}
                record[split]["loss"] = metrics.get("loss")
                record.setdefault("eval_seconds", 0.0)
                record["eval_seconds"] += metrics.get("runtime", 0.0)
    return [evaluations[k] for k in sorted(evaluations) if "dev" in evaluations[k]]


def diverged(epochs: list[dict]) -> str | None:
    """Where a run's loss or scores stopped being finite numbers ('epoch 2: training loss'), or None."""
    for epoch in epochs:
        values = {"training loss": epoch.get("train_loss", 0.0)}
        values |= {f"{split} {name}": value
                   for split in ("dev", "train") for name, value in epoch.get(split, {}).items()}
        bad = [name for name, value in values.items() if value is not None and not math.isfinite(value)]
        if bad:
            where = f"step {epoch['step']}" if "step" in epoch else f"epoch {epoch['epoch']}"
            return f"{where}: {', '.join(bad)}"
    return None


def bias_change(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor],
                census: Sequence[BiasTerm]) -> list[dict]:
    """Mean |b_after - b_before| and mean |b_before| per bias term of ``census`` (paper's Figure 1 data)."""
    return [
        {"group": t.group, "layer": t.layer,
         "mean_abs_change": float((after[t.name] - before[t.name]).abs().mean()),
         "mean_abs_init": float(before[t.name].abs().mean())}
        for t in census
    ]


def save_run_delta(model: nn.Module, config: RunConfig, data: PreparedData, tokenizer, path: str | Path,
                   census: Sequence[BiasTerm], reference_rows: int = 4) -> Path:
    """Save a trained run's delta, with the logits it gives its first dev examples as the reference;
    ``census``: the model's bias terms, as prepared."""
    dev = data.evaluation["dev"].select(range(min(reference_rows, len(data.evaluation["dev"]))))
    batch = DataCollatorWithPadding(tokenizer)([{k: row[k] for k in tokenizer.model_input_names if k in row}
                                                for row in dev])
    task = config.task_spec
    manifest = DeltaManifest(
        model=config.model, backbone_sha256=backbone_digest(model, census), readout=config.readout, task=task.name,
        label_names=task.label_names or (), num_labels=task.num_labels, label=config.label, tensors={},
        package_version=package_version(), reference=reference_for(model, dict(batch)))
    return save_delta(model, path, manifest, census)


def _peak_memory_mb() -> float:
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def run(config: RunConfig, glue_dir=None, progress: bool = True, delta: str | Path | None = None,
        callbacks: Sequence[TrainerCallback] = ()) -> RunRecord:
    """Train and evaluate one configuration; returns its result record (see ``results`` for storage).
    With ``delta``, a bias-only run also saves what it trained there (``deltas.save_delta``). ``callbacks``
    join the Trainer's (live plots, ``StopWhenAsked``); a run stopped early records what it measured."""
    config = config.validated().with_data(glue_dir)  # the record names the data it was trained on
    set_progress_bars(False)  # loading and tokenizing stay quiet: a run shows one bar, RunProgress
    started = time.perf_counter()
    task = config.task_spec
    splits = load_data(config, glue_dir)  # missing or malformed data fails before any model loads
    tokenizer = load_tokenizer(config.model)
    data = prepare_data(config, splits, tokenizer)
    model = load_classifier(config.model, task.num_labels, config.readout, seed=config.seed,
                            start=config.encoder_start)
    prepared = prepare(model, config.method, config.groups or "all", seed=config.seed, layers=config.layers)
    if config.method != "frozen" and prepared.trainable_count(include_head=False) == 0:
        raise BitFitError(f"{config.label} trains nothing in the encoder with the {config.readout} readout "
                          "(mean pooling has no pooler): choose bias groups the model reads")
    before = snapshot_biases(model, prepared.census)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory() as output_dir:
        trainer = build_trainer(config, prepared, data, tokenizer, output_dir, progress, callbacks)
        with precision.bf16_products(config.bf16):
            train_output = trainer.train()
    epochs = epoch_records(trainer.state.log_history, list(data.evaluation), by_step=config.max_steps is not None)
    where = diverged(epochs)
    if where:
        raise BitFitError(f"run {config.run_id} diverged ({where} not a finite number): no record was written. "
                          "Lower the learning rate, or check the data for non-finite labels")
    if delta is not None and is_main_process():
        # without the autocast wrapper that bf16 training put around forward: the reference logits are fp32
        model = trainer.accelerator.unwrap_model(trainer.model_wrapped, keep_fp32_wrapper=False)
        save_run_delta(model, config, data, tokenizer, delta, prepared.census)
    best = max(epochs, key=lambda e: e["dev"]["score"])
    train_seconds = train_output.metrics["train_runtime"] - sum(e.get("eval_seconds", 0.0) for e in epochs)
    stopped = trainer.state.global_step < trainer.state.max_steps
    examples_seen = (len(data.train) * config.epochs if config.max_steps is None and not stopped
                     else trainer.state.global_step * config.batch_size)
    train_tokens = sum(len(ids) for ids in data.train["input_ids"]) / len(data.train) * examples_seen
    return RunRecord.from_json({
        "schema": SCHEMA,
        "run_id": config.run_id,
        "config": config.as_dict(),
        "label": config.label,
        "readout": READOUTS[config.readout],
        "sizes": {"train": len(data.train), "evaluated": {k: len(v) for k, v in data.evaluation.items()}},
        "params": {
            "total": prepared.total_count(),
            "trainable": prepared.trainable_count(),
            "trainable_without_head": prepared.trainable_count(include_head=False),
            "biases": sum(t.numel for t in prepared.census),
            "encoder": counting.pretrained_count(prepared.model),
        },
        "epochs": epochs,
        "best_epoch": best["epoch"],
        "best_step": best.get("step"),  # step budgets only
        "best": best["dev"],
        "last": epochs[-1]["dev"],
        "bias_change": bias_change(before, snapshot_biases(model, prepared.census), prepared.census),
        "timing": {
            "wall_seconds": time.perf_counter() - started,
            "train_seconds": train_seconds,
            "train_tokens_per_second": train_tokens / train_seconds,
            "peak_memory_mb": _peak_memory_mb(),
            "memory_kind": "cuda max allocated" if torch.cuda.is_available() else "process peak RSS",
            "device": precision.hardware_name(),  # 'CPU (AVX2)': which vector instructions trained it
            "matrix_products": precision.matrix_products(config.bf16),
            "torch_threads": torch.get_num_threads(),
        },
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    })
