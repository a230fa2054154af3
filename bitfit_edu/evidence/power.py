"""Power: how many seeds a claim needs before the decision rule can settle it.

A verdict reads the 90% Welch interval of a gap over seeds (``claims``). How often it comes out "holds",
"does not hold" or "not resolved" depends on three things: the true gap, the spread of each method's
per-seed GLUE average, and the number of seeds n. Here the spreads are taken from the committed runs, a
true gap is assumed (the one observed, or zero), and each of ``SIMULATIONS`` imagined grids of n seeds per
method is judged by exactly the rule the notebooks use (``claims.verdict``). The share of each verdict is
its probability at that n.

It is a planning tool, not a verdict: the observed spreads are themselves estimates from a few seeds.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
from scipy import stats

from ..experiments import grids
from ..experiments.profiles import Profile
from ..experiments.results import ResultStore
from . import claims, tables
from .claims import CONFIDENCE, FAILS, HOLDS, PRIMARY_PROTOCOL, UNRESOLVED, Claim

SIMULATIONS = 2000
TARGET = 0.8  # the probability of a resolved verdict a plan asks for
MOST_SEEDS = 200  # plans beyond this many seeds per method are reported as "more than"


def spreads(frame: pd.DataFrame, claim: Claim, value: str = PRIMARY_PROTOCOL) -> dict:
    """A claim's observed gap and the standard deviation of each method's per-seed average (x100 points),
    over the tasks and seeds the claim is judged on (``claims.difference``)."""
    found = claims.difference(frame, claim.method, claim.baseline, value)
    ours, theirs = (claims.seed_averages(frame, name, found["tasks"], value) for name in (claim.method, claim.baseline))
    return {"gap": found["difference"], "sd_method": float(ours.std()), "sd_baseline": float(theirs.std()),
            "seeds": found["seeds"], "tasks": found["tasks"]}


def verdict_probabilities(claim: Claim, gap: float, sd_method: float, sd_baseline: float, seeds: int,
                          simulations: int = SIMULATIONS, seed: int = 0) -> dict[str, float]:
    """The probability of each verdict for ``claim`` with ``seeds`` seeds per method, if the true gap is
    ``gap`` and the per-seed averages spread as given: the share of simulated grids judged so."""
    rng = np.random.default_rng(seed)
    ours = rng.normal(gap, sd_method, (simulations, seeds))
    theirs = rng.normal(0.0, sd_baseline, (simulations, seeds))
    low, high = stats.ttest_ind(ours, theirs, axis=1, equal_var=False).confidence_interval(CONFIDENCE)
    verdicts = [claims.verdict(claim.kind, lo, hi, claim.margin) for lo, hi in zip(low, high, strict=True)]
    return {outcome: verdicts.count(outcome) / simulations for outcome in (HOLDS, FAILS, UNRESOLVED)}


def probability_curve(claim: Claim, gap: float, sd_method: float, sd_baseline: float,
                      seeds: Iterable[int]) -> pd.DataFrame:
    """``verdict_probabilities`` for each number of seeds (rows), one column per verdict."""
    rows = {n: verdict_probabilities(claim, gap, sd_method, sd_baseline, n) for n in seeds}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "seeds per method"
    return table


def seeds_needed(claim: Claim, gap: float, sd_method: float, sd_baseline: float,
                 target: float = TARGET) -> int | None:
    """The fewest seeds per method that resolve ``claim`` (holds or does not hold) with probability
    ``target``, if the true gap is ``gap``; None when even ``MOST_SEEDS`` are not enough (a 'worse' claim at
    a true gap of zero never resolves, by design). Found by bisection: more seeds never resolve less often,
    up to the simulation's noise."""
    def resolves(n: int) -> bool:
        found = verdict_probabilities(claim, gap, sd_method, sd_baseline, n)
        return found[HOLDS] + found[FAILS] >= target

    if not resolves(MOST_SEEDS):
        return None
    fewest, most = 2, MOST_SEEDS
    while fewest < most:
        middle = (fewest + most) // 2
        fewest, most = (fewest, middle) if resolves(middle) else (middle + 1, most)
    return fewest


