"""GLUE data in the schema of the hub's ``nyu-mll/glue``: from the hub, or from a classic GLUE folder.

A classic folder is what the original ``download_glue_data.py`` wrote (``RTE/train.tsv``,
``RTE/dev.tsv``, ...). Pass it as ``glue_dir``, or let ``locations.glue_dir`` find it (``GLUE_DIR``, or
the offline data folder); otherwise data comes from the hub.
Either way a split has the hub's field names and label ids, so everything downstream is the same.

Every task is scored by GLUE's own metrics, computed offline: CoLA, Matthews correlation; SST-2, QNLI, RTE,
MNLI, accuracy; MRPC and QQP, F1 (positive class) and accuracy; STS-B, Pearson and Spearman correlation. A task's
*score* is the mean of its metrics, as the GLUE leaderboard averages the two numbers of MRPC, QQP and STS-B.
"""

from __future__ import annotations

import csv
import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef
from transformers import EvalPrediction, PreTrainedTokenizerBase

from ..errors import BitFitError, unknown_choice
from . import locations


@dataclass(frozen=True)
class GlueTask:
    """One GLUE task: its fields, labels, metrics and classic TSV layout."""

    name: str
    folder: str
    text_fields: tuple[str, ...]
    label_names: tuple[str, ...] | None  # None: regression (STS-B)
    metrics: tuple[str, ...]
    tsv_columns: dict[str, str | int]  # hub field -> TSV header name (or column index without header)
    dev_files: dict[str, str]  # hub split -> file name
    train_size: int

    @property
    def is_regression(self) -> bool:
        return self.label_names is None

    @property
    def num_labels(self) -> int:
        return 1 if self.label_names is None else len(self.label_names)

    @property
    def dev_split(self) -> str:
        """The split reported as 'dev' (MNLI: matched)."""
        return next(iter(self.dev_files))


_ENTAILMENT = ("entailment", "not_entailment")
_DEV = {"validation": "dev.tsv"}
TASKS: dict[str, GlueTask] = {t.name: t for t in (
    GlueTask("cola", "CoLA", ("sentence",), ("unacceptable", "acceptable"), ("matthews_correlation",),
             {"sentence": 3, "label": 1}, _DEV, 8551),
    GlueTask("sst2", "SST-2", ("sentence",), ("negative", "positive"), ("accuracy",),
             {"sentence": "sentence", "label": "label"}, _DEV, 67349),
    GlueTask("mrpc", "MRPC", ("sentence1", "sentence2"), ("not_equivalent", "equivalent"), ("f1", "accuracy"),
             {"sentence1": "#1 String", "sentence2": "#2 String", "label": "Quality"}, _DEV, 3668),
    GlueTask("stsb", "STS-B", ("sentence1", "sentence2"), None, ("pearson", "spearmanr"),
             {"sentence1": "sentence1", "sentence2": "sentence2", "label": "score"}, _DEV, 5749),
    GlueTask("qqp", "QQP", ("question1", "question2"), ("not_duplicate", "duplicate"), ("f1", "accuracy"),
             {"question1": "question1", "question2": "question2", "label": "is_duplicate"}, _DEV, 363846),
    GlueTask("mnli", "MNLI", ("premise", "hypothesis"), ("entailment", "neutral", "contradiction"), ("accuracy",),
             {"premise": "sentence1", "hypothesis": "sentence2", "label": "gold_label"},
             {"validation_matched": "dev_matched.tsv", "validation_mismatched": "dev_mismatched.tsv"}, 392702),
    GlueTask("qnli", "QNLI", ("question", "sentence"), _ENTAILMENT, ("accuracy",),
             {"question": "question", "sentence": "sentence", "label": "label"}, _DEV, 104743),
    GlueTask("rte", "RTE", ("sentence1", "sentence2"), _ENTAILMENT, ("accuracy",),
             {"sentence1": "sentence1", "sentence2": "sentence2", "label": "label"}, _DEV, 2490),
)}
_ALIASES = {t.folder.lower(): t.name for t in TASKS.values()} | {"sts-b": "stsb", "sst-2": "sst2"}


def get_task(name: str) -> GlueTask:
    """A GLUE task by hub name ('rte', 'sst2') or classic folder name ('RTE', 'SST-2')."""
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in TASKS:
        raise unknown_choice("GLUE task", name, TASKS)
    return TASKS[key]


