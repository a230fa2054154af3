"""One frozen backbone, many tasks: the deployment BitFit promises.

A BitFit task changes only the bias terms and the head (``deltas``). So a server keeps one backbone in
memory and, per task, a few kilobytes. Two ways to answer requests for several tasks:

- **Switching.** ``MultiTask.switch(task)`` copies that task's bias vectors into the backbone and puts
  its head in place: a few dozen small copies, no weight matrix touched.
- **Mixed batches.** ``MultiTask.mixed_logits(batch, tasks)`` answers a batch whose rows belong to
  different tasks in one forward pass. Every biased Linear and LayerNorm computes its shared part once
  for the whole batch, ``W x`` or ``g * norm(x)``, then adds the bias of each row's own task,
  ``+ B[t_i]``: a gather from a (tasks x width) table. No weight matrix is copied. Each row's sentence
  vector then goes through its own task's head.

Both give the predictions of each separately fine-tuned model (``tests/test_serving.py``). Heads are a
module named ``classifier`` reading one vector per sentence: mean pooling, or BERT's [CLS] + pooler.
"""

from __future__ import annotations

import copy
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from transformers import DataCollatorWithPadding, PreTrainedTokenizerBase

from ..core.biases import bias_census, encoder_of, head_parameters
from ..core.methods import display_name
from ..core.readout import MeanPoolingClassifier, load_classifier, load_tokenizer, mean_pool
from ..data.glue import GlueTask, get_task
from ..errors import BitFitError
from .deltas import DeltaManifest, backbone_digest, check_fits, check_reference, read_delta, reference_gap


@dataclass
class TaskDelta:
    """One task as the server holds it: every bias term (the task's own where it trained them, the
    backbone's pre-trained values elsewhere) and its head."""

    manifest: DeltaManifest
    biases: dict[str, torch.Tensor]
    head: nn.Module


class RowTasks:
    """The task index of each row of the batch being answered, shared by every ``RowBias``."""

    index: torch.Tensor | None = None


class RowBias(nn.Module):
    """A biased Linear or LayerNorm whose bias is chosen per row: y_i = W x_i + B[t_i] (Linear) or
    y_i = g * norm(x_i) + B[t_i] (LayerNorm), with B a (tasks x width) table and t_i row i's task."""

    def __init__(self, module: nn.Linear | nn.LayerNorm, table: torch.Tensor, rows: RowTasks):
        super().__init__()
        self.module, self.table, self.rows = module, table, rows

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.module
        shared = (F.linear(x, m.weight) if isinstance(m, nn.Linear)
                  else F.layer_norm(x, m.normalized_shape, m.weight, None, m.eps))
        bias = self.table[self.rows.index]  # (batch, width)
        return shared + bias.view(bias.shape[0], *[1] * (shared.dim() - 2), bias.shape[1])


