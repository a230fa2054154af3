"""GLUE metrics against values computed independently, by hand from their definitions."""

import math

import numpy as np
import pytest

from bitfit_edu.data.glue import get_task, glue_metrics, task_score

PREDICTIONS = [1, 1, 0, 0, 1, 0, 1, 1]
REFERENCES = [1, 0, 0, 1, 1, 0, 1, 0]
TP, TN, FP, FN = 3, 2, 2, 1  # counted by hand from the two lists above


def test_accuracy_and_f1_from_the_confusion_counts():
    metrics = glue_metrics(get_task("mrpc"), PREDICTIONS, REFERENCES)
    assert metrics["accuracy"] == pytest.approx((TP + TN) / 8)
    assert metrics["f1"] == pytest.approx(2 * TP / (2 * TP + FP + FN))


def test_matthews_correlation_from_its_formula():
    expected = (TP * TN - FP * FN) / math.sqrt((TP + FP) * (TP + FN) * (TN + FP) * (TN + FN))
    assert glue_metrics(get_task("cola"), PREDICTIONS, REFERENCES)["matthews_correlation"] == pytest.approx(expected)


def test_pearson_and_spearman():
    predictions = np.array([0.5, 2.0, 1.0, 4.5, 3.0])
    references = np.array([1.0, 1.5, 2.0, 5.0, 2.5])
    metrics = glue_metrics(get_task("stsb"), predictions, references)
    assert metrics["pearson"] == pytest.approx(np.corrcoef(predictions, references)[0, 1])
    ranks_p, ranks_r = predictions.argsort().argsort(), references.argsort().argsort()
    assert metrics["spearmanr"] == pytest.approx(np.corrcoef(ranks_p, ranks_r)[0, 1])


def test_task_score_averages_two_metrics():
    assert task_score(get_task("mrpc"), {"f1": 0.8, "accuracy": 0.6}) == pytest.approx(0.7)
    assert task_score(get_task("rte"), {"accuracy": 0.6}) == pytest.approx(0.6)
