"""Claims checked from runs: the verdict follows the interval over seeds, never the point estimate alone."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from synthetic_records import record

from bitfit_edu.errors import BitFitError
from bitfit_edu.evidence.claims import (
    ABLATION_CLAIMS,
    CONFIDENCE,
    FAILS,
    HOLDS,
    MAIN_CLAIMS,
    NOT_RUN,
    PRIMARY_PROTOCOL,
    PROTOCOLS,
    UNRESOLVED,
    check_claims,
    difference,
    equivalence_p,
    protocol_table,
    signed,
    size_claim_verdict,
    size_curve_differences,
    verdict,
    welch_interval,
)
from bitfit_edu.evidence.tables import runs_frame
from bitfit_edu.experiments.runs import RunRecord


def grid(scores: dict[str, dict[str, list[float]]], train_size: int = 10) -> list[RunRecord]:
    """Run records: method -> task -> one dev score (x100) per seed."""
    return [record(method, seed, dev=(s / 100,), task=task, train_size=train_size)
            for method, tasks in scores.items() for task, seeds in tasks.items() for seed, s in enumerate(seeds)]


def test_difference_averages_tasks_per_seed_then_compares():
    frame = runs_frame(grid({"bitfit": {"rte": [60, 62, 64], "mrpc": [80, 82, 84]},
                             "full": {"rte": [58, 60, 62], "mrpc": [80, 82, 84], "cola": [1, 1, 1]}}))
    found = difference(frame, "bitfit", "full")
    assert found["tasks"] == ["mrpc", "rte"]  # only the tasks both methods ran
    assert found["difference"] == pytest.approx(1.0) and found["seeds"] == (3, 3)
    assert found["low"] < 1.0 < found["high"]


def test_a_partly_run_task_does_not_hold_back_the_finished_ones():
    frame = runs_frame(grid({"bitfit": {"rte": [60, 62, 64], "mrpc": [80]},
                             "full": {"rte": [58, 60, 62], "mrpc": [80, 82, 84]}}))
    found = difference(frame, "bitfit", "full")
    assert found["tasks"] == ["rte"] and found["seeds"] == (3, 3)  # not mrpc and rte over seed 0 alone
    assert found["difference"] == pytest.approx(2.0) and found["low"] < 2.0 < found["high"]


def test_a_seed_on_some_tasks_does_not_drop_the_others():
    frame = runs_frame(grid({"bitfit": {"rte": [60, 62, 64, 66], "mrpc": [80, 82, 84, 86], "cola": [10, 12, 14, 16]},
                             "full": {"rte": [58, 60, 62, 64], "mrpc": [80, 82, 84], "cola": [10, 12, 14]}}))
    found = difference(frame, "bitfit", "full")
    assert found["tasks"] == ["cola", "mrpc", "rte"] and found["seeds"] == (4, 3)  # full's seed 3: rte alone


@pytest.mark.parametrize("kind,low,high,expected", [
    ("similar", -1.0, 1.2, HOLDS),  # the 90% interval within the margin
    ("similar", -1.0, 1.6, UNRESOLVED),
    ("similar", -3.0, 1.0, UNRESOLVED),
    ("similar", 1.6, 5.0, FAILS),  # the whole 90% interval beyond the margin
    ("similar", -5.0, -1.6, FAILS),
    ("worse", -9.0, -0.5, HOLDS),
    ("worse", -2.0, 1.0, UNRESOLVED),
    ("worse", 0.5, 3.0, FAILS),
    ("worse", np.nan, np.nan, UNRESOLVED),
    ("not worse", -1.0, 9.0, HOLDS),  # one-sided: far ahead still holds (a 'similar' claim would fail)
    ("not worse", 1.6, 5.0, HOLDS),
    ("not worse", -2.0, 1.0, UNRESOLVED),
    ("not worse", -5.0, -1.6, FAILS),  # the whole interval below minus the margin
])
def test_verdict_reads_the_interval(kind, low, high, expected):
    assert verdict(kind, low, high, margin=1.5) == expected


def test_one_rule_both_ways():
    """The declared rule reads the 90% interval for every outcome: a claim just beyond its margin fails at
    the same strength of evidence as a claim just inside it holds."""
    assert CONFIDENCE == 0.90 and PRIMARY_PROTOCOL == "last"
    assert verdict("similar", -0.5, 1.49, margin=1.5) == HOLDS
    assert verdict("similar", 1.51, 2.5, margin=1.5) == FAILS


def test_tost_agrees_with_the_90_percent_interval():
    ours, theirs = pd.Series([70.0, 70.5, 71.0, 70.2, 70.7]), pd.Series([70.4, 70.1, 70.9, 70.6, 70.3])
    found = welch_interval(ours, theirs)
    assert found["low"] < found["low90"] < found["difference"] < found["high90"] < found["high"]
    for margin in (0.2, 0.5, 1.0, 2.0):
        inside = -margin < found["low90"] and found["high90"] < margin
        assert (equivalence_p(found, margin) < 0.05) == inside
    assert found["p"] == pytest.approx(stats.ttest_ind(ours, theirs, equal_var=False).pvalue)


@pytest.mark.parametrize("points,text", [(1.254, "+1.25"), (-0.041, "-0.04"), (-0.003, "-3e-03"), (0.0, "+0.00")])
def test_signed_gaps_never_hide_their_sign(points, text):
    assert signed(points) == text


@pytest.mark.filterwarnings("ignore:Precision loss occurred")  # some made-up seeds agree exactly
def test_protocol_table_says_which_verdicts_depend_on_the_selection():
    frame = runs_frame([record(method, seed, dev=curve) for seed in range(3) for method, curve in (
        ("full", (0.70, 0.71, 0.70 + seed / 100, 0.69, 0.70 + seed / 200)),
        ("bitfit", (0.50, 0.55, 0.60, 0.65, 0.66, 0.67, 0.68, 0.69, 0.70 + seed / 100, 0.60 + seed / 100)),
        ("frozen", (0.5, 0.5, 0.5, 0.5, 0.5 + seed / 100)))])
    table = protocol_table(frame, MAIN_CLAIMS)
    assert list(table.columns) == [*PROTOCOLS.values(), "depends on the protocol"]
    assert table.loc["BitFit matches Full-FT", "depends on the protocol"] == "yes"  # its last epoch falls
    assert table.loc["BitFit matches Full-FT", "last epoch (declared)"].endswith(FAILS)


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


def size_grid(scores: dict[int, dict[str, list[float]]]) -> pd.DataFrame:
    """A size-curve frame: training size -> method -> one best dev score (x100) per seed."""
    return runs_frame([r for size, methods in scores.items()
                       for r in grid({method: {"sst2": seeds} for method, seeds in methods.items()}, size)])


def test_size_curve_differences_say_who_is_ahead_per_size():
    frame = size_grid({100: {"bitfit": [60, 61, 62], "full": [50, 51, 52]},
                       1000: {"bitfit": [70, 75, 80], "full": [72, 74, 78]},
                       10000: {"bitfit": [80, 81, 82], "full": [85, 86, 87]}})
    table = size_curve_differences(frame)
    assert list(table.index) == [100, 1000, 10000]
    assert table.loc[100, "difference"] == pytest.approx(10.0) and table.loc[100, "seeds"] == "3 vs 3"
    assert list(table["ahead"]) == ["bitfit", "neither (not resolved)", "full"]
    assert size_claim_verdict(table) == HOLDS


@pytest.mark.parametrize("bitfit_small,bitfit_large,expected", [
    ([40, 41, 42], [80, 81, 82], FAILS),        # Full-FT ahead on little data
    ([50, 55, 60], [80, 81, 82], UNRESOLVED),   # the small end straddles zero
    ([60, 61, 62], [90, 91, 92], FAILS),        # BitFit ahead on lots of data
])
def test_size_claim_verdict_reads_both_ends(bitfit_small, bitfit_large, expected):
    frame = size_grid({100: {"bitfit": bitfit_small, "full": [50, 51, 52]},
                       10000: {"bitfit": bitfit_large, "full": [85, 86, 87]}})
    assert size_claim_verdict(size_curve_differences(frame)) == expected


def test_size_curve_without_runs_of_a_method_says_what_to_run():
    for frame in (size_grid({}), size_grid({100: {"bitfit": [60, 61]}})):
        with pytest.raises(BitFitError, match="no finished runs of .* run its grid first"):
            size_curve_differences(frame)


def test_every_similar_claim_has_a_margin_fixed_from_the_paper():
    similar = [c for c in (*MAIN_CLAIMS, *ABLATION_CLAIMS) if c.kind == "similar"]
    assert {c.statement: c.margin for c in similar} == {"BitFit matches Full-FT": 1.0,
                                                        "b_q + b_m2 come close to all biases": 1.5}
    assert all(c.margin is None for c in (*MAIN_CLAIMS, *ABLATION_CLAIMS) if c.kind == "worse")


def test_the_rule_table_shows_what_the_asymmetric_rule_changed():
    """A gap whose 90% interval lies beyond the margin but whose 95% interval reaches into it: the declared
    rule says 'does not hold', the earlier rule said 'not resolved'."""
    from bitfit_edu.evidence.claims import rule_table

    frame = runs_frame(grid({"full": {"rte": [70.0, 70.6, 71.2, 70.3, 70.9]},
                             "bitfit": {"rte": [68.4, 69.0, 69.6, 68.7, 69.3]}}))
    found = difference(frame, "bitfit", "full")
    assert found["high90"] < -1.0 < found["high"]  # the margin of 'BitFit matches Full-FT' is 1.0
    table = rule_table(frame, MAIN_CLAIMS[:1])
    row = table.loc["BitFit matches Full-FT"]
    assert (row["declared rule (90% both ways)"], row["earlier rule (95% to fail)"]) == (FAILS, UNRESOLVED)
    assert row["rule changes it"] == "yes"


def test_verdict_sentences_name_the_protocol_and_the_verdict():
    from bitfit_edu.evidence.claims import verdict_sentences

    frame = runs_frame(grid({"full": {"rte": [70.0, 70.2, 70.4]}, "bitfit": {"rte": [70.2, 70.4, 70.6]}}))
    text = verdict_sentences(check_claims(frame, MAIN_CLAIMS))
    first, second = text.splitlines()
    assert "last epoch (declared)" in first and f"**{HOLDS}**" in first and "margin ±1.0" in first
    assert first.endswith("Our runs support this claim.")
    assert second.endswith(f"{NOT_RUN}.")


@pytest.mark.filterwarnings("ignore:Precision loss occurred")  # the best epochs agree exactly
def test_size_curve_verdicts_read_the_declared_protocol():
    last_falls = [record(method, seed, dev=(0.6 + seed / 100, 0.5 if method == "bitfit" else 0.6 + seed / 100))
                  for method in ("bitfit", "full") for seed in range(3)]
    table = size_curve_differences(runs_frame(last_falls))
    assert table["ahead"].item() == "full"  # BitFit's last epoch falls; its best does not
    assert size_curve_differences(runs_frame(last_falls), value="best")["ahead"].item() == "neither (not resolved)"
