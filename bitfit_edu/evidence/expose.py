"""Expose or learn? The claims of notebook 09 about where the encoder starts, and their decision rule.

The paper explains BitFit's success by saying that fine-tuning mostly *exposes* what pre-training put into
the network. If so, BitFit should lose much more than Full-FT when there is nothing to expose. Experiment
'expose' (``grids.EXPOSE_TASKS``, ``grids.EXPOSE_STARTS``) trains the main grid's three methods from a
random and from a shuffled encoder (``core.starts``); the pre-trained arm is the main grid itself.

**Declared on 2026-12-06 (issue #43), before any run of experiment 'expose'.** The claims below, their
margins and their rule were committed before those runs, and are not to be moved after seeing them.

- Every value is a run's dev score at its **last epoch** (``claims.PRIMARY_PROTOCOL``), x100.
- "BitFit's gap to Full-FT widens" compares two gaps. The gap of a start is BitFit's mean score minus
  Full-FT's, over seeds. The claim's number is gap(start) minus gap(pre-trained), with a Welch t-interval
  over the four groups of seeds (Welch-Satterthwaite degrees of freedom). It **holds** when the whole 90%
  interval is below zero, **does not hold** when it is wholly above zero, and is **not resolved** otherwise:
  a one-sided test at 5%, as for every claim of the course (``claims.CONFIDENCE``).
- "BitFit on a random encoder stays near chance": chance is 0 for every metric of these tasks (Matthews
  correlation for CoLA, Pearson and Spearman correlation for STS-B: a model that knows nothing scores 0).
  The claim's number is BitFit's mean score over seeds, with its t-interval. It **holds** when the whole
  90% interval lies below ``NEAR_CHANCE`` points, does not hold when it lies wholly above, and is not
  resolved otherwise.
- The toy vision transformer (``experiments.vision``) has one claim of its own, ``VISION_CLAIMS``, judged the
  same way on its test accuracy (x100) in place of a dev score; declared with the others, before its runs.
- Each claim is judged on the mean of the two tasks and on each task alone. The per-task verdicts were
  declared too; a *contrast between* the tasks (is the close task hurt less?) was not, and the notebook
  calls it exploratory.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from ..core.starts import DISPLAY_NAMES, PRETRAINED
from ..data import glue
from .claims import CONFIDENCE, FAILS, HOLDS, NOT_RUN, PRIMARY_PROTOCOL, UNRESOLVED, signed

NEAR_CHANCE = 10.0  # points above chance (0) that still count as "near chance": a tenth of the scale
GAP_WIDENS, NEAR = "gap widens", "near chance"


@dataclass(frozen=True)
class StartClaim:
    """A claim about runs from ``start`` (``core.starts``), of ``kind`` ``GAP_WIDENS`` or ``NEAR``."""

    statement: str
    kind: str
    start: str


EXPOSE_CLAIMS = (
    StartClaim("Without pre-training (random encoder), BitFit's gap to Full-FT widens", GAP_WIDENS, "random"),
    StartClaim("With shuffled weights, BitFit's gap to Full-FT widens", GAP_WIDENS, "shuffled"),
    StartClaim("BitFit on a random encoder stays near chance", NEAR, "random"),
)
VISION_CLAIMS = (
    StartClaim("On the toy ViT, without pre-training (random ViT), BitFit's gap to Full-FT widens", GAP_WIDENS,
               "random"),
)


def seed_scores(frame: pd.DataFrame, method: str, start: str, tasks: list[str],
                value: str = PRIMARY_PROTOCOL) -> pd.Series:
    """The mean over ``tasks`` of ``value`` per seed, for ``method`` from ``start``, seeds that have every task."""
    runs = frame[(frame["method"] == method) & (frame["start"] == start) & frame["task"].isin(tasks)]
    per_seed = runs.pivot_table(index="seed", columns="task", values=value).reindex(columns=tasks)
    return per_seed.dropna().mean(axis=1)


def welch_combination(groups: list[tuple[float, pd.Series]]) -> dict:
    """sum(weight x mean(values)) over ``groups`` with its 90% Welch t-interval (Welch-Satterthwaite degrees of
    freedom); NaN bounds when a group has fewer than two values."""
    estimate = float(sum(weight * values.mean() for weight, values in groups))
    found = {"estimate": estimate, "low90": np.nan, "high90": np.nan, "seeds": [len(v) for _, v in groups]}
    if any(len(values) < 2 for _, values in groups):
        return found
    parts = [weight**2 * values.var() / len(values) for weight, values in groups]
    se = float(np.sqrt(sum(parts)))
    if se == 0:
        return {**found, "low90": estimate, "high90": estimate}
    df = sum(parts) ** 2 / sum(part**2 / (len(values) - 1) for part, (_, values) in zip(parts, groups, strict=True))
    half = stats.t.ppf(0.5 + CONFIDENCE / 2, df) * se
    return {**found, "low90": estimate - half, "high90": estimate + half}


def gap_change(frame: pd.DataFrame, start: str, tasks: list[str], value: str = PRIMARY_PROTOCOL) -> dict:
    """(BitFit - Full-FT from ``start``) - (BitFit - Full-FT pre-trained), x100 points, with its 90% interval."""
    return welch_combination([(+1, seed_scores(frame, "bitfit", start, tasks, value)),
                              (-1, seed_scores(frame, "full", start, tasks, value)),
                              (-1, seed_scores(frame, "bitfit", PRETRAINED, tasks, value)),
                              (+1, seed_scores(frame, "full", PRETRAINED, tasks, value))])


def claim_verdict(claim: StartClaim, low: float, high: float) -> str:
    """The declared rule (module docstring) applied to a claim's 90% interval ``low``..``high``."""
    if np.isnan(low) or np.isnan(high):
        return UNRESOLVED
    bound = 0.0 if claim.kind == GAP_WIDENS else NEAR_CHANCE
    return HOLDS if high < bound else FAILS if low > bound else UNRESOLVED


