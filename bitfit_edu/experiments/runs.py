"""What a run is: its configuration, the identity of its record, and the record's schema version.

A run is model x task x method (with its bias groups) x seed x hyperparameters. Two runs with equal
configs are the same experiment, and share one record (``results``). This module is what reading a
record needs; training one is ``training``'s job.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property

from ..core import precision
from ..core.biases import resolve_groups
from ..core.methods import METHODS, method_label
from ..core.readout import READOUTS
from ..core.starts import PRETRAINED, check_start
from ..data import glue
from ..errors import BitFitError, unknown_choice
from .profiles import Profile

SCHEMA = "bitfit_edu.run/2"  # version 1 lacked fields that later runs record; results.upgrade fills them in
_LATER_FIELDS = ("max_steps", "eval_every", "data", "layers", "data_seed", "start")  # see RunConfig.as_dict


@dataclass(frozen=True)
class RunConfig:
    """Everything that decides a run's outcome. Two runs with equal configs are the same experiment."""

    model: str
    task: str
    method: str
    groups: tuple[str, ...] | None = None  # bitfit only; None: all bias groups
    seed: int = 0
    learning_rate: float = 1e-3
    epochs: int = 3
    batch_size: int = 32
    max_length: int = 128
    train_size: int | None = None  # None: the whole training set
    train_eval_size: int = 500
    dev_size: int | None = None
    readout: str = "cls_pooler"
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    bf16: bool = False
    max_steps: int | None = None  # a step budget instead of epochs (training-size curves)
    eval_every: int | None = None  # with max_steps: steps between evaluations
    data: str | None = None  # None: the official GLUE data; else a digest of the files read (glue.data_identity)
    layers: tuple[int, int] | None = None  # bitfit only: the first and last layer whose biases train; None: all
    data_seed: int | None = None  # draws the training subsample; None: seed 0, the one subsample of every grid
    start: str | None = None  # where the encoder starts (core.starts): 'random', 'shuffled'; None: pre-trained

    def with_data(self, glue_dir=None) -> RunConfig:
        """This config for the GLUE data it will read from ``glue_dir`` (or where ``locations`` finds it)."""
        return replace(self, data=glue.data_identity(self.task_spec, glue_dir))

    @cached_property
    def task_spec(self) -> glue.GlueTask:
        """The task itself: its files, columns, labels and metrics, resolved from its name once per config."""
        return glue.get_task(self.task)

    @property
    def length(self) -> str:
        """How long the run trains: '600 steps' under a step budget, else '10 epochs'."""
        return f"{self.max_steps} steps" if self.max_steps else f"{self.epochs} epochs"

    @property
    def number_format(self) -> str:
        """'bf16 autocast' or 'fp32'."""
        return "bf16 autocast" if self.bf16 else "fp32"

    def as_dict(self) -> dict:
        """The config as stored in a record and hashed into its id. Fields added after the first records
        were written are left out while at their default, so those records keep their ids."""
        settings = asdict(self)
        return {k: v for k, v in settings.items() if not (k in _LATER_FIELDS and v is None)}

    @classmethod
    def from_profile(cls, profile: Profile, task: str, method: str, *, seed: int = 0,
                     groups: tuple[str, ...] | None = None, **overrides) -> RunConfig:
        """The profile's settings for one task, method and seed; keyword overrides win."""
        settings = dict(
            model=profile.model, task=task, method=method, groups=groups, seed=seed,
            learning_rate=profile.learning_rate(method), epochs=profile.epochs_for(method),
            batch_size=profile.batch_size, max_length=profile.max_length,
            train_size=profile.train_size, train_eval_size=profile.train_eval_size,
            dev_size=profile.dev_size, readout=profile.readout, bf16=profile.bf16,
        )
        settings.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**settings).validated()

    @classmethod
    def from_dict(cls, settings: dict) -> RunConfig:
        """A config as a record stores it (JSON: groups as a list, later fields left out at their default)."""
        groups, layers = settings.get("groups"), settings.get("layers")
        return cls(**{**settings, "groups": None if groups is None else tuple(groups),
                      "layers": None if layers is None else tuple(layers)})

    @classmethod
    def for_demo(cls, profile: Profile, task: str, method: str, **overrides) -> RunConfig:
        """A short live run (the demo, the notebooks): the profile's demo sizes, and its bf16 autocast
        only where this machine has bfloat16 kernels, fp32 elsewhere (see ``precision``)."""
        settings = dict(train_size=profile.demo_train_size, epochs=profile.demo_epochs,
                        train_eval_size=profile.demo_train_eval_size,
                        bf16=profile.bf16 and precision.native_bf16())
        chosen = {name: value for name, value in overrides.items() if value is not None}  # None: the default
        return cls.from_profile(profile, task, method, **{**settings, **chosen})

    def validated(self) -> RunConfig:
        """This config with names normalised ('RTE' -> 'rte'), or a clear error for a bad value."""
        if self.method not in METHODS:
            raise unknown_choice("method", self.method, METHODS)
        if self.readout not in READOUTS:
            raise unknown_choice("readout", self.readout, READOUTS)
        groups = None
        if self.method == "bitfit" and self.groups is not None:
            groups = resolve_groups(self.groups)
            groups = None if method_label("bitfit", groups) == "bitfit" else groups
        elif self.groups is not None and self.method != "bitfit":
            raise BitFitError(f"bias groups apply to method 'bitfit' only, not {self.method!r}")
        if self.layers is not None and (self.method != "bitfit" or not 0 <= self.layers[0] <= self.layers[1]):
            raise BitFitError(f"layers {self.layers}: a range of layers (first, last, 0 <= first <= last) applies to "
                              "method 'bitfit' only")
        for name in ("learning_rate", "epochs", "batch_size", "max_length", "train_eval_size"):
            if not getattr(self, name) > 0:
                raise BitFitError(f"{name} must be positive, got {getattr(self, name)}")
        if self.start is not None:
            check_start(self.start)
        if not math.isfinite(self.learning_rate):
            raise BitFitError(f"learning_rate must be a finite number, got {self.learning_rate}")
        if not 0 <= self.seed < 2**32:
            raise BitFitError(f"seed must be between 0 and 2**32 - 1 (what numpy accepts), got {self.seed}")
        for name in ("train_size", "dev_size"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise BitFitError(f"{name} must be at least 1 (or None for all), got {getattr(self, name)}")
        if (self.max_steps is None) != (self.eval_every is None):
            raise BitFitError("max_steps and eval_every go together: a step budget and how often to evaluate")
        if self.max_steps is not None and not 0 < self.eval_every <= self.max_steps:
            raise BitFitError(f"eval_every must be between 1 and max_steps ({self.max_steps}), got {self.eval_every}")
        if self.max_steps is not None and self.max_steps % self.eval_every:
            raise BitFitError(f"max_steps ({self.max_steps}) must be a multiple of eval_every ({self.eval_every}), "
                              "so that training ends on an evaluation")
        start = None if self.start == PRETRAINED else self.start  # one config, one id, for the default start
        return replace(self, task=glue.get_task(self.task).name, groups=groups, start=start)

    @property
    def encoder_start(self) -> str:
        """Where the encoder starts: 'pretrained', 'random' or 'shuffled' (``core.starts``)."""
        return self.start or PRETRAINED

    @property
    def label(self) -> str:
        return method_label(self.method, self.groups, self.layers)

    @property
    def setting(self) -> str:
        """A short digest of the whole config but its seed: runs of one setting are seeds of one experiment."""
        unseeded = {key: value for key, value in self.as_dict().items() if key != "seed"}
        return hashlib.sha1(json.dumps(unseeded, sort_keys=True).encode()).hexdigest()[:6]

    @property
    def run_id(self) -> str:
        """A readable, unique file name stem: task, method, learning rate, seed, hash of the whole config."""
        digest = hashlib.sha1(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()[:10]
        method = self.label.replace(":", "-").replace("+", "-").replace("@", "-layers")
        method += f"-from-{self.start}" if self.start else ""
        return f"{self.task}_{method}_lr{self.learning_rate:g}_seed{self.seed}_{digest}"


# --- What a finished run recorded -------------------------------------------------------------------------
# A record is stored as JSON (``results``) and read back as a RunRecord: attributes, not string keys.
# ``RunRecord.from_json`` is the one loader of every schema version; ``to_json`` gives back the stored form.

VERSION_1 = "bitfit_edu.run/1"
READABLE_SCHEMAS = (VERSION_1, SCHEMA)
REQUIRED_FIELDS = ("run_id", "config", "label", "params", "epochs", "best_epoch", "best", "last", "timing")


@dataclass(frozen=True)
class Scores:
    """One evaluation of a split: ``score`` (x1, the mean of the task's metrics, the paper's per-task
    number), each metric by name (accuracy, f1, matthews_correlation, pearson, spearmanr) and the loss."""

    score: float
    metrics: dict[str, float]
    loss: float | None = None

    @classmethod
    def from_json(cls, stored: dict) -> Scores:
        metrics = {k: v for k, v in stored.items() if k not in ("score", "loss")}
        return cls(score=stored["score"], metrics=metrics, loss=stored.get("loss"))


@dataclass(frozen=True)
class Evaluation:
    """The state of a run at one evaluation: after ``epoch`` epochs (or ``step`` steps under a step budget)."""

    epoch: float
    dev: Scores
    train: Scores | None  # the fixed training subsample: dev minus train is the generalization gap
    train_loss: float | None
    eval_seconds: float
    step: int | None = None

    @classmethod
    def from_json(cls, stored: dict) -> Evaluation:
        return cls(epoch=stored["epoch"], dev=Scores.from_json(stored["dev"]),
                   train=Scores.from_json(stored["train"]) if "train" in stored else None,
                   train_loss=stored.get("train_loss"), eval_seconds=stored.get("eval_seconds", 0.0),
                   step=stored.get("step"))


@dataclass(frozen=True)
class BiasChange:
    """Mean |b_after - b_before| and mean |b_before| of one bias term (``group``) in one layer (None: outside
    the layers, e.g. the embeddings' LayerNorm): one cell of the paper's Figure 1."""

    group: str
    layer: int | None
    mean_abs_change: float
    mean_abs_init: float


@dataclass(frozen=True)
class Params:
    """Parameter counts: the model's, what trained (with and without the task head), its biases, and the
    pre-trained encoder as the run read it (``counting.pretrained_count``: "% of the model"'s denominator;
    None in records made before it was recorded)."""

    total: int
    trainable: int
    trainable_without_head: int
    biases: int
    encoder: int | None = None


@dataclass(frozen=True)
class Timing:
    """What a run cost, and what it ran on."""

    wall_seconds: float  # loading, tokenizing, training and evaluating
    train_seconds: float  # training steps only
    train_tokens_per_second: float
    peak_memory_mb: float
    memory_kind: str  # 'process peak RSS' on a CPU, 'cuda max allocated' on a GPU
    device: str  # e.g. 'CPU (AVX512)': which vector instructions trained it
    matrix_products: str  # 'fp32', 'bf16' (hardware kernels) or 'bf16, emulated in fp32' (precision)
    torch_threads: int

    @property
    def core_seconds(self) -> float:
        """Wall seconds x CPU threads, so that runs of one 2-thread worker and of two 1-thread workers
        compare; a GPU run counts once."""
        return self.wall_seconds * (1 if self.memory_kind.startswith("cuda") else self.torch_threads)


@dataclass(frozen=True)
class RunRecord:
    """A finished run: its config, what it trained, its evaluations, the best and last dev scores, how its
    biases moved, and its cost. ``stored`` is the JSON it was read from (or will be written as)."""

    config: RunConfig
    run_id: str
    label: str  # the method label (methods.method_label): 'bitfit', 'bitfit:b_q+b_m2', 'rand_row_col'
    readout: str  # in words
    train_size: int  # training examples used
    evaluated: dict[str, int]  # examples scored per split: {'dev': ..., 'train': ...}
    params: Params
    epochs: tuple[Evaluation, ...]
    best_epoch: float
    best_step: int | None  # step budgets only
    best: Scores  # dev scores at the best evaluation (the paper's protocol)
    last: Scores  # dev scores at the last evaluation
    bias_change: tuple[BiasChange, ...]
    timing: Timing
    versions: dict[str, str]
    finished_at: str
    stored: dict = field(repr=False, compare=False)

    @property
    def task(self) -> str:
        return self.config.task

    @property
    def seed(self) -> int:
        return self.config.seed

    @property
    def method(self) -> str:
        return self.config.method

    @property
    def best_evaluation(self) -> Evaluation:
        """The evaluation the best dev score came from."""
        return next(e for e in self.epochs if e.dev == self.best)

    @classmethod
    def from_json(cls, stored: dict, source: str = "this record") -> RunRecord:
        """The one loader of every schema version: a record of an older version gets what it lacks (see
        ``upgrade``); one of an unknown version, or missing a field, gets a clear error naming ``source``."""
        schema = stored.get("schema")
        if isinstance(schema, str) and schema.startswith("bitfit_edu.run/") and schema not in READABLE_SCHEMAS:
            raise BitFitError(f"{source} is a run record of schema {schema!r}, which this version of bitfit_edu "
                              f"cannot read (it reads {', '.join(READABLE_SCHEMAS)}): update the package")
        if schema not in READABLE_SCHEMAS or "config" not in stored:
            raise BitFitError(f"foreign file {source}: not a bitfit_edu run record (schema {SCHEMA!r}). "
                              "Move it out of the results folder; the folder must hold only run records")
        missing = [name for name in REQUIRED_FIELDS if name not in stored]
        if missing:
            raise BitFitError(f"incomplete run record {source}: no {', '.join(missing)}. Move it out of the "
                              "results folder and run again to redo that run")
        stored = upgrade(stored)
        return cls(
            config=RunConfig.from_dict(stored["config"]), run_id=stored["run_id"], label=stored["label"],
            readout=stored.get("readout", ""), train_size=stored["sizes"]["train"],
            evaluated=stored["sizes"]["evaluated"], params=Params(**stored["params"]),
            epochs=tuple(Evaluation.from_json(e) for e in stored["epochs"]), best_epoch=stored["best_epoch"],
            best_step=stored["best_step"], best=Scores.from_json(stored["best"]),
            last=Scores.from_json(stored["last"]),
            bias_change=tuple(BiasChange(**row) for row in stored.get("bias_change", ())),
            timing=Timing(**stored["timing"]), versions=stored.get("versions", {}),
            finished_at=stored.get("finished_at", ""), stored=stored,
        )

    def to_json(self) -> dict:
        """The record as stored on disk."""
        return self.stored


def upgrade(stored: dict) -> dict:
    """A stored record of any readable version in the shape of the current one; the file is never rewritten.

    Version 1 records were written before some fields existed. The run config's step budget
    (``max_steps``, ``eval_every``) was then always unused, and is left out of every record's config while
    unused (so ids stay the same); ``best_step`` belongs to step budgets only; and a run without
    ``timing.matrix_products`` ran before bf16 products could be emulated, so its bf16 products came from
    hardware kernels (PyTorch's own bf16 fallback would have taken many times as long as those records show).
    """
    if stored["schema"] == VERSION_1:
        stored = {**stored, "schema": SCHEMA, "schema_read_from": VERSION_1}
        stored.setdefault("best_step", None)
        bf16 = stored["config"].get("bf16", False)
        stored["timing"] = {"matrix_products": "bf16" if bf16 else "fp32", **stored["timing"]}
    return stored