# sha256 of the classic GLUE files as the original download_glue_data.py writes them. A run on exactly these
# files, or on the hub's nyu-mll/glue (the same data), keeps its plain run id; a run on any other data
# (a private subset, an edited copy) gets an id of its own (``data_identity``).
OFFICIAL_FILES = {
    "CoLA/train.tsv": "cb368ebeb9f27d7ad03720d27ddc95687a311bdb100781a2fe59a5f5b1bc0624",
    "CoLA/dev.tsv": "8c013e21dc39957cac37378d87bebe225b694a0d5fe13eded66c2856628833fd",
    "SST-2/train.tsv": "48eac26399f8456935f81dd9e3a745c1430adb6c62e233ccfe22db4a0d15d1d1",
    "SST-2/dev.tsv": "54a9c12c77e402fc14d6a66a506f24d999f596b0176eb777c972cccc2f9cc4b0",
    "MRPC/train.tsv": "69abcedee3cf738c6ce58d772e43e1b7cdf5b4edee4aceda459c0d9f4e5599f3",
    "MRPC/dev.tsv": "9e8f284788040f7c9ecde2e1b3c07237c756f926bd9ef8548ef5d34b56f69f17",
    "STS-B/train.tsv": "41c4d978b6162abdcada7e49a982211954cca5459c228db478af333124b257a2",
    "STS-B/dev.tsv": "fe7dc0632a5033562f3cadff991f6e8d9b9b6311861660e78c3c82eb7db67f59",
    "RTE/train.tsv": "41e3a9b063433392343fad9e962cf2f58b681c78d8f71592f4186f0837246c5c",
    "RTE/dev.tsv": "80230dfa1347282e7b532b06a1004a76a710087541189bf874223ddf0e3819fb",
    "QNLI/dev.tsv": "ac19409dcb04631eaaa094bdebdcf621086bc352503dfb6a1a648b614986f4fd",
}


def data_identity(task: GlueTask, glue_dir: str | Path | None = None) -> str | None:
    """None for the official GLUE data; otherwise a short digest of the files a run of ``task`` reads."""
    folder = locations.glue_dir(glue_dir)
    paths = [folder / task.folder / name for name in ("train.tsv", *task.dev_files.values())] if folder else []
    if not paths or not all(path.is_file() for path in paths):
        return None  # the hub, or files missing: loading them will say so
    digests = [_sha256(path.resolve(), path.stat().st_mtime_ns, path.stat().st_size) for path in paths]
    official = [OFFICIAL_FILES.get(f"{task.folder}/{path.name}") for path in paths]
    if official == digests:
        return None
    return hashlib.sha256("".join(digests).encode()).hexdigest()[:10]


@functools.lru_cache(maxsize=64)
def _sha256(path: Path, mtime_ns: int, size: int) -> str:
    """A file's sha256 (cached while its modification time and size stay the same)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _features(task: GlueTask) -> datasets.Features:
    label = (datasets.Value("float32") if task.is_regression
             else datasets.ClassLabel(names=list(task.label_names)))
    fields = {f: datasets.Value("string") for f in task.text_fields}
    return datasets.Features({**fields, "label": label, "idx": datasets.Value("int32")})


def _parse_label(task: GlueTask, raw: str, where: str) -> int | float:
    if task.is_regression:
        try:
            score = float(raw)
        except ValueError:
            raise BitFitError(f"{where}: label {raw!r} is not a number (STS-B scores are floats in [0, 5])") from None
        if not 0 <= score <= 5:  # also false for nan
            raise BitFitError(f"{where}: label {raw!r} is outside [0, 5], the range of STS-B scores")
        return score
    if raw in task.label_names:
        return task.label_names.index(raw)
    if raw.isdigit() and int(raw) < task.num_labels:
        return int(raw)
    valid = ", ".join(task.label_names) + f" or 0..{task.num_labels - 1}"
    raise BitFitError(f"{where}: label {raw!r} is not a {task.name} label ({valid})")


def read_tsv(task: GlueTask, path: Path) -> datasets.Dataset:
    """Read one classic GLUE TSV file into the hub schema (quoting disabled: quotes are text in GLUE)."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    except UnicodeDecodeError as error:
        raise BitFitError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start}); "
                          "GLUE files are UTF-8") from None
    has_header = isinstance(task.tsv_columns["label"], str)
    if not rows or (has_header and len(rows) == 1):
        raise BitFitError(f"{path}: no data rows (the file is {'empty' if not rows else 'a header only'})")
    header, body, first_line = (rows[0], rows[1:], 2) if has_header else ([], rows, 1)
    columns = {}
    for field, column in task.tsv_columns.items():
        if isinstance(column, str) and column not in header:
            raise BitFitError(f"{path}: header has no column {column!r} (found: {', '.join(header)}); "
                              f"is this the {task.folder} file of a classic GLUE folder?")
        columns[field] = header.index(column) if isinstance(column, str) else column
    width = max(columns.values()) + 1
    records: dict[str, list] = {field: [] for field in (*task.text_fields, "label", "idx")}
    for number, row in enumerate(body, start=first_line):
        if not row:
            continue
        where = f"{path}, line {number}"
        if len(row) < width:
            raise BitFitError(f"{where}: {len(row)} tab-separated fields, expected at least {width}")
        for field in task.text_fields:
            records[field].append(row[columns[field]])
        records["label"].append(_parse_label(task, row[columns["label"]], where))
        records["idx"].append(len(records["idx"]))
    if not records["idx"]:
        raise BitFitError(f"{path}: no data rows (only blank lines after the header)")
    return datasets.Dataset.from_dict(records, features=_features(task))


