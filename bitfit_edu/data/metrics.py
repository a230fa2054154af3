"""GLUE metrics as GLUE defines them, offline: plain functions, and the Trainer's ``compute_metrics``.

CoLA: Matthews correlation. SST-2, QNLI, RTE, MNLI: accuracy. MRPC, QQP: F1 (positive class) and
accuracy. STS-B: Pearson and Spearman correlation. A task's *score* is the mean of its metrics, as the
GLUE leaderboard averages the two numbers of MRPC, QQP and STS-B.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef
from transformers import EvalPrediction

from .glue import GlueTask

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
