"""Power: the probability of each verdict by the declared rule, and the seeds a claim needs (issue #32)."""

import pandas as pd
import pytest
from synthetic_records import record
from test_claims import grid

from bitfit_edu.evidence import power
from bitfit_edu.evidence.claims import ABLATION_CLAIMS, FAILS, HOLDS, MAIN_CLAIMS, UNRESOLVED, check_claims
from bitfit_edu.evidence.tables import runs_frame
from bitfit_edu.experiments import grids
from bitfit_edu.experiments.profiles import get_profile

MATCHES, WORSE = MAIN_CLAIMS[0], MAIN_CLAIMS[1]  # 'similar' (margin 1.0) and 'worse'


def test_probabilities_are_shares_of_the_three_verdicts():
    found = power.verdict_probabilities(MATCHES, 0.0, 0.5, 0.5, seeds=5)
    assert set(found) == {HOLDS, FAILS, UNRESOLVED} and sum(found.values()) == pytest.approx(1.0)


def test_more_seeds_resolve_an_equivalence_more_often():
    few, many = (power.verdict_probabilities(MATCHES, 0.0, 0.8, 0.8, n)[HOLDS] for n in (3, 30))
    assert few < 0.5 < 0.9 < many


def test_a_gap_far_beyond_the_margin_fails_and_a_large_gap_is_resolved_worse():
    assert power.verdict_probabilities(MATCHES, -5.0, 0.5, 0.5, 5)[FAILS] > 0.95
    assert power.verdict_probabilities(WORSE, -5.0, 0.5, 0.5, 5)[HOLDS] > 0.95


def test_seeds_needed_grow_with_the_spread_and_a_worse_claim_at_zero_never_resolves():
    tight, loose = (power.seeds_needed(MATCHES, 0.0, sd, sd) for sd in (0.4, 1.0))
    assert tight is not None and loose is not None and tight < loose
    assert power.verdict_probabilities(MATCHES, 0.0, 0.4, 0.4, tight)[HOLDS] >= power.TARGET
    assert power.seeds_needed(WORSE, 0.0, 0.5, 0.5) is None


def test_plan_table_reads_the_claims_spreads():
    frame = runs_frame(grid({"full": {"rte": [70.0, 70.5, 71.0, 70.2]}, "bitfit": {"rte": [70.3, 70.1, 70.8, 70.6]},
                             "frozen": {"rte": [50.0, 51.0, 52.0, 50.5]}}))
    table = power.plan_table(frame, MAIN_CLAIMS)
    assert list(table.index) == [claim.statement for claim in MAIN_CLAIMS]
    assert (table["verdict now"] == check_claims(frame, MAIN_CLAIMS)["verdict"]).all()
    assert table.loc[MATCHES.statement, "seeds now"] == "4 vs 4"
    assert table.loc[WORSE.statement, "seeds for 80% (gap 0)"] == ""  # a 'worse' claim has no equivalence plan
    spread = power.spreads(frame, MATCHES)
    assert spread["sd_method"] == pytest.approx(pd.Series([70.3, 70.1, 70.8, 70.6]).std())


def test_spreads_follow_the_protocol():
    frame = runs_frame([record(label, seed, dev=(0.6 + seed / 100, 0.5 + (seed % 2) / 10))
                        for label in ("bitfit", "bitfit:b_q+b_m2") for seed in range(4)])
    last, best = (power.spreads(frame, ABLATION_CLAIMS[0], value)["sd_method"] for value in ("last", "best"))
    assert last != best


def test_a_gpu_plan_holds_the_open_claims_only_and_their_runs():
    frame = runs_frame(grid({"full": {"rte": [70.0, 70.5, 71.0, 70.2]}, "bitfit": {"rte": [70.3, 69.1, 71.8, 70.6]},
                             "frozen": {"rte": [50.0, 51.0, 52.0, 50.5]}}))
    verdicts = check_claims(frame, MAIN_CLAIMS)["verdict"]
    assert verdicts[WORSE.statement] == HOLDS and verdicts[MATCHES.statement] == UNRESOLVED
    plan = power.open_claims([(frame, MAIN_CLAIMS)])
    assert [item["claim"] for item in plan] == [MATCHES]  # Frozen's claim is settled: no GPU time for it
    seeds = plan[0]["seeds"]
    assert seeds > 4 and plan[0]["tasks"] == ("rte",) and plan[0]["seeds now"] == (4, 4)
    runs = grids.comparison_configs(get_profile("classroom"), ("bitfit", "full"), ("rte",), range(seeds))
    assert len(runs) == 2 * seeds and {(c.label, c.task) for c in runs} == {("bitfit", "rte"), ("full", "rte")}
    assert [c.seed for c in runs] == sorted(c.seed for c in runs)  # seed by seed: a session cut short keeps pairs
