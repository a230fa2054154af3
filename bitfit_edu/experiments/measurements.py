"""The measurements of notebook 09 that are not runs: linear probes on frozen features, and how much a
fine-tuning run changed each layer (linear CKA, ``core.representations``).

Each measurement is one small JSON file under ``results/expose/`` (``probes/``, ``cka/``), written when it
finishes, so that the command can be stopped and resumed, and two 1-thread workers can share the list.

- ``probe``: for one task and one start of the encoder (``core.starts``, seed 0), the features of each layer
  for the same 2,000 training examples the runs train on and for the whole dev set; a probe per layer is
  fitted on the training features and scored on dev with the task's metric.
- ``representation_change``: one run of the main grid (same configuration, so its dev score can be set
  beside the committed record's), with the features of the first ``CKA_EXAMPLES`` dev sentences taken
  before training and after it; linear CKA per layer.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import datasets
import numpy as np
from transformers import DataCollatorWithPadding, TrainerCallback

from ..core.readout import load_classifier, load_tokenizer
from ..core.representations import fit_probe, layer_features, linear_cka
from ..core.starts import PRETRAINED, STARTS
from ..data import glue
from ..data.locations import results_folder
from .grids import EXPOSE_TASKS
from .profiles import Profile
from .results import ResultStore
from .runs import RunConfig

CKA_EXAMPLES = 500
CKA_METHODS = ("bitfit", "full")
BATCH = 64


def folder(profile: Profile, kind: str, root: Path | None = None) -> Path:
    """Where a profile's measurements of ``kind`` ('probes', 'cka') are kept: ``<root>/<profile>/<kind>``,
    ``root`` by default the checkout's ``results/expose``."""
    return Path(root or results_folder("expose")) / profile.name / kind


def batches(split: datasets.Dataset, tokenizer, size: int = BATCH) -> Iterator[dict]:
    """Padded tensor batches of a tokenized split, in order."""
    collate = DataCollatorWithPadding(tokenizer, return_tensors="pt")
    names = [name for name in tokenizer.model_input_names if name in split.column_names]
    for first in range(0, len(split), size):
        rows = split.select(range(first, min(first + size, len(split))))
        yield collate([{name: row[name] for name in names} for row in rows])


def tokenized_splits(config: RunConfig, glue_dir=None):
    """The run's training subsample and dev set, tokenized, with the tokenizer (``training.load_data``)."""
    from .training import load_data, prepare_data  # the training engine, only when measuring

    tokenizer = load_tokenizer(config.model)
    data = prepare_data(config, load_data(config, glue_dir), tokenizer)
    return data.train, data.evaluation["dev"], tokenizer


def probe(profile: Profile, task: str, start: str, glue_dir=None) -> dict:
    """Linear probes on each layer of the frozen encoder from ``start`` (seed 0): dev score x100 per layer."""
    config = RunConfig.from_profile(profile, task, "frozen", start=start)
    spec = config.task_spec
    train, dev, tokenizer = tokenized_splits(config, glue_dir)
    model = load_classifier(config.model, spec.num_labels, config.readout, seed=0, start=start)
    train_features, dev_features = (layer_features(model, batches(split, tokenizer)) for split in (train, dev))
    scores = []
    for layer, (fit_on, score_on) in enumerate(zip(train_features, dev_features, strict=True)):
        predictions = fit_probe(fit_on, np.asarray(train["label"]), spec.is_regression).predict(score_on)
        metrics = glue.glue_metrics(spec, predictions, np.asarray(dev["label"]))
        scores.append({"layer": layer, "score": 100 * glue.task_score(spec, metrics), "metrics": metrics})
    return {"task": spec.name, "start": start, "model": config.model, "train_examples": len(train),
            "dev_examples": len(dev), "layers": scores}


class RepresentationChange(TrainerCallback):
    """Takes each layer's features of ``examples`` when training begins and again when it ends, and
    keeps their linear CKA per layer (``cka``)."""

    def __init__(self, examples: list[dict]):
        self.examples = examples
        self.before: list[np.ndarray] = []
        self.cka: list[float] = []

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.before = layer_features(model, self.examples)
        model.train()

    def on_train_end(self, args, state, control, model=None, **kwargs):
        after = layer_features(model, self.examples)
        self.cka = [linear_cka(x, y) for x, y in zip(self.before, after, strict=True)]
        model.train()


def representation_change(profile: Profile, task: str, method: str, seed: int = 0, start: str = PRETRAINED,
                          glue_dir=None) -> dict:
    """Train one run of the main grid's configuration and measure its layers' CKA, before against after;
    its last dev score beside the committed record's for the same configuration, where there is one."""
    from .training import run  # the training engine, only when measuring

    config = RunConfig.from_profile(profile, task, method, seed=seed, start=start)
    _, dev, tokenizer = tokenized_splits(config, glue_dir)
    change = RepresentationChange(list(batches(dev.select(range(min(CKA_EXAMPLES, len(dev)))), tokenizer)))
    record = run(config, glue_dir=glue_dir, callbacks=[change])
    committed = ResultStore.committed(profile.name).finished(record.config)
    return {"task": config.task, "method": method, "start": start, "seed": seed, "run_id": record.run_id,
            "examples": CKA_EXAMPLES, "cka": change.cka, "last": 100 * record.last.score,
            "committed_last": None if committed is None else 100 * committed.last.score,
            "device": record.timing.device, "matrix_products": record.timing.matrix_products}


KINDS = ("probes", "cka")


def measurement_list(kind: str) -> list[dict]:
    """Every measurement of ``kind`` ('probes': each task and start; 'cka': each task and method, the
    cheaper task first), as the keyword arguments of ``probe`` or ``representation_change``."""
    if kind == "probes":
        return [{"task": task, "start": start} for task in EXPOSE_TASKS for start in STARTS]
    return [{"task": task, "method": method} for task in reversed(EXPOSE_TASKS) for method in CKA_METHODS]


def file_of(profile: Profile, kind: str, settings: dict, root: Path | None = None) -> Path:
    return folder(profile, kind, root) / ("_".join(str(value) for value in settings.values()) + ".json")


def measure(profile: Profile, kind: str, worker: int = 1, workers: int = 1, glue_dir=None,
            root: Path | None = None) -> list[Path]:
    """Take every missing measurement of ``kind`` in this worker's share (every ``workers``-th), writing each
    file the moment it is measured; returns the files written."""
    written = []
    for settings in measurement_list(kind)[worker - 1::workers]:
        path = file_of(profile, kind, settings, root)
        if path.exists():
            continue
        found = (probe if kind == "probes" else representation_change)(profile, glue_dir=glue_dir, **settings)
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=".", suffix=".tmp", delete=False) as file:
            json.dump({"profile": profile.name, **found}, file, indent=1)
        os.replace(file.name, path)
        written.append(path)
    return written


def load(profile: Profile, kind: str, root: Path | None = None) -> list[dict]:
    """Every measurement of ``kind`` ('probes', 'cka') of a profile (default: the committed ones)."""
    return [json.loads(path.read_text(encoding="utf-8"))
            for path in sorted(folder(profile, kind, root).glob("*.json"))]