def check_expose_claims(frame: pd.DataFrame, tasks: list[str],
                        claims: tuple[StartClaim, ...] = EXPOSE_CLAIMS) -> pd.DataFrame:
    """One row per claim and scope (all ``tasks`` together, then each task alone when there are several):
    its value (for "gap widens", the change of BitFit's gap to Full-FT; for "near chance", BitFit's score),
    the value's 90% interval, the seeds behind it and the verdict under the declared rule."""
    rows = []
    scopes = [[*tasks], *([task] for task in tasks)] if len(tasks) > 1 else [[*tasks]]
    for claim in claims:
        for scope in scopes:
            row = {"claim": claim.statement, "tasks": " + ".join(scope)}
            if claim.kind == GAP_WIDENS:  # the value: the change of BitFit's gap to Full-FT
                found = gap_change(frame, claim.start, scope)
            else:  # the value: BitFit's score (chance: 0)
                found = welch_combination([(+1, seed_scores(frame, "bitfit", claim.start, scope))])
            if 0 in found["seeds"]:  # a method without a finished run on every task of this scope
                rows.append({**row, "seeds": " / ".join(map(str, found["seeds"])), "verdict": NOT_RUN})
                continue
            rows.append({**row, "value": "n/a" if np.isnan(found["estimate"]) else signed(found["estimate"]),
                         "90% interval": "n/a" if np.isnan(found["low90"])
                         else f"[{signed(found['low90'])}, {signed(found['high90'])}]",
                         "seeds": " / ".join(map(str, found["seeds"])),
                         "verdict": claim_verdict(claim, found["low90"], found["high90"])})
    return pd.DataFrame(rows).fillna("")


def start_means(frame: pd.DataFrame, value: str = PRIMARY_PROTOCOL) -> pd.DataFrame:
    """Mean ``value`` over seeds per task and method (rows) and start (columns, readable names)."""
    table = frame.pivot_table(index=["task", "method"], columns="start", values=value, aggfunc="mean")
    ordered = [start for start in DISPLAY_NAMES if start in table.columns]
    return table[ordered].rename(columns=DISPLAY_NAMES)


# --- the measurements beside the runs (experiments.measurements, experiments.vision) ------------------------