def plan_table(frame: pd.DataFrame, claim_list: tuple[Claim, ...], value: str = PRIMARY_PROTOCOL) -> pd.DataFrame:
    """One row per claim: today's verdict and seeds, the observed gap and spreads, the seeds per method that
    would resolve it with probability ``TARGET`` at the observed gap and (for a 'similar' claim) at a true
    gap of zero, and the runs that many seeds take (both methods, every task of the claim)."""
    verdicts = claims.check_claims(frame, claim_list, value)
    rows = []
    for claim in claim_list:
        found = spreads(frame, claim, value)
        at_gap, at_zero, planned = _plans(claim, found)
        rows.append({
            "claim": claim.statement, "verdict now": verdicts.loc[claim.statement, "verdict"],
            "seeds now": "{} vs {}".format(*found["seeds"]), "gap": claims.signed(found["gap"]),
            "sd per seed": f"{found['sd_method']:.2f} / {found['sd_baseline']:.2f}",
            "seeds for 80% (observed gap)": _seeds(at_gap),
            "seeds for 80% (gap 0)": _seeds(at_zero) if claim.kind == "similar" else "",
            "runs for that": "" if planned is None else 2 * planned * len(found["tasks"]),
        })
    return pd.DataFrame(rows).set_index("claim")


def _plans(claim: Claim, found: dict) -> tuple[int | None, int | None, int | None]:
    """The seeds per method that resolve ``claim`` with probability ``TARGET`` at the observed gap, at a gap of
    zero (a 'similar' claim only), and the plan: the larger of the two that can be reached."""
    at_gap = seeds_needed(claim, found["gap"], found["sd_method"], found["sd_baseline"])
    at_zero = seeds_needed(claim, 0.0, found["sd_method"], found["sd_baseline"]) if claim.kind == "similar" else None
    return at_gap, at_zero, max((n for n in (at_gap, at_zero) if n is not None), default=None)


def open_claims(judged: Iterable[tuple[pd.DataFrame, tuple[Claim, ...]]],
                value: str = PRIMARY_PROTOCOL) -> list[dict]:
    """The claims no verdict has settled yet, each judged on its own frame, with the seeds per method (from 0)
    that would settle it with probability ``TARGET`` (``plan_table``'s plan; None past ``MOST_SEEDS``) and
    the tasks it is judged on: what a lent GPU should run, and nothing already settled."""
    found = []
    for frame, claim_list in judged:
        verdicts = claims.check_claims(frame, claim_list, value)
        for claim in claim_list:
            if verdicts.loc[claim.statement, "verdict"] in (HOLDS, FAILS):
                continue
            observed = spreads(frame, claim, value)
            found.append({"claim": claim, "seeds": _plans(claim, observed)[2], "tasks": tuple(observed["tasks"]),
                          "seeds now": observed["seeds"]})
    return found


def committed_judgements(profile: Profile) -> list[tuple[pd.DataFrame, tuple[Claim, ...]]]:
    """Each set of claims with the committed runs it is judged on, as notebooks 03 (main grid), 04 (ablation,
    with the runs that settle it) and 08 (LoRA, IA3, BEFT beside the main grid's first seeds) read them."""
    store = ResultStore.committed(profile.name)
    peft = (grids.experiment_configs(profile, "main", seeds=profile.seeds[:grids.PEFT_SEEDS])
            + grids.experiment_configs(profile, "peft"))
    judged = ((grids.experiment_configs(profile, "main"), claims.MAIN_CLAIMS),
              (grids.ablation_comparison(profile), claims.ABLATION_CLAIMS), (peft, claims.PEFT_CLAIMS))
    return [(tables.runs_frame(store.load(configs)[0]), claim_list) for configs, claim_list in judged]


def _seeds(n: int | None) -> str:
    return f"more than {MOST_SEEDS}" if n is None else str(n)
