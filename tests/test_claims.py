"""Claims checked from runs: the verdict follows the interval over seeds, never the point estimate alone."""

import numpy as np
import pytest

from bitfit_edu.analysis import runs_frame
from bitfit_edu.claims import (
    FAILS,
    HOLDS,
    MAIN_CLAIMS,
    NOT_RUN,
    UNRESOLVED,
    check_claims,
    difference,
    verdict,
)
from bitfit_edu.errors import BitFitError


def grid(scores: dict[str, dict[str, list[float]]]) -> list[dict]:
    """Minimal run records: method -> task -> one dev score (x100) per seed."""
    return [{"config": {"task": task, "seed": seed, "learning_rate": 1e-3, "epochs": 1}, "label": method,
             "best": {"score": s / 100}, "last": {"score": s / 100}, "best_epoch": 1, "sizes": {"train": 10},
             "params": {"trainable": 1, "trainable_without_head": 0, "total": 9}, "timing": {"train_seconds": 1.0}}
            for method, tasks in scores.items() for task, seeds in tasks.items() for seed, s in enumerate(seeds)]


def test_difference_averages_tasks_per_seed_then_compares():
    frame = runs_frame(grid({"bitfit": {"rte": [60, 62, 64], "mrpc": [80, 82, 84]},
                             "full": {"rte": [58, 60, 62], "mrpc": [80, 82, 84], "cola": [1, 1, 1]}}))
    found = difference(frame, "bitfit", "full")
    assert found["tasks"] == ["mrpc", "rte"]  # only the tasks both methods ran
    assert found["difference"] == pytest.approx(1.0) and found["seeds"] == (3, 3)
    assert found["low"] < 1.0 < found["high"]


@pytest.mark.parametrize("kind,low,high,expected", [
    ("similar", -1.0, 1.2, HOLDS),
    ("similar", -3.0, 1.0, UNRESOLVED),
    ("similar", 2.0, 5.0, FAILS),
    ("worse", -9.0, -0.5, HOLDS),
    ("worse", -2.0, 1.0, UNRESOLVED),
    ("worse", 0.5, 3.0, FAILS),
    ("worse", np.nan, np.nan, UNRESOLVED),
])
def test_verdict_reads_the_interval(kind, low, high, expected):
    assert verdict(kind, low, high, tolerance=1.5) == expected


def test_check_claims_table():
    frame = runs_frame(grid({"full": {"rte": [70.0, 70.2, 70.4]}, "bitfit": {"rte": [70.2, 70.4, 70.6]},
                             "frozen": {"rte": [50, 51, 52]}}))
    table = check_claims(frame, MAIN_CLAIMS)
    assert table.loc["BitFit matches Full-FT", "verdict"] == HOLDS
    assert table.loc["Frozen (head only) is far below BitFit", "verdict"] == HOLDS
    assert table.loc["Frozen (head only) is far below BitFit", "paper: gap"] == "-20.3"


def test_a_single_seed_is_not_resolved():
    frame = runs_frame(grid({"full": {"rte": [70]}, "bitfit": {"rte": [60]}}))
    assert check_claims(frame, MAIN_CLAIMS[:1])["verdict"].item() == UNRESOLVED


def test_a_claim_without_runs_says_so():
    frame = runs_frame(grid({"full": {"rte": [70, 71]}, "bitfit": {"rte": [70, 71]}}))
    table = check_claims(frame, MAIN_CLAIMS)
    assert table.loc["Frozen (head only) is far below BitFit", "verdict"] == NOT_RUN
    assert table.loc["BitFit matches Full-FT", "verdict"] != NOT_RUN


def test_missing_method_says_what_to_run():
    frame = runs_frame(grid({"full": {"rte": [70, 71]}}))
    with pytest.raises(BitFitError, match="no finished runs of 'bitfit'"):
        difference(frame, "bitfit", "full")
    with pytest.raises(BitFitError, match="unknown kind of claim"):
        verdict("better", -1.0, 1.0)
