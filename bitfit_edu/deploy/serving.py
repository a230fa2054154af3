"""One frozen backbone, many tasks: the deployment BitFit promises.

A BitFit task changes only the bias terms and the head (``deltas``). So a server keeps one backbone in
memory and, per task, a few kilobytes. Two ways to answer requests for several tasks:

- **Switching.** ``MultiTask.switch(task)`` copies that task's bias vectors into the backbone and puts
  its head in place: a few dozen small copies, no weight matrix touched.
- **Mixed batches.** ``MultiTask.mixed_logits(batch, tasks)`` answers a batch whose rows belong to
  different tasks in one forward pass. Every biased Linear and LayerNorm computes its shared part once
  for the whole batch, ``W x`` or ``g * norm(x)``, then adds the bias of each row's own task,
  ``+ B[t_i]``: one gather from a (tasks x width) table built when the delta was added. No weight matrix
  is copied. The heads are gathered the same way, one batched product for all rows.

Both give the predictions of each separately fine-tuned model (``tests/test_serving.py``). Heads are a
module named ``classifier`` reading one vector per sentence: mean pooling, or BERT's [CLS] + pooler. The
backbone's products can run in bf16 or int8 while every bias and head stays fp32 (``backbone_precision``).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from transformers import DataCollatorWithPadding, PreTrainedTokenizerBase

from ..core.biases import bias_census, encoder_of, head_parameters
from ..core.readout import MeanPoolingClassifier, load_classifier, load_tokenizer, mean_pool
from ..data.glue import GlueTask, get_task
from ..errors import BitFitError
from .backbone_precision import REFERENCE_TOLERANCES, put_in_precision, resolve
from .deltas import DeltaManifest, backbone_digest, check_fits, read_delta
from .memory import return_freed_memory


@dataclass
class TaskDelta:
    """One task as the server holds it: its manifest and its row in the server's tables (its biases and head
    live there, not here)."""

    manifest: DeltaManifest
    row: int
    source: str  # the file it came from


class RowTasks(threading.local):
    """The task row of each row of the batch being answered, shared by every row-bias module; None while the
    model answers for the switched-in task alone. Each thread sees its own, so that two model threads can answer
    two batches at once."""

    index: torch.Tensor | None = None


def _row_biases(table: torch.Tensor, index: torch.Tensor, dims: int) -> torch.Tensor:
    """Each row's own task's bias, B[t_i], shaped to broadcast over a ``dims``-dimensional output."""
    bias = table.index_select(0, index)  # (batch, width)
    return bias.view(bias.shape[0], *[1] * (dims - 2), bias.shape[1])


class RowLinear(nn.Linear):
    """A Linear that, while ``rows.index`` is set, adds each row's own task's bias: y_i = W x_i + B[t_i].

    In fp32 it costs what ``nn.Linear`` costs: as there, the output starts as the biases and one matrix product
    is accumulated into it (``addmm_``); only the biases now differ from row to row. On a bf16 or int8 backbone
    (``backbone_precision.put_in_precision``) ``products`` computes ``W x`` in that format and adds the fp32 biases
    in fp32."""

    rows: RowTasks
    row_table: torch.Tensor
    products: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None  # x, b -> W x + b, bf16 or int8

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.products is not None:
            bias = self.bias if self.rows.index is None else _row_biases(self.row_table, self.rows.index, x.dim())
            return self.products(x, bias)
        if self.rows.index is None:
            return super().forward(x)
        y = _row_biases(self.row_table, self.rows.index, x.dim()).expand(*x.shape[:-1], self.out_features)
        y = y.contiguous()
        y.view(-1, self.out_features).addmm_(x.reshape(-1, self.in_features), self.weight.t())
        return y


class RowLayerNorm(nn.LayerNorm):
    """A LayerNorm that, while ``rows.index`` is set, adds each row's own task's bias:
    y_i = g * norm(x_i) + B[t_i]."""

    rows: RowTasks
    row_table: torch.Tensor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.rows.index is None:
            return super().forward(x)
        shared = F.layer_norm(x, self.normalized_shape, self.weight, None, self.eps)
        return shared.add_(_row_biases(self.row_table, self.rows.index, x.dim()))


ROW_CLASSES = {nn.Linear: RowLinear, nn.LayerNorm: RowLayerNorm}
GROWTH = 1.15  # tables grow by 15% when full: few copies, little slack


class MultiTask:
    """A classifier's backbone shared by task deltas loaded onto it. ``model`` must hold the pre-trained
    backbone (``readout.load_classifier``); its own head is replaced by each task's.

    Every bias site keeps one (tasks x width) table, filled when a delta is added: the tables are column
    blocks of one (tasks x all bias numbers) matrix, so that adding a task writes one row. The heads are two more
    tables, weights (tasks x labels x width) and biases (tasks x labels), padded to the most labels. Each
    biased Linear and LayerNorm of the backbone becomes a row-bias module once (its class swapped, its
    parameters and their names unchanged): answering for one task it is the module it was, and in a mixed
    batch it adds each row's bias from its table in one gathered add.

    ``precision``: the format of the backbone's matrix products, 'fp32', 'bf16', 'int8' or 'auto'
    (``backbone_precision``); the tables, the heads and every bias addition stay fp32."""

    def __init__(self, model: nn.Module, capacity: int = 8, precision: str = "fp32"):
        self.precision = resolve(precision)
        if not all(name.startswith("classifier.") for name in head_parameters(model)) or \
                not isinstance(getattr(model, "classifier", None), nn.Linear):
            raise BitFitError("serving several tasks needs a head named 'classifier' that reads one vector per "
                              "sentence: the mean readout, or BERT's [CLS] + pooler")
        self.model = model.eval()
        self.digest = backbone_digest(model)
        parameters = dict(model.named_parameters())
        census = bias_census(model)
        self.bias_names = [term.name for term in census]
        self.shapes = {name: tuple(parameter.shape) for name, parameter in parameters.items()}
        self.pretrained = {name: parameters[name].detach().clone() for name in self.bias_names}
        self.rows = RowTasks()
        self.sites = {name: self._row_module(name) for name in self.bias_names}
        put_in_precision([(term.group, self.sites[term.name]) for term in census
                          if isinstance(self.sites[term.name], RowLinear)], self.precision)
        return_freed_memory()  # a bf16 or int8 backbone's fp32 weights, given up, go back to the system
        self.tolerance = REFERENCE_TOLERANCES[self.precision]
        self.widths = [self.pretrained[name].numel() for name in self.bias_names]
        self.bias_rows = torch.empty(capacity, sum(self.widths))
        width = model.classifier.in_features
        self.head_weights, self.head_biases = torch.zeros(capacity, 1, width), torch.zeros(capacity, 1)
        self._point_sites_at_tables()
        self.tasks: dict[str, TaskDelta] = {}
        self.current: str | None = None

    def _row_module(self, bias_name: str) -> nn.Module:
        module = self.model.get_submodule(bias_name.rsplit(".", 1)[0])
        row_class = ROW_CLASSES.get(type(module))
        if row_class is None:
            raise BitFitError(f"{bias_name} belongs to a {type(module).__name__}; mixed-task serving handles the "
                              "biases of Linear and LayerNorm modules")
        module.__class__ = row_class
        module.rows = self.rows
        return module

    def _point_sites_at_tables(self) -> None:
        """Each site's table: its block of columns of ``bias_rows`` (a view, nothing copied)."""
        self.tables = dict(zip(self.bias_names, self.bias_rows.split(self.widths, dim=1), strict=True))
        for name, module in self.sites.items():
            module.row_table = self.tables[name]

    def _make_room(self, rows: int, labels: int, growth: float = GROWTH) -> None:
        """Grow every table to hold ``rows`` tasks (``growth`` times as many, room for the next ones) and heads
        of ``labels`` outputs, copying what it holds."""
        capacity, most_labels = self.head_biases.shape
        if rows <= capacity and labels <= most_labels:
            return
        held = capacity  # every row, those of deltas still being checked included
        capacity = max(capacity, math.ceil(rows * growth)) if rows > capacity else capacity
        grown = torch.empty(capacity, self.bias_rows.shape[1])
        grown[:held] = self.bias_rows
        self.bias_rows = grown
        weights = torch.zeros(capacity, max(labels, most_labels), self.head_weights.shape[2])
        biases = torch.zeros(capacity, max(labels, most_labels))
        weights[:held, :most_labels], biases[:held, :most_labels] = self.head_weights, self.head_biases
        self.head_weights, self.head_biases = weights, biases
        self._point_sites_at_tables()

    def add(self, path: str | Path, name: str | None = None) -> str:
        """Load the delta at ``path`` as task ``name`` (default: its task, e.g. 'sst2'); see ``add_many``."""
        return self.add_many([path], None if name is None else [name])[0]

    def add_many(self, paths: list[str | Path], names: list[str] | None = None) -> list[str]:
        """Load the deltas at ``paths`` as tasks ``names`` (default: each its task), each checked: its digest,
        finite values, its fit to this backbone, and the reference logits the backbone with it must give
        (``REFERENCE_TOLERANCES``, per backbone format), all deltas' references answered together in mixed
        batches. On any error none of them is added, and the server and its model are left as they were.
        ``tasks`` gains them all at once, as a new dict, once every check has passed: a service reading it
        meanwhile (another thread) never sees a task half added, nor the dict change under it."""
        names = list(names) if names is not None else [None] * len(paths)
        # one copy, not one per growth; many deltas at once (a folder) get exactly their rows, one gets slack
        self._make_room(len(self.tasks) + len(paths), self.head_biases.shape[1], GROWTH if len(paths) == 1 else 1.0)
        checking: dict[str, TaskDelta] = {}  # their rows follow the loaded tasks'; a failed add leaves them unused
        try:
            for path, name in zip(paths, names, strict=True):
                self._fill(path, name, checking)
            self._check_references(checking)
        finally:
            return_freed_memory()  # the files' tensors, copied into the tables, are freed in many small pieces
        self.tasks = {**self.tasks, **checking}
        return list(checking)

    def _fill(self, path: str | Path, name: str | None, checking: dict[str, TaskDelta]) -> None:
        """Read and check one delta, write its biases and head into the next free row of the tables and
        name it in ``checking``."""
        manifest, tensors = read_delta(path)
        name = name or manifest.task
        if name in self.tasks or name in checking:
            where = "is loaded already" if name in self.tasks else "comes twice among the deltas added"
            raise BitFitError(f"a task named {name!r} {where}: give the delta {path} another name")
        head_prefix = "classifier."
        biases = {n: t for n, t in tensors.items() if not n.startswith(head_prefix)}
        check_fits(self.model, manifest, biases, str(path), self.digest, self.shapes)
        head = {n[len(head_prefix):]: t for n, t in tensors.items() if n.startswith(head_prefix)}
        if set(head) != {"weight", "bias"} or head["weight"].shape[1:] != self.head_weights.shape[2:]:
            raise BitFitError(f"{path}: its head is not a linear map from this backbone's "
                              f"{self.head_weights.shape[2]}-wide sentence vectors")
        row, labels = len(self.tasks) + len(checking), len(head["bias"])
        self._make_room(row + 1, labels)
        self.bias_rows[row] = torch.cat([biases.get(name, self.pretrained[name]) for name in self.bias_names])
        self.head_weights[row].zero_()
        self.head_biases[row].zero_()
        self.head_weights[row, :labels], self.head_biases[row, :labels] = head["weight"], head["bias"]
        checking[name] = TaskDelta(manifest, row, str(path))

    @torch.no_grad()
    def _check_references(self, checking: dict[str, TaskDelta], rows_per_batch: int = 64) -> None:
        """Each task's reference inputs, answered in mixed batches, must give its reference logits: every
        reference row of a first-format delta, the shortest row of one whose digest has vouched for its manifest
        and tensors (that row still checks the backbone and the file's own consistency, at a fraction of the cost).
        Rows are batched by length, so that little of each batch is padding."""
        rows = []
        for name, delta in checking.items():
            manifest = delta.manifest
            pairs = sorted(zip(_reference_rows(manifest.reference.inputs), manifest.reference.logits, strict=True),
                           key=lambda pair: len(pair[0]["input_ids"]))
            rows += [(name, inputs, logits) for inputs, logits in pairs[:1 if manifest.vouched else None]]
        rows.sort(key=lambda row: len(row[1]["input_ids"]))
        for start in range(0, len(rows), rows_per_batch):
            chunk = rows[start:start + rows_per_batch]
            batch = _padded([inputs for _, inputs, _ in chunk])
            answered = self._logits_of_rows(batch, [checking[name] for name, _, _ in chunk])
            for (name, _, expected), found in zip(chunk, answered, strict=True):
                gap = float((found - torch.tensor(expected)).abs().max())
                if not gap <= self.tolerance:
                    raise BitFitError(f"{checking[name].source}: the backbone with this delta gives logits "
                                      f"{gap:.3g} away from those the fine-tuned model gave (at most "
                                      f"{self.tolerance:g} allowed in {self.precision}): the delta was altered or "
                                      "does not belong to this backbone. Save it again from its run")

    def head(self, task: str) -> nn.Linear:
        """``task``'s head as a Linear whose parameters are views of the head tables (nothing copied)."""
        delta = self.delta(task)
        labels = delta.manifest.num_labels
        head = nn.Linear(self.head_weights.shape[2], labels, device="meta")  # its parameters are set next
        head.weight = nn.Parameter(self.head_weights[delta.row, :labels], requires_grad=False)
        head.bias = nn.Parameter(self.head_biases[delta.row, :labels], requires_grad=False)
        return head

    def switch(self, task: str) -> None:
        """Make ``task`` the model's: its bias vectors copied in place from its rows, its head set."""
        delta = self.delta(task)
        parameters = dict(self.model.named_parameters())
        with torch.no_grad():
            for name in self.bias_names:
                parameters[name].copy_(self.tables[name][delta.row])
        self.model.classifier = self.head(task)
        self.current = task

    @torch.no_grad()
    def logits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The current task's logits for a tokenized batch."""
        if self.current is None:
            raise BitFitError("no task is switched in: call switch(task) first")
        return torch.cat([self.model(**rows_of(batch, part)).logits for part in parts(batch)])

    @torch.no_grad()
    def mixed_logits(self, batch: dict[str, torch.Tensor], tasks: list[str]) -> list[torch.Tensor]:
        """Logits of each row for its own task (``tasks[i]`` for row i), in one forward pass of the
        backbone (one per part of a large batch, ``parts``): each bias site adds its rows' biases in one
        gathered add, and the heads are gathered too.
        Rows of tasks with different label counts get logits of different lengths."""
        if len(tasks) != len(batch["input_ids"]):
            raise BitFitError(f"{len(tasks)} task names for a batch of {len(batch['input_ids'])} rows: "
                              "give one per row")
        return self._logits_of_rows(batch, [self.delta(task) for task in tasks])

    def _logits_of_rows(self, batch: dict[str, torch.Tensor], deltas: list[TaskDelta]) -> list[torch.Tensor]:
        """``mixed_logits`` for the deltas whose table rows answer each row."""
        index = torch.tensor([delta.row for delta in deltas])
        found = []
        try:
            for part in parts(batch):
                self.rows.index = index[part]
                found.append(sentence_vectors(self.model, rows_of(batch, part)))
        finally:
            self.rows.index = None
        features = torch.cat(found)
        logits = torch.baddbmm(self.head_biases[index].unsqueeze(2), self.head_weights[index],
                               features.unsqueeze(2)).squeeze(2)
        labels = [delta.manifest.num_labels for delta in deltas]
        return [row[:count] for row, count in zip(logits, labels, strict=True)]

    def delta(self, task: str) -> TaskDelta:
        """The loaded delta of ``task``, or a clear error naming those loaded."""
        if task not in self.tasks:
            raise BitFitError(f"no task {task!r} loaded; loaded: {', '.join(self.tasks) or 'none'}")
        return self.tasks[task]


