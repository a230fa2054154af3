"""What a run is: its configuration, the identity of its record, and the record's schema version.

A run is model x task x method (with its bias groups) x seed x hyperparameters. Two runs with equal
configs are the same experiment, and share one record (``results``). This module is what reading a
record needs; training one is ``training``'s job.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, replace

from . import glue, precision
from .biases import resolve_groups
from .errors import BitFitError, unknown_choice
from .methods import METHODS, method_label
from .profiles import Profile
from .readout import READOUTS

SCHEMA = "bitfit_edu.run/2"  # version 1 lacked fields that later runs record; results.upgrade fills them in
_LATER_FIELDS = ("max_steps", "eval_every", "data")  # see RunConfig.as_dict


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

    def with_data(self, glue_dir=None) -> RunConfig:
        """This config for the GLUE data it will read from ``glue_dir`` (or where ``locations`` finds it)."""
        return replace(self, data=glue.data_identity(self.task, glue_dir))

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
        groups = settings.get("groups")
        return cls(**{**settings, "groups": None if groups is None else tuple(groups)})

    @classmethod
    def for_demo(cls, profile: Profile, task: str, method: str, **overrides) -> RunConfig:
        """A short live run (the demo, the notebooks): the profile's demo sizes, and its bf16 autocast
        only where this machine has bfloat16 kernels, fp32 elsewhere (see ``precision``)."""
        settings = dict(train_size=profile.demo_train_size, epochs=profile.demo_epochs,
                        train_eval_size=profile.demo_train_eval_size,
                        bf16=profile.bf16 and precision.native_bf16())
        return cls.from_profile(profile, task, method, **{**settings, **overrides})

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
        for name in ("learning_rate", "epochs", "batch_size", "max_length", "train_eval_size"):
            if not getattr(self, name) > 0:
                raise BitFitError(f"{name} must be positive, got {getattr(self, name)}")
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
        return replace(self, task=glue.get_task(self.task).name, groups=groups)

    @property
    def label(self) -> str:
        return method_label(self.method, self.groups)

    @property
    def run_id(self) -> str:
        """A readable, unique file name stem: task, method, learning rate, seed, hash of the whole config."""
        digest = hashlib.sha1(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()[:10]
        method = self.label.replace(":", "-").replace("+", "-")
        return f"{self.task}_{method}_lr{self.learning_rate:g}_seed{self.seed}_{digest}"