class MultiTask:
    """A classifier's backbone shared by task deltas loaded onto it. ``model`` must hold the pre-trained
    backbone (``readout.load_classifier``); its own head is replaced by each task's."""

    def __init__(self, model: nn.Module):
        if not all(name.startswith("classifier.") for name in head_parameters(model)):
            raise BitFitError("serving several tasks needs a head named 'classifier' that reads one vector per "
                              "sentence: the mean readout, or BERT's [CLS] + pooler")
        self.model = model.eval()
        self.digest = backbone_digest(model)
        parameters = dict(model.named_parameters())
        self.bias_names = [term.name for term in bias_census(model)]
        self.pretrained = {name: parameters[name].detach().clone() for name in self.bias_names}
        self.original_head = model.classifier
        self.tasks: dict[str, TaskDelta] = {}
        self.current: str | None = None

    def add(self, path: str | Path, name: str | None = None) -> str:
        """Load the delta at ``path`` as task ``name`` (default: its task, e.g. 'sst2'), checked first: its
        digest, finite values, its fit, and the reference logits the backbone with it must give. On any error
        the server and its model are left as they were."""
        manifest, tensors = read_delta(path)
        name = name or manifest.task
        if name in self.tasks:
            raise BitFitError(f"a task named {name!r} is loaded already: give the delta {path} another name")
        head_prefix = "classifier."
        biases = {n: t for n, t in tensors.items() if not n.startswith(head_prefix)}
        check_fits(self.model, manifest, biases, str(path), self.digest)
        head = copy.deepcopy(self.model.classifier)
        for tensor_name, tensor in tensors.items():
            if tensor_name.startswith(head_prefix):
                attribute = tensor_name[len(head_prefix):]
                width = tuple(getattr(head, attribute).shape[1:])
                if tuple(tensor.shape[1:]) != width:
                    raise BitFitError(f"{path}: head tensor {tensor_name} has shape {tuple(tensor.shape)}, "
                                      f"but this backbone's head reads vectors of shape {width}")
                setattr(head, attribute, nn.Parameter(tensor, requires_grad=False))
        self.tasks[name] = TaskDelta(manifest, {**self.pretrained, **biases}, head)
        current = self.current
        try:
            self.switch(name)
            check_reference(self.model, manifest, str(path))
        except BitFitError:
            del self.tasks[name]
            raise
        finally:
            self._switch_back(current)
        return name

    def _switch_back(self, task: str | None) -> None:
        """Back to ``task``, or to the pre-trained backbone with its own head when it is None."""
        if task is not None:
            self.switch(task)
            return
        parameters = dict(self.model.named_parameters())
        with torch.no_grad():
            for name in self.bias_names:
                parameters[name].copy_(self.pretrained[name])
        self.model.classifier = self.original_head
        self.current = None

    def switch(self, task: str) -> None:
        """Make ``task`` the model's: its bias vectors copied in place, its head set."""
        delta = self.delta(task)
        parameters = dict(self.model.named_parameters())
        with torch.no_grad():
            for name in self.bias_names:
                parameters[name].copy_(delta.biases[name])
        self.model.classifier = delta.head
        self.current = task

    @torch.no_grad()
    def logits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The current task's logits for a tokenized batch."""
        if self.current is None:
            raise BitFitError("no task is switched in: call switch(task) first")
        return self.model(**batch).logits

    @torch.no_grad()
    def mixed_logits(self, batch: dict[str, torch.Tensor], tasks: list[str]) -> list[torch.Tensor]:
        """Logits of each row for its own task (``tasks[i]`` for row i), in one forward pass of the
        backbone. Rows of tasks with different label counts get logits of different lengths."""
        if len(tasks) != len(batch["input_ids"]):
            raise BitFitError(f"{len(tasks)} task names for a batch of {len(batch['input_ids'])} rows: "
                              "give one per row")
        names = list(dict.fromkeys(tasks))
        deltas = [self.delta(name) for name in names]
        index = torch.tensor([names.index(task) for task in tasks])
        with self._row_biases(deltas, index):
            features = sentence_vectors(self.model, batch)
        logits: list[torch.Tensor | None] = [None] * len(tasks)
        for position, delta in enumerate(deltas):
            rows = (index == position).nonzero().flatten()
            for row, row_logits in zip(rows.tolist(), delta.head(features[rows]), strict=True):
                logits[row] = row_logits
        return logits

    @contextmanager
    def _row_biases(self, deltas: list[TaskDelta], index: torch.Tensor):
        """Every biased Linear and LayerNorm of the backbone replaced by a ``RowBias`` for the duration."""
        rows = RowTasks()
        rows.index = index
        replaced = []
        for name in self.bias_names:
            owner_name = name.rsplit(".", 1)[0]
            parent_name, _, attribute = owner_name.rpartition(".")
            parent = self.model.get_submodule(parent_name)
            module = getattr(parent, attribute)
            table = torch.stack([delta.biases[name] for delta in deltas])
            setattr(parent, attribute, RowBias(module, table, rows))
            replaced.append((parent, attribute, module))
        try:
            yield
        finally:
            for parent, attribute, module in replaced:
                setattr(parent, attribute, module)

    def delta(self, task: str) -> TaskDelta:
        """The loaded delta of ``task``, or a clear error naming those loaded."""
        if task not in self.tasks:
            raise BitFitError(f"no task {task!r} loaded; loaded: {', '.join(self.tasks) or 'none'}")
        return self.tasks[task]