def probe_frame(measured: list[dict]) -> pd.DataFrame:
    """One row per task, start and layer: the probe's dev score (x100), from ``measurements.load(..., 'probes')``."""
    rows = [{"task": m["task"], "start": DISPLAY_NAMES[m["start"]], "layer": layer["layer"], "score": layer["score"]}
            for m in measured for layer in m["layers"]]
    order = {name: index for index, name in enumerate(DISPLAY_NAMES.values())}
    return pd.DataFrame(rows).sort_values(["task", "start", "layer"], key=lambda c: c.map(order) if c.name == "start"
                                          else c, kind="stable").reset_index(drop=True)


def cka_frame(measured: list[dict]) -> pd.DataFrame:
    """One row per task, method and layer: linear CKA before against after, from ``measurements.load(..., 'cka')``."""
    return pd.DataFrame([{"task": m["task"], "method": m["method"], "layer": layer, "cka": value}
                         for m in measured for layer, value in enumerate(m["cka"])])


def readable_share(probes: pd.DataFrame, means: pd.DataFrame, task: str) -> dict:
    """How much of BitFit's gain over Frozen a linear probe already reads from the frozen pre-trained encoder:
    (best probe - Frozen) / (BitFit - Frozen), with the best probe's layer and score. ``means``: mean
    last-epoch score per (task, method) of the pre-trained runs."""
    pretrained = probes[(probes["task"] == task) & (probes["start"] == DISPLAY_NAMES[PRETRAINED])]
    best = pretrained.loc[pretrained["score"].idxmax()]
    frozen, bitfit = means.loc[(task, "frozen")], means.loc[(task, "bitfit")]
    return {"layer": int(best["layer"]), "probe": float(best["score"]), "frozen": float(frozen),
            "bitfit": float(bitfit), "share": float((best["score"] - frozen) / (bitfit - frozen))}


VISION_TASK = "digits 5-9"


def vision_frame(results: dict) -> pd.DataFrame:
    """The toy ViT's fine-tuning runs (``vision.run_all``) as the claims read runs: task, method, start, seed,
    and the test accuracy (x100) as 'last', with the training accuracy's gap beside it."""
    return pd.DataFrame([{"task": VISION_TASK, "method": run["method"], "start": run["start"], "seed": run["seed"],
                          "last": run["test_accuracy"], "last_gap": run["train_accuracy"] - run["test_accuracy"],
                          "trainable": run["trainable"]} for run in results["runs"]])


# --- the answer, in words --------------------------------------------------------------------------------
# How notebook 09 words the probes and CKA. These thresholds were chosen when the notebook was written, after
# the probes and CKA had run: they are reading aids for exploratory measurements, not declared claims.
MOSTLY_READABLE = 0.75  # a probe that covers this share of BitFit's gain over Frozen: the gain was already there
LITTLE_READABLE = 0.5  # below this share, BitFit found something no single frozen layer offered linearly
BARELY_CHANGED = 0.9  # CKA at or above this, before against after: the layer barely changed
MUCH_CHANGED = 0.5  # CKA below this: the layer changed a lot


def task_answer(task: str, gap: pd.Series, share: dict, from_random: dict[str, float],
                cka_last: dict[str, float] | None) -> str:
    """One task's answer in a few sentences: the declared ablation verdict (``gap``: a row of
    ``check_expose_claims``) with both methods' scores from a random start (``from_random``), the probe's
    share of BitFit's gain (``share``: a row of ``readable_share``), and the last layer's CKA per method."""
    scores = f"from a random encoder Full-FT scores {from_random['full']:.1f} and BitFit {from_random['bitfit']:.1f}"
    if gap["verdict"] == HOLDS:
        ablation = (f"without pre-training BitFit falls {gap['value'].lstrip('-')} points further behind Full-FT "
                    f"(90% interval {gap['90% interval']}; {scores}): its score rests on what pre-training built")
    elif gap["verdict"] == FAILS:
        ablation = (f"without pre-training BitFit does not fall further behind Full-FT (change of its gap "
                    f"{gap['value']}, 90% interval {gap['90% interval']}): {scores}, so Full-FT's lead, too, "
                    "came from pre-training")
    else:
        ablation = f"the ablation is {gap['verdict']} (change of BitFit's gap {gap['value']}; {scores})"
    if share["share"] > 1:
        probe = (f"a linear probe of one frozen layer (layer {share['layer']:.0f}) reads more than BitFit reaches "
                 f"({share['probe']:.1f} against {share['bitfit']:.1f}): the knowledge is there, and BitFit's "
                 "read-out of the last layer does not get all of it")
    elif share["share"] >= MOSTLY_READABLE:
        probe = (f"a linear probe of the frozen model already reads {100 * share['share']:.0f}% of BitFit's gain "
                 "over Frozen")
    elif share["share"] < LITTLE_READABLE:
        probe = (f"a linear probe of the frozen model reads only {100 * share['share']:.0f}% of BitFit's gain over "
                 "Frozen, so BitFit found something no single frozen layer offered")
    else:
        probe = f"a linear probe of the frozen model reads {100 * share['share']:.0f}% of BitFit's gain over Frozen"
    text = f"**{glue.get_task(task).folder}**: {ablation}. Also, {probe}."
    if cka_last:
        bitfit, full = cka_last["bitfit"], cka_last["full"]
        level = "barely changes" if bitfit >= BARELY_CHANGED else "changes a lot" if bitfit < MUCH_CHANGED \
            else "changes clearly"
        text += f" Under BitFit the last layer's representation {level} (CKA {bitfit:.3f}; under Full-FT: {full:.3f})."
    return text