def load_split(task: str | GlueTask, split: str, glue_dir: str | Path | None = None) -> datasets.Dataset:
    """One split ('train', 'validation', MNLI's 'validation_matched'...) of a GLUE task.

    From ``glue_dir`` when given, else from the folder ``locations.glue_dir`` finds, else from the hub's
    ``nyu-mll/glue``.
    """
    task = get_task(task) if isinstance(task, str) else task
    files = {"train": "train.tsv", **task.dev_files}
    if split not in files:
        raise unknown_choice(f"split of {task.name}", split, files)
    glue_dir = locations.glue_dir(glue_dir)
    if glue_dir is None:
        return _load_from_hub(task, split)
    path = glue_dir / task.folder / files[split]
    if path.is_dir():
        raise BitFitError(f"{path} is a folder, not a file: a classic GLUE folder holds {task.folder}/{files[split]}")
    if not path.is_file():
        raise BitFitError(
            f"missing GLUE file {path}: {glue_dir} must be a classic GLUE folder holding "
            f"{task.folder}/{files[split]} (see README, 'Offline use')"
        )
    return read_tsv(task, path)


def example_texts(task: str | GlueTask, index: int = 0, glue_dir: str | Path | None = None) -> tuple[str, ...]:
    """The text fields of dev example ``index`` of a task: one sentence, or a pair."""
    task = get_task(task) if isinstance(task, str) else task
    example = load_split(task, task.dev_split, glue_dir)[index]
    return tuple(example[field] for field in task.text_fields)


def _load_from_hub(task: GlueTask, split: str) -> datasets.Dataset:
    try:
        return datasets.load_dataset("nyu-mll/glue", task.name, split=split)
    except Exception as error:  # network and hub errors come in many types
        raise BitFitError(
            f"could not load {task.name}/{split} from the Hugging Face hub (nyu-mll/glue): {error}. "
            f"Offline? Put a classic GLUE folder at $BITFIT_EDU_DATA/glue_data or set GLUE_DIR to one "
            "(an absolute path)"
        ) from error


def subsample(dataset: datasets.Dataset, size: int | None, seed: int) -> datasets.Dataset:
    """``size`` examples drawn by ``seed`` (the same seed always gives the same examples); None: all."""
    if size is not None and size < 1:
        raise BitFitError(f"subsample size must be at least 1, got {size}")
    if len(dataset) == 0:
        raise BitFitError("the dataset is empty: nothing to train or evaluate on")
    if size is None or size >= len(dataset):
        return dataset
    return dataset.shuffle(seed=seed).select(range(size))


def tokenize(dataset: datasets.Dataset, tokenizer: PreTrainedTokenizerBase, task: GlueTask,
             max_length: int) -> datasets.Dataset:
    """Batched tokenization (``datasets.map``) of a task's text fields; padding is left to the collator."""
    def encode(batch: dict) -> dict:
        texts = [batch[field] for field in task.text_fields]
        return tokenizer(*texts, truncation=True, max_length=max_length)

    text_columns = [c for c in dataset.column_names if c != "label"]
    # datasets would fingerprint the result by pickling ``encode`` and its tokenizer, which it cannot do
    # reliably, and its bare ``except`` there swallows a Ctrl-C or SIGTERM that lands meanwhile: name it here
    recipe = f"{dataset._fingerprint}|{tokenizer.name_or_path}|{len(tokenizer)}|{task.name}|{max_length}"
    return dataset.map(encode, batched=True, remove_columns=text_columns, desc=f"tokenizing {task.name}",
                       new_fingerprint=hashlib.sha256(recipe.encode()).hexdigest()[:16])


_METRICS = {
    "accuracy": lambda p, r: accuracy_score(r, p),
    "f1": lambda p, r: f1_score(r, p),
    "matthews_correlation": lambda p, r: matthews_corrcoef(r, p),
    "pearson": lambda p, r: pearsonr(p, r)[0],
    "spearmanr": lambda p, r: spearmanr(p, r)[0],
}


def glue_metrics(task: GlueTask, predictions, references) -> dict[str, float]:
    """The task's GLUE metrics, in [0, 1] (correlations in [-1, 1]), for label ids or regression scores."""
    predictions, references = np.asarray(predictions), np.asarray(references)
    return {name: float(_METRICS[name](predictions, references)) for name in task.metrics}


def task_score(task: GlueTask, metrics: dict[str, float]) -> float:
    """One number per task for GLUE averages: the mean of the task's metrics."""
    return float(np.mean([metrics[name] for name in task.metrics]))


def predictions_from_logits(task: GlueTask, logits: np.ndarray) -> np.ndarray:
    """Class ids (argmax) for classification, the single output for regression."""
    return logits.squeeze(-1) if task.is_regression else logits.argmax(-1)


def trainer_metrics(task: GlueTask):
    """A ``compute_metrics`` function for ``transformers.Trainer``: metrics plus the task score."""
    def compute(prediction: EvalPrediction) -> dict[str, float]:
        logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        metrics = glue_metrics(task, predictions_from_logits(task, logits), prediction.label_ids)
        return {**metrics, "score": task_score(task, metrics)}
    return compute