def sentence_vectors(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """What the head of ``model`` reads, one vector per row: the mean of the token vectors (mean readout)
    or BERT's pooled [CLS] vector (cls_pooler readout)."""
    inputs = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
    output = encoder_of(model)(**inputs)
    if isinstance(model, MeanPoolingClassifier):
        return mean_pool(output.last_hidden_state, batch["attention_mask"])
    if getattr(output, "pooler_output", None) is None:
        raise BitFitError(f"{type(model).__name__} has no pooled sentence vector: mixed-task batches need the "
                          "mean readout or BERT's [CLS] + pooler")
    return output.pooler_output


def delta_table(server: MultiTask) -> pd.DataFrame:
    """Per loaded task: its method, how many tensors and numbers its delta holds, their share of the
    backbone's parameters, and the largest |logit difference| between backbone + delta and the fine-tuned
    model on the reference inputs its delta carries (the task is switched in to measure it)."""
    backbone = sum(p.numel() for n, p in server.model.named_parameters() if not n.startswith("classifier."))
    rows = []
    for task, delta in server.tasks.items():
        numbers = sum(math.prod(shape) for shape in delta.manifest.tensors.values())
        server.switch(task)
        rows.append({"task": task, "method": display_name(delta.manifest.label),
                     "tensors": len(delta.manifest.tensors), "numbers": numbers,
                     "% of backbone": 100 * numbers / backbone,
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


PAIR_SEPARATOR = " ||| "  # how a sentence pair is written on the command line: 'first ||| second'


def serve(paths: list[str | Path]) -> MultiTask:
    """A backbone loaded once, with every delta in ``paths`` added; they must share its backbone."""
    manifests = [read_delta(path)[0] for path in paths]
    backbones = {(m.model, m.readout) for m in manifests}
    if len(backbones) > 1:
        raise BitFitError("these deltas were trained on different backbones or readouts "
                          f"({'; '.join(f'{model}, {readout}' for model, readout in sorted(backbones))}): "
                          "give deltas of one backbone")
    first = manifests[0]
    server = MultiTask(load_classifier(first.model, first.num_labels, first.readout))
    for path in paths:
        server.add(path)
    return server


def predict(server: MultiTask, texts: list[str], tasks: list[str] | None = None) -> pd.DataFrame:
    """The answer of every loaded task (or of ``tasks``) for each text (a sentence, or a pair written
    'first ||| second'): the label and its probability, or the score of a regression task (STS-B: 0 to 5)."""
    if not server.tasks:
        raise BitFitError("no task loaded: give at least one --delta")
    tokenizer = load_tokenizer(next(iter(server.tasks.values())).manifest.model)
    rows = []
    for task in tasks or list(server.tasks):
        delta = server.delta(task)
        spec = get_task(delta.manifest.task)
        pairs = [_split_pair(text, spec) for text in texts]
        columns = [list(column) for column in zip(*pairs, strict=True)]
        batch = tokenizer(*columns, padding=True, truncation=True, return_tensors="pt")
        server.switch(task)
        logits = server.logits(dict(batch))
        for text, row in zip(texts, logits, strict=True):
            if spec.is_regression:
                rows.append({"text": text, "task": task, "answer": "score", "value": float(row[0])})
            else:
                probability = row.softmax(-1)
                best = int(probability.argmax())
                rows.append({"text": text, "task": task, "answer": delta.manifest.label_names[best],
                             "value": float(probability[best])})
    return pd.DataFrame(rows)


def encode_rows(tokenizer: PreTrainedTokenizerBase, rows: list[tuple[str, ...]]) -> dict[str, torch.Tensor]:
    """One padded batch of rows that may mix single sentences and sentence pairs (tasks of both kinds)."""
    return dict(DataCollatorWithPadding(tokenizer)([tokenizer(*row) for row in rows]))


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


def _split_pair(text: str, spec: GlueTask) -> tuple[str, ...]:
    parts = tuple(part.strip() for part in text.split(PAIR_SEPARATOR.strip()))
    if len(parts) != len(spec.text_fields) or not all(parts):
        wanted = "a sentence pair, written 'first ||| second'" if len(spec.text_fields) == 2 else "one sentence"
        raise BitFitError(f"{spec.folder} reads {wanted}; got {text!r}")
    return parts