def grid_cost(frame: pd.DataFrame, configs: list) -> str:
    """The core-hours of the finished runs of experiment 'expose' (not the pre-trained arm, which is the main
    grid's), and of all of them at each (task, method)'s mean cost so far."""
    new = frame[frame["start"] != PRETRAINED]
    if new.empty:
        return "no run of experiment 'expose' has finished yet"
    per_run = new.groupby(["task", "method"])["core_seconds"].mean()
    planned = [(c.task, c.method) for c in configs if c.start is not None]
    estimate = sum(per_run.get(key, per_run.mean()) for key in planned) / 3600
    return (f"{len(new)} of {len(planned)} runs finished, {new['core_seconds'].sum() / 3600:.1f} CPU core-hours; "
            f"all {len(planned)} at the same cost per run: about {estimate:.1f} core-hours")


def headline(verdicts: pd.DataFrame, shares: pd.DataFrame, cka_last: dict[str, dict[str, float]]) -> str:
    """Notebook 09's answer in one paragraph, from the declared verdicts on both tasks together
    (``check_expose_claims``), each task's probe share (``readable_share`` rows) and each task's last-layer
    CKA per method (tasks without both methods measured are left out)."""
    both = verdicts[verdicts["tasks"] == verdicts["tasks"].iloc[0]].set_index("claim")
    near = both.loc[EXPOSE_CLAIMS[2].statement, "verdict"]
    widens = both.loc[EXPOSE_CLAIMS[0].statement, "verdict"]
    sentences = []
    if near == HOLDS:
        sentences.append("From a random encoder BitFit stays near chance: what it reaches depends on what "
                         "pre-training built.")
    elif near == FAILS:
        sentences.append("From a random encoder BitFit still learns well above chance: not all it reaches "
                         "comes from pre-training.")
    sentences.append(f"Over both tasks, \"BitFit's gap to Full-FT widens without pre-training\" is **{widens}**; "
                     "the task lines below say how each task contributes.")
    readable = shares["share"]
    if (readable >= MOSTLY_READABLE).all():
        sentences.append("On every task a linear probe of the frozen, pre-trained network already reads most of "
                         "BitFit's gain over Frozen, or more than BitFit reaches.")
    elif (readable < LITTLE_READABLE).all():
        sentences.append("On every task a linear probe of the frozen network reads little of BitFit's gain.")
    changed = [glue.get_task(task).folder for task, cka in cka_last.items() if cka["bitfit"] < MUCH_CHANGED]
    exposes = near == HOLDS and (readable >= MOSTLY_READABLE).all()
    if exposes:
        answer = "So, on this model, BitFit mostly **exposes** what pre-training learned"
        answer += (f", though on {' and '.join(changed)} exposing it re-shapes the upper layers, not only "
                   "re-weights them." if changed else ".")
    else:
        answer = ("So, on this model, the evidence does not show BitFit only exposing: part of what it reaches "
                  "it builds.")
    return " ".join([*sentences, answer])