def _reference_rows(inputs: dict[str, list[list[int]]]) -> list[dict[str, list[int]]]:
    """A delta's padded reference inputs, one dict per row, with the padding taken off."""
    masks = inputs["attention_mask"]
    return [{key: [value for value, kept in zip(values[index], mask, strict=True) if kept]
             for key, values in inputs.items()} for index, mask in enumerate(masks)]


def _padded(rows: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
    """Rows of token lists as one batch, padded at the end (attention mask 0 there)."""
    longest = max(len(row["input_ids"]) for row in rows)
    return {key: torch.tensor([row[key] + [0] * (longest - len(row[key])) for row in rows]) for key in rows[0]}


PART_TOKENS = 4096  # token rows per forward pass (padding included): see parts


def parts(batch: dict[str, torch.Tensor]) -> list[slice]:
    """``batch``'s rows cut into consecutive ranges of at most ``PART_TOKENS`` tokens (one row at least), each
    answered by a forward pass of its own. A part's activations are a few MB, which the allocator reuses from
    part to part and the cache holds better; a 1,024-row batch's run to hundreds of MB and page-fault anew with
    every batch."""
    rows, tokens = batch["input_ids"].shape
    step = max(1, PART_TOKENS // tokens)
    return [slice(start, start + step) for start in range(0, rows, step)]


def rows_of(batch: dict[str, torch.Tensor], part: slice) -> dict[str, torch.Tensor]:
    """The rows ``part`` of every tensor of ``batch``."""
    return {key: value[part] for key, value in batch.items()}


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


PAIR_SEPARATOR = " ||| "  # how a sentence pair is written on the command line: 'first ||| second'


def task_names(paths: list[str | Path], taken: set[str] = frozenset()) -> list[str]:
    """A name per delta file: its GLUE task ('sst2') where no other file or loaded task has it, else the file's
    name without its suffix (deltas of one task for several customers, say)."""
    tasks = [read_delta(path)[0].task for path in paths]
    return [task if tasks.count(task) == 1 and task not in taken else Path(path).stem
            for task, path in zip(tasks, paths, strict=True)]


def serve(paths: list[str | Path], names: list[str] | None = None, precision: str = "fp32") -> MultiTask:
    """A backbone loaded once, its products in ``precision`` (``MultiTask``), with every delta in ``paths`` added
    (as ``names``, default: each its task); they must share its backbone."""
    manifests = [read_delta(path)[0] for path in paths]
    backbones = {(m.model, m.readout) for m in manifests}
    if len(backbones) > 1:
        raise BitFitError("these deltas were trained on different backbones or readouts "
                          f"({'; '.join(f'{model}, {readout}' for model, readout in sorted(backbones))}): "
                          "give deltas of one backbone")
    first = manifests[0]
    server = MultiTask(load_classifier(first.model, first.num_labels, first.readout), precision=precision)
    server.add_many(paths, names)
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
        server.switch(task)
        for start in range(0, len(texts), PREDICT_BATCH):
            rows += _answers(server, tokenizer, delta, spec, task, texts[start:start + PREDICT_BATCH])
    return pd.DataFrame(rows)


PREDICT_BATCH = 64  # texts per forward pass: a long file is answered in bounded batches


def _answers(server: MultiTask, tokenizer, delta: TaskDelta, spec, task: str, texts: list[str]) -> list[dict]:
    """The switched-in ``task``'s answer to each of ``texts``, in one forward pass."""
    pairs = [_split_pair(text, spec) for text in texts]
    columns = [list(column) for column in zip(*pairs, strict=True)]
    batch = tokenizer(*columns, padding=True, truncation=True, return_tensors="pt")
    logits = server.logits(dict(batch))
    rows = []
    for text, row in zip(texts, logits, strict=True):
        if spec.is_regression:
            rows.append({"text": text, "task": task, "answer": "score", "value": float(row[0])})
        else:
            probability = row.softmax(-1)
            best = int(probability.argmax())
            rows.append({"text": text, "task": task, "answer": delta.manifest.label_names[best],
                         "value": float(probability[best])})
    return rows


def encode_rows(tokenizer: PreTrainedTokenizerBase, rows: list[tuple[str, ...]]) -> dict[str, torch.Tensor]:
    """One padded batch of rows that may mix single sentences and sentence pairs (tasks of both kinds)."""
    return dict(DataCollatorWithPadding(tokenizer)([tokenizer(*row) for row in rows]))


def length_groups(lengths: list[int], call_cost_tokens: int) -> list[list[int]]:
    """The rows of a batch (their token counts ``lengths``) split into groups answered by one forward pass
    each, for the least work: a pass costs its rows times its longest row in tokens (padding included), plus
    ``call_cost_tokens`` for the pass itself. Rows are taken in order of length and cut where a new pass saves
    more padding than it costs (exact, by dynamic programming over the cuts). Returns row indices per group."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    cost, cut = [0.0] + [math.inf] * len(order), [0] * (len(order) + 1)
    for end in range(1, len(order) + 1):
        longest = lengths[order[end - 1]]
        for start in range(end):
            work = cost[start] + (end - start) * longest + call_cost_tokens
            if work < cost[end]:
                cost[end], cut[end] = work, start
    groups, end = [], len(order)
    while end:
        groups.append(order[cut[end]:end])
        end = cut[end]
    return groups[::-1]


def _split_pair(text: str, spec: GlueTask) -> tuple[str, ...]:
    parts = tuple(part.strip() for part in text.split(PAIR_SEPARATOR.strip()))
    if len(parts) != len(spec.text_fields) or not all(parts):
        wanted = "a sentence pair, written 'first ||| second'" if len(spec.text_fields) == 2 else "one sentence"
        raise BitFitError(f"{spec.folder} reads {wanted}; got {text!r}")
    return parts
