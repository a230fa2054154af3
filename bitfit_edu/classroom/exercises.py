"""Exercises for the notebooks, with answers that check themselves.

Every notebook ends with a few exercises. A student writes an answer in a cell and runs
``exercises.check(key, answer)``; with ``answer=None`` it prints the question. The right answer is
never typed here: a number comes from the package (a parameter count from a model's config, a score
from the committed runs), and a choice is checked against its letter, with the reason printed either way.
A coding exercise's answer is a function the student writes, tried on inputs no notebook prints (``coding``).
``exercises.answer(key)`` prints the answer and why (the notebooks keep that cell collapsed); for a coding
exercise, a model solution.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass, field

from ..core import adapters, biases, counting
from ..core.biases import BIAS_GROUPS
from ..core.counting import ModelShape, share_of_model
from ..core.methods import display_name
from ..data.locations import results_folder
from ..errors import BitFitError, unknown_choice
from ..evidence import claims, expose, power, tables
from ..experiments import grids
from ..experiments.profiles import get_profile
from ..experiments.results import ResultStore
from .coding import CODING, CodingExercise


@dataclass(frozen=True)
class Exercise:
    """A question with a computed answer: a letter of ``choices``, or a number within ``tolerance``
    (relative) of ``answer()``."""

    question: str
    answer: Callable[[], str | float]
    why: Callable[[], str]
    choices: dict[str, str] = field(default_factory=dict)
    tolerance: float = 0.02
    hint: str = ""  # what a wrong answer gets instead of the answer (``check``); "" for ``GENERIC_HINT``
    code: bool = False  # the student writes code to answer it
    transfer: bool = False  # it asks about another model, task or scale than the notebook shows, or for a prediction
    function: CodingExercise | None = None  # the answer is a function, tried on inputs no notebook prints

    def __post_init__(self):
        if self.function is not None:
            object.__setattr__(self, "code", True)

    def is_right(self, given: str | float | Callable | list) -> bool:
        if self.function is not None:
            return self.failure(given) is None
        expected = self.answer()
        if self.choices:
            return str(given).strip().lower().strip("()") == expected
        try:
            number = float(given.replace(",", "").replace("_", "").strip()) if isinstance(given, str) else float(given)
        except (TypeError, ValueError):
            raise BitFitError(f"this exercise wants a number (8448, 8,448 or 8448.0), not {given!r}") from None
        except OverflowError:  # an integer too large for a float: a number, and not this one
            return False
        return math.isclose(number, expected, rel_tol=self.tolerance)

    def failure(self, given: Callable | list) -> str | None:
        """For a coding exercise: which input the function (or the outputs recorded from it) got wrong, or None."""
        if not callable(given) and not isinstance(given, list):
            raise BitFitError(f"this exercise wants your function ({self.function.signature}), not {given!r}")
        return self.function.first_failure(self.function.outputs(given) if callable(given) else given)


def _bert_base_layer_biases() -> int:
    return int(biases.census_table(counting.meta_encoder("bert-base-cased")).loc["total", 0])


def _bert_base_bias_percent() -> float:
    return float(counting.accounting_table(["bert-base-cased"]).loc["bert-base-cased", "bias %"])


def _classroom_frame(experiment: str):
    profile = get_profile("classroom")
    configs = grids.experiment_configs(profile, experiment)
    if experiment == "ablation":
        configs += grids.experiment_configs(profile, "main", tasks=profile.ablation_tasks)
    if experiment != "main":  # as notebooks 4 and 5 read them: with the seeds that settle open claims
        configs = grids.with_settled(profile, configs)
    records, _ = ResultStore.committed(profile.name).load(configs)
    return tables.runs_frame(records)


def _closer_random_baseline() -> str:
    means, _ = tables.main_table(_classroom_frame("ablation"), value=claims.PRIMARY_PROTOCOL)
    return "b" if means.loc["rand_row_col", "avg"] > means.loc["rand_uniform", "avg"] else "a"


def _random_baselines_why() -> str:
    means, _ = tables.main_table(_classroom_frame("ablation"), value=claims.PRIMARY_PROTOCOL)
    methods = ("rand_uniform", "rand_row_col", "bitfit")
    averages = ", ".join(f"{display_name(m)} {means.loc[m, 'avg']:.1f}" for m in methods)
    return (f"Average last-epoch dev scores of the committed ablation grid: {averages}. One reading: a whole row of a "
            "weight matrix feeds one output unit, so changing it moves that unit for every input, somewhat as "
            "its bias does; entries scattered uniformly change single weights everywhere, each too small to "
            "move a unit. The biases themselves still do best: each shifts a unit directly.")


TERM_PAIRS = {"a": "b_q + b_m2", "b": "b_k + b_v", "c": "b_LN1 + b_LN2", "d": "b_m1 + b_m3", "e": "another pair"}


def _top_two_groups() -> str:
    records, _ = ResultStore.committed("classroom").load(
        [c for c in grids.experiment_configs(get_profile("classroom"), "main") if c.label == "bitfit"])
    change = tables.bias_change_table(records)["avg"].sort_values(ascending=False)
    return " + ".join(change.index[:2])


def _top_two_letter() -> str:
    top = set(_top_two_groups().split(" + "))
    return next((letter for letter, pair in TERM_PAIRS.items() if set(pair.split(" + ")) == top), "e")


def _classroom_bq_bm2_entries() -> int:
    table = biases.census_table(counting.meta_encoder(get_profile("classroom").model))
    return int(table.loc[["b_q", "b_m2"], 0].sum())


SMALL_DATA = {"a": "BitFit", "b": "Full-FT", "c": "neither: the seeds' spread cannot tell them apart"}


def _ahead_at_smallest_size() -> tuple[str, int]:
    """Who is ahead on the size curve's smallest training set: a letter of SMALL_DATA, and that size."""
    frame = _classroom_frame("size_curve")
    differences = claims.size_curve_differences(frame)
    ahead = differences["ahead"].iloc[0]
    return {"bitfit": "a", "full": "b"}.get(ahead, "c"), int(differences.index[0])


def _expose_frame():
    """The committed runs of notebook 09's ablation: experiment 'expose' and the main grid's runs of its tasks."""
    profile = get_profile("classroom")
    configs = grids.expose_configs(profile, ("pretrained", *grids.EXPOSE_STARTS))
    return tables.runs_frame(ResultStore.committed(profile.name).load(configs)[0])


WHO_LOSES_MORE = {"a": "BitFit loses more points than Full-FT", "b": "Full-FT loses more points than BitFit",
                  "c": "neither: the seeds cannot tell the two losses apart"}


def _who_loses_more() -> str:
    table = expose.check_expose_claims(_expose_frame(), list(grids.EXPOSE_TASKS))
    verdict = table.iloc[0]["verdict"]  # the first claim, on both tasks: BitFit's gap widens without pre-training
    return {claims.HOLDS: "a", claims.FAILS: "b"}.get(verdict, "c")


def _who_loses_more_why() -> str:
    means = expose.start_means(_expose_frame())
    lost = (means["pre-trained"] - means["random"]).groupby(level="method").mean()
    row = expose.check_expose_claims(_expose_frame(), list(grids.EXPOSE_TASKS)).iloc[0]
    return (f"From the pre-trained to a random encoder, averaged over {' and '.join(grids.EXPOSE_TASKS)}: BitFit "
            f"loses {lost['bitfit']:.1f} points, Full-FT {lost['full']:.1f}. The change of BitFit's gap to Full-FT is "
            f"{row['value']} points, 90% interval {row['90% interval']}: {row['verdict']}. "
            + {claims.HOLDS: "BitFit needs what pre-training built far more than Full-FT does: Full-FT can still "
                             "learn in its millions of weights, while BitFit's biases have little to expose.",
               claims.FAILS: "Full-FT needs pre-training more than BitFit does here: BitFit's score does not rest "
                             "on pre-training more than Full-FT's."}.get(row["verdict"], "The seeds so far cannot "
                                                                                         "tell the two losses apart."))


def _vit_bitfit_count() -> int:
    from ..core.methods import prepare
    from ..experiments import vision

    return prepare(vision.new_vit(len(vision.TASK_CLASSES), seed=0), "bitfit").trainable_count()


def _vit_bitfit_why() -> str:
    from ..experiments import vision

    model = vision.new_vit(len(vision.TASK_CLASSES), seed=0)
    census = sum(t.numel for t in biases.bias_census(model))
    head = sum(p.numel() for p in biases.head_parameters(model).values())
    return (f"{census:,} biases and a head of {head:,} (5 x 64 weights and 5 biases): {census + head:,} of "
            f"{sum(p.numel() for p in model.parameters()):,} parameters. Selecting by `name.endswith('.bias')` "
            "catches every bias, LayerNorm's too, and nothing else; the head is everything outside `model.vit`.")


def _gap_frame():
    profile = get_profile("classroom")
    records, _ = ResultStore.committed(profile.name).load(grids.experiment_configs(profile, "main"))
    return tables.runs_frame(records).groupby("method")[["last", "last_gap"]].mean()


def _underfitting_why() -> str:
    found = _gap_frame()
    return ("Averaged over the main grid's tasks and seeds, last epoch: "
            + "; ".join(f"{display_name(m)} dev {found.loc[m, 'last']:.1f}, gap {found.loc[m, 'last_gap']:.1f}"
                        for m in ("full", "bitfit", "frozen"))
            + ". Frozen trains only the head: it cannot memorise much, so its gap is small, and it also learns "
              "least. A small gap is what exposing predicts, but it is also what underfitting gives. Read the gap "
              "beside the dev score, never alone.")


def _bert_base_three_labels() -> int:
    accounting = counting.count_parameters("bert-base-cased", num_labels=3)
    return accounting.biases + accounting.head


DULL_REVIEW = "The plot was dull and far too long."


def _sst2_delta_by_hand() -> float:
    """P(positive) for ``DULL_REVIEW`` from the committed SST-2 delta, through the package's own loader."""
    import torch

    from ..core.readout import load_classifier, load_tokenizer
    from ..deploy import deltas

    path = next(results_folder("deployment", "classroom", "deltas").glob("sst2_*.safetensors"))
    manifest, _ = deltas.read_delta(path)
    model = load_classifier(manifest.model, manifest.num_labels, manifest.readout)
    deltas.load_delta(model, path)
    batch = load_tokenizer(manifest.model)([DULL_REVIEW], return_tensors="pt")
    with torch.no_grad():
        probabilities = model.eval()(**batch).logits.softmax(-1)[0]
    return float(probabilities[list(manifest.label_names).index("positive")])


def _layer_biases(model: str) -> int:
    """Bias entries in one layer of ``model``, counted from its configuration (meta device)."""
    return int(biases.census_table(counting.meta_encoder(model)).loc["total", 0])


def _bq_bm2_all_layers(model: str) -> int:
    table = biases.census_table(counting.meta_encoder(model))
    return int(table.loc[["b_q", "b_m2"], "total"].sum())


def _mrpc_floor() -> float:
    return tables.majority_baseline("mrpc")


def _frozen_stsb_why() -> str:
    frame = _classroom_frame("main")
    stsb = frame[(frame["method"] == "frozen") & (frame["task"] == "stsb")]
    at_last = int((stsb["best_epoch"] == stsb["epochs"]).sum())
    return (f"In {at_last} of {len(stsb)} committed Frozen runs on STS-B the best epoch is the last: the dev "
            "score is still climbing when training stops. A regression head starts at zero and, with the encoder "
            "frozen, must learn a 0-5 score from features never trained for it, at the rate chosen for classifiers. "
            "Given more steps it would rise further; the verdict 'Frozen is far below' partly measures this.")


def _seeds_for_equivalence() -> int:
    frame = _classroom_frame("main")
    spread = power.spreads(frame, claims.MAIN_CLAIMS[0])
    return power.seeds_needed(claims.MAIN_CLAIMS[0], 0.0, spread["sd_method"], spread["sd_baseline"])


def _bert_base_encoder_kib() -> float:
    return 4 * counting.count_parameters("bert-base-cased").total / 1024


def _bert_base_delta_kib() -> float:
    accounting = counting.count_parameters("bert-base-cased", num_labels=2)
    return 4 * (accounting.biases + accounting.head) / 1024


def _share(model: str, readout: str, groups: set[str]) -> float:
    """The percentage of ``model``'s encoder that ``groups`` in every layer train, head off (the lab's count)."""
    shape = ModelShape.from_config(model, readout)
    return share_of_model(shape.trainable(groups, (0, shape.depth - 1), head=False), shape.encoder)


def _thousand_tasks_mib() -> float:
    folder = results_folder("deployment", "classroom", "deltas")
    sizes = [path.stat().st_size for path in folder.glob("*.safetensors")]
    if not sizes:
        raise BitFitError("no committed deltas under results/deployment/classroom/deltas")
    return 1000 * sum(sizes) / len(sizes) / 2**20


PASS = ("Pass the function itself (its name, no brackets) in place of None: it is tried on inputs this notebook "
        "does not print.")


def _coding_exercise(key: str, question: str, why: Callable[[], str], hint: str, transfer: bool = False) -> Exercise:
    """An exercise whose answer is a function (``coding.CODING[key]``): its question says how to hand it in."""
    return Exercise(f"{question} {PASS}", answer=CODING[key].expected, why=why, hint=hint, transfer=transfer,
                    function=CODING[key])

EXERCISES: dict[str, Exercise] = {
    "01.b_k": Exercise(
        "Why can b_k not change what a layer computes?",
        answer=lambda: "b",
        choices={"a": "it is initialised to zero", "b": "it shifts all of a query's attention scores by the same "
                 "amount, and softmax ignores a constant shift", "c": "the key projection is frozen by BitFit"},
        why=lambda: "q·(W_k x_j + b_k) = q·W_k x_j + q·b_k: the second term is the same for every key j, and "
                    "softmax(s + c) = softmax(s). So b_k's gradient is exactly zero in exact arithmetic."),
    "01.layer_biases": Exercise(
        "How many bias parameters does one BERT-base encoder layer hold (H = 768)?",
        answer=_bert_base_layer_biases,
        why=lambda: f"Seven biases of width H (b_q, b_k, b_v, b_m1, b_LN1, b_m3, b_LN2) and b_m2 of width 4H: "
                    f"11H = {_bert_base_layer_biases():,}.", tolerance=0.0),
    "01.bert_large_layer": Exercise(
        "Transfer: how many bias entries does one layer of BERT-large (bert-large-cased, H = 1024) hold?",
        answer=lambda: _layer_biases("bert-large-cased"), tolerance=0.0,
        why=lambda: f"{_layer_biases('bert-large-cased'):,}: 11H, as in every BERT layer (3H for b_q, b_k, b_v; H each "
                    "for b_m1, b_LN1, b_m3, b_LN2; 4H for b_m2).",
        hint="Count a layer's biases in units of H: the feed-forward layer is 4H wide. The count does not depend "
             "on the number of layers.",
        transfer=True),
    "01.attention_head": _coding_exercise(
        "01.attention_head",
        "In code: write attention_head(x, W_q, b_q, W_k, b_k, W_v, b_v), one attention head with its biases. The "
        "tokens are the rows of x; each projection is x @ W.T + b; the scores Q K^T are divided by sqrt(d), d the "
        "width of Q, and a softmax runs over each query's row.",
        why=lambda: "softmax(Q K^T / sqrt(d)) V, with Q, K and V affine in x. One of the inputs has a large b_k: "
                    "it adds q·b_k to every score of a query, softmax ignores a shift, and the output is what it "
                    "would be with b_k = 0. Try it: call your function with b_k * 0.",
        hint="Q = x @ W_q.T + b_q (and so for K and V). The scores are Q @ K.T / math.sqrt(Q.shape[-1]); "
             "torch.softmax(scores, dim=-1) weighs the rows of V."),
    "02.bias_percent": Exercise(
        "What percentage of BERT-base's parameters are biases (head excluded)? Give it to two decimals.",
        answer=_bert_base_bias_percent,
        why=lambda: f"{_bert_base_bias_percent():.3f}% from the config's exact counts; the paper prints 0.09% "
                    "(notebook 2 shows which rounding).", tolerance=0.06),
    "02.learning_rate": Exercise(
        "Why does BitFit with Full-FT's learning rate (2e-5) barely learn?",
        answer=lambda: "c",
        choices={"a": "biases have no gradient", "b": "AdamW ignores small parameters",
                 "c": "a bias moves a whole unit's activation by at most the learning rate per step, and biases "
                      "need to move far from their pre-trained values: 10-100x larger steps"},
        why=lambda: "AdamW's step on a parameter is about the learning rate, whatever its gradient's scale. Full-FT "
                    "changes millions of weights a little; BitFit must change a few thousand biases a lot."),
    "02.bert_base_three_labels": Exercise(
        "Transfer, in code: how many parameters does BitFit train in BERT-base (bert-base-cased) with a new head "
        "for a three-class task such as MNLI, head included? Count them from the configuration, as this notebook "
        "does, or by hand.",
        answer=_bert_base_three_labels, tolerance=0.0,
        why=lambda: f"{_bert_base_three_labels():,}: the encoder's biases (11H per layer in 12 layers, plus the "
                    "embeddings' LayerNorm and the pooler: 2H) and a head of 3H weights and 3 biases, H = 768.",
        hint="The biases do not depend on the task; only the head does. A head for k classes is a k x H matrix and "
             "k biases.",
        code=True, transfer=True),
    "03.mrpc_floor": Exercise(
        "What dev score (x100, the mean of accuracy and F1) does always answering 'equivalent' get on MRPC?",
        answer=_mrpc_floor,
        why=lambda: f"{_mrpc_floor():.1f}: most MRPC dev pairs are paraphrases, and F1 of the positive class is high "
                    "when every pair is called one. A classifier has to beat this floor, not 50."),
    "03.seeds_at_zero": Exercise(
        "If BitFit and Full-FT were truly equal, how many seeds per method would 'BitFit matches Full-FT' need "
        "to be resolved with 80% probability, with the spreads of the committed runs (declared protocol)?",
        answer=_seeds_for_equivalence, tolerance=0.2,
        why=lambda: f"{_seeds_for_equivalence()} seeds per method (power.seeds_needed). The 90% interval must fit "
                    "inside ±1.0: its half-width shrinks like one over the square root of the seeds, so halving "
                    "it takes four times as many. Two identical methods are not 'equivalent' until the seeds can "
                    "show it."),
    "03.frozen_stsb": Exercise(
        "Why is Frozen so far below on STS-B?",
        answer=lambda: "a",
        choices={"a": "it is still learning: its dev score rises until the last epoch",
                 "b": "STS-B is a regression task, which a frozen encoder cannot do",
                 "c": "its learning rate made it diverge"},
        why=_frozen_stsb_why),
    "03.welch_interval": _coding_exercise(
        "03.welch_interval",
        "In code: write welch_interval(method_scores, baseline_scores, level=0.90), returning (low, high): the "
        "Welch t-interval of mean(method_scores) - mean(baseline_scores), as the worked example computes it "
        "(scipy.stats.t.ppf gives t).",
        why=lambda: "Each mean's variance is s^2 / n (s^2 the sample variance, ddof=1); se is the square root of "
                    "their sum; Welch's df is (v_a + v_b)^2 / (v_a^2 / (n_a - 1) + v_b^2 / (n_b - 1)); the interval "
                    "is the gap ± t·se, t = stats.t.ppf(0.5 + level / 2, df). It is what the verdicts get from "
                    "scipy.stats.ttest_ind(..., equal_var=False).",
        hint="Use the sample variance (ddof=1), each divided by its own number of seeds. Take t at "
             "0.5 + level / 2 with Welch's degrees of freedom, not n - 1."),
    "04.random_baseline": Exercise(
        "Which random baseline comes closer to all biases?",
        answer=_closer_random_baseline,
        choices={"a": "random entries (uniform)", "b": "random rows/columns"},
        why=_random_baselines_why),
    "04.bq_bm2_entries": Exercise(
        "How many bias entries do b_q and b_m2 hold together in one layer of the classroom model (H = 384)?",
        answer=_classroom_bq_bm2_entries, tolerance=0.0,
        why=lambda: f"b_q has H entries and b_m2 has 4H (the feed-forward layer is 4H wide): 5H = "
                    f"{_classroom_bq_bm2_entries():,}, a little under half of a layer's 11H."),
    "04.bq_bm2_bert_base": Exercise(
        "Transfer: how many entries do b_q and b_m2 hold together in all of BERT-base's layers (bert-base-cased)?",
        answer=lambda: _bq_bm2_all_layers("bert-base-cased"), tolerance=0.0,
        why=lambda: f"{_bq_bm2_all_layers('bert-base-cased'):,}: 5H per layer (H for b_q, 4H for b_m2), H = 768, in "
                    "12 layers.",
        hint="Per layer, b_q is H wide and b_m2 4H. Then multiply by the number of layers.",
        transfer=True),
    "04.trained_entries": _coding_exercise(
        "04.trained_entries",
        "Transfer, in code: write trained_entries(hidden, layers, groups): how many bias entries train when the "
        "terms named in groups (a set such as {'b_q', 'b_m2'}) train in every one of layers layers of a model of "
        "width hidden (no head, nothing outside the layers).",
        transfer=True,
        why=lambda: "Every term of a layer is H wide except b_m2, the feed-forward layer's, which is 4H: layers "
                    "times the sum of the named terms' widths. The tests check it against the bias census of "
                    "BERT-base and BERT-large built from their configs.",
        hint="Which term is 4H wide and not H? Sum the named terms' widths, then multiply by the layers."),
    "05.small_data": Exercise(
        "On the smallest training set of the SST-2 size curve, who is ahead?",
        answer=lambda: _ahead_at_smallest_size()[0], choices=SMALL_DATA,
        why=lambda: f"With {_ahead_at_smallest_size()[1]:,} examples: {SMALL_DATA[_ahead_at_smallest_size()[0]]}, "
                    "read from the 90% interval over seeds of the last-epoch difference (notebook 5's table). The "
                    "paper finds "
                    "BitFit ahead when data is small."),
    "05.mean_abs_change": _coding_exercise(
        "05.mean_abs_change",
        "In code: write mean_abs_change(before, after). Both map bias names to tensors: a run's biases before and "
        "after training. Return a dict from each name to the mean of |after - before| over its entries, as a "
        "float: the measure behind section 1's heatmaps.",
        why=lambda: "(after[name] - before[name]).abs().mean().item() for each name. The training code records "
                    "exactly this for every bias term of every run; the heatmaps average it over tasks and seeds.",
        hint="Loop over the names of before: subtract, .abs(), .mean(), then .item() for a float."),
    "05.top_two": Exercise(
        "Which two bias terms change most in our BitFit runs, mean |Δb| averaged over layers, tasks and seeds?",
        answer=_top_two_letter, choices=TERM_PAIRS,
        why=lambda: f"{_top_two_groups()} moved most (the heatmaps of notebook 5 show them layer by layer). The "
                    "paper's Figure 1 names b_q and b_m2."),
    "06.thousand_tasks": Exercise(
        "How many MiB would 1,000 tasks take as BitFit deltas of the classroom model?",
        answer=_thousand_tasks_mib,
        why=lambda: f"About {_thousand_tasks_mib():.0f} MiB: a thousand times the mean size of the committed deltas. "
                    "A thousand full copies of the model would take a thousand times its checkpoint.", tolerance=0.1),
    "06.delta_by_hand": Exercise(
        f"Apply the SST-2 delta by hand, without the serving code: a fresh classifier "
        f"(readout.load_classifier(manifest.model, manifest.num_labels, manifest.readout)), each of the delta's "
        f"tensors (deltas.read_delta) copied into the parameter of the same name, then the softmax of its logits for "
        f"'{DULL_REVIEW}'. What probability does it give 'positive'?",
        answer=_sst2_delta_by_hand, tolerance=0.05,
        why=lambda: f"{_sst2_delta_by_hand():.3f}. A delta is nothing but tensors with the names of the parameters "
                    "they replace: copying them into a fresh model of the same backbone gives the fine-tuned model.",
        hint="Use model.eval() (dropout off), the tokenizer of manifest.model, and torch.no_grad(). "
             "manifest.label_names says which column is 'positive'.",
        code=True),
    "06.bert_base_delta": Exercise(
        "Transfer: a BitFit delta of BERT-base (bert-base-cased, read through its pooler) for a two-class task "
        "holds its biases and its head in fp32, 4 bytes an entry. How many KiB of tensors is that?",
        answer=_bert_base_delta_kib, tolerance=0.05, transfer=True,
        why=lambda: f"About {_bert_base_delta_kib():.0f} KiB: BERT-base's biases (notebook 2 counts them) and a "
                    "head of 2 x 768 weights and 2 biases, 4 bytes each. The encoder it adapts takes "
                    f"{_bert_base_encoder_kib() / 1024:.0f} MiB in fp32: a task costs about "
                    f"1/{_bert_base_encoder_kib() / _bert_base_delta_kib():,.0f} of a copy.",
        hint="Count BERT-base's biases (notebook 2's table) and a two-class head (2 x H weights and 2 biases), "
             "then 4 bytes each; 1 KiB is 1,024 bytes."),
    "06.shared_head": Exercise(
        "In a mixed-task batch every row shares the weight matrices. Why can rows not share the head as well?",
        answer=lambda: "b",
        choices={"a": "the head is not pre-trained", "b": "each task's head is a different matrix, with as many "
                 "outputs as that task has labels, so each row needs its own task's head"},
        why=lambda: "A bias per row is a gather of one vector. A head per row is a gather of one small matrix "
                    "(labels x width), and the server applies all the rows' heads in one batched product "
                    "(torch.baddbmm). The backbone's weight matrices, the same for every task, are applied once "
                    "to the whole batch."),
    "07.b_m2_share": Exercise(
        "Tick b_m2 alone, in every layer, head off: what percentage of the classroom model trains?",
        answer=lambda: _classroom_share({"b_m2"}), tolerance=0.05,
        why=lambda: f"{_classroom_share({'b_m2'}):.3f}%: b_m2 is 4H wide in each of the classroom model's layers, "
                    "the widest bias of a layer, and still a tiny share of the model."),
    "07.which_more": Exercise(
        "Which trains more: b_m2 alone in every layer, or every bias in the first half of the layers?",
        answer=lambda: "a" if _classroom_share({"b_m2"}) > _classroom_share(BIAS_GROUPS, first_half=True) else "b",
        choices={"a": "b_m2 alone in every layer", "b": "every bias in the first half of the layers"},
        why=lambda: f"b_m2 everywhere: {_classroom_share({'b_m2'}):.3f}%; every bias in the first half: "
                    f"{_classroom_share(BIAS_GROUPS, first_half=True):.3f}% (a layer's biases are 11H, of which b_m2 "
                    "is 4H; the embeddings' LayerNorm, outside the layers, counts too)."),
    "07.b_m2_bert_base": Exercise(
        "Transfer: in BERT-base (bert-base-cased, read through its pooler), what percentage of the encoder does "
        "b_m2 alone in every layer train, head off?",
        answer=lambda: _share("bert-base-cased", "cls_pooler", {"b_m2"}), tolerance=0.05, transfer=True,
        why=lambda: f"{_share('bert-base-cased', 'cls_pooler', {'b_m2'}):.3f}%: 4H entries per layer, H = 768, in "
                    f"12 layers, out of {counting.count_parameters('bert-base-cased').total / 1e6:.0f}M parameters. "
                    f"In the classroom model it is {_classroom_share({'b_m2'}):.3f}%: a wider model has wider "
                    "biases, but its weight matrices grow with the square of the width.",
        hint="b_m2 is 4H wide in each of the 12 layers. Divide by the encoder's parameters: notebook 2 counts "
             "BERT-base's (counting.count_parameters gives them too)."),
    "07.trainable_percent": _coding_exercise(
        "07.trainable_percent",
        "Transfer, in code: write trainable_percent(model): the percentage of a model's parameters, head "
        "included, that will train (those with requires_grad). The lab's shares leave the head out; this one "
        "counts it, and one of the models it is tried on is not a language model.",
        transfer=True,
        why=lambda: "100 times the entries of the parameters with requires_grad over the entries of all of them. "
                    "It works on any PyTorch model, which is why BitFit carries over to a vision transformer "
                    "(notebook 9).",
        hint="Sum p.numel() over model.parameters(), once for all of them and once for those with "
             "p.requires_grad."),
    "08.lora_bert_base": Exercise(
        "LoRA's GLUE setting puts rank r = 8 on W_q and W_v of every layer. How many entries does it train in "
        "BERT-base (12 layers, H = 768), head excluded?",
        answer=lambda: _bert_base_counts()["LoRA matrices"],
        why=lambda: "W_q and W_v each get A (r x H) and B (H x r): 2 x 12 x 8 x (768 + 768) = "
                    f"{_bert_base_counts()['LoRA matrices']:,}, the LoRA paper's '0.3M'. BitFit trains "
                    f"{_bert_base_counts()['biases']:,} biases in the same model.",
        transfer=True),
    "08.no_counterpart": Exercise(
        "BEFT on every linear layer adds a new bias beside each W. Which of BitFit's biases has no BEFT "
        "counterpart?",
        answer=lambda: "c",
        choices={"a": "b_q", "b": "b_m2", "c": "the LayerNorm biases (b_LN1, b_LN2 and the embeddings')",
                 "d": "none: BEFT can reach every bias BitFit trains"},
        why=lambda: "BEFT wraps linear layers only; LayerNorm is not one. In the classroom model BitFit trains "
                    f"{_classroom_biases_beyond_beft():,} more entries than BEFT on every linear layer, exactly the "
                    "LayerNorm biases: 2 per layer and 1 in the embeddings, H = 384 each."),
    "08.lora_entries": _coding_exercise(
        "08.lora_entries",
        "Transfer, in code: write lora_entries(hidden, layers, rank, adapted): how many entries LoRA of rank "
        "rank trains when it adapts adapted of the H x H matrices in each of layers layers (head excluded).",
        transfer=True,
        why=lambda: "Each adapted matrix gets A (r x H) and B (H x r): 2rH entries, times the matrices per "
                    "layer, times the layers. The tests check it against peft's LoRA put into BERT models built "
                    "from their configs.",
        hint="LoRA adds B A beside W, A of shape r x H and B of shape H x r. Count one matrix, then multiply."),
    "09.who_loses_more": Exercise(
        "Take pre-training away: train Full-FT and BitFit from a random encoder instead of the pre-trained one. "
        "Predict before you read section 4: which method loses more points?",
        answer=_who_loses_more, choices=WHO_LOSES_MORE, why=_who_loses_more_why,
        hint="Section 4 prints how many points each method loses, and the verdict on the change of BitFit's gap.",
        transfer=True),
    "09.vit_bitfit": Exercise(
        "Make the toy ViT ready for BitFit: freeze every parameter except the biases and the classifier head, "
        "then count the parameters that still train. What is the count?",
        answer=_vit_bitfit_count, tolerance=0.0, why=_vit_bitfit_why,
        hint="Every bias's name ends in '.bias', LayerNorm's too. The head is `vit.classifier`: count its weight and "
             "its bias. Then sum `p.numel()` over the parameters with `requires_grad`.",
        code=True, transfer=True),
    "09.underfitting": Exercise(
        "Frozen's generalization gap is even smaller than BitFit's. Does a small gap show that a method exposes "
        "what pre-training learned?",
        answer=lambda: "b",
        choices={"a": "yes: a small gap means the method memorised little, so it must have exposed",
                 "b": "no: a method that learns little also has a small gap; read the gap beside the dev score",
                 "c": "yes, but only for BitFit"},
        why=_underfitting_why,
        hint="What does Frozen train, and how does its dev score compare with BitFit's (notebook 05)?"),
}


def _bert_base_counts() -> dict[str, int]:
    """BERT-base's LoRA r=8 entries on W_q and W_v, and its bias entries, counted on the meta device."""
    encoder = counting.meta_encoder("bert-base-cased")
    bias_total = sum(t.numel for t in biases.bias_census(encoder))
    adapters.inject(encoder, "lora_r8")
    lora = sum(p.numel() for name, p in encoder.named_parameters() if ".lora_" in name)
    return {"LoRA matrices": lora, "biases": bias_total}


def _classroom_biases_beyond_beft() -> int:
    profile = get_profile("classroom")
    table = counting.method_parameters(profile.model, profile.readout, ("bitfit", "beft_all"))
    return int(table.loc["BitFit", "existing biases"] - table.loc["BEFT (every linear)", "new biases"])


def _classroom_share(groups, first_half: bool = False) -> float:
    profile = get_profile("classroom")
    shape = ModelShape.from_config(profile.model, profile.readout)
    layers = (0, shape.depth // 2 - 1) if first_half else (0, shape.depth - 1)
    return share_of_model(shape.trainable(set(groups), layers, head=False), shape.encoder)


def _exercise(key: str) -> Exercise:
    if key not in EXERCISES:
        raise unknown_choice("exercise", key, EXERCISES)
    return EXERCISES[key]


GENERIC_HINT = ("Look again at the section above the exercise, then try another answer. The collapsed answer cell "
                "below explains it when you are done.")


def check(key: str, answer: str | float | None = None) -> None:
    """Check a student's answer to exercise ``key``: a right answer gets why it is right, a wrong one a hint,
    never the answer. With no answer, print the question (and its choices)."""
    exercise = _exercise(key)
    if answer is None:
        print(exercise.question)
        for letter, text in exercise.choices.items():
            print(f"  ({letter}) {text}")
        print("Write your function above, then pass it in place of None." if exercise.function else
              "Replace None with your answer and run the cell again.")
        return
    if exercise.function is not None:
        failed = exercise.failure(answer)
        print("Right. " + exercise.why() if failed is None else
              f"Not quite: your function's result differs on {failed}. " + (exercise.hint or GENERIC_HINT))
    elif exercise.is_right(answer):
        print("Right. " + exercise.why())
    else:
        print("Not quite. " + (exercise.hint or GENERIC_HINT))


def answer(key: str) -> None:
    """Print the answer to exercise ``key`` and why."""
    exercise = _exercise(key)
    if exercise.function is not None:
        print(f"A model solution:\n\n{inspect.getsource(exercise.function.solution)}\n{exercise.why()}")
        return
    expected = exercise.answer()
    if exercise.choices:
        shown = f"({expected}) {exercise.choices[expected]}"
    else:
        shown = f"{expected:,}" if isinstance(expected, int) else f"{expected:,.3g}"
    print(f"Answer: {shown}\n{exercise.why()}")


CODING_TARGET = 8  # issue #42: at least eight exercises ask for code
TRANSFER_SHARE = 1 / 3  # and at least a third are transfer questions


def exercise_counts() -> dict[str, int]:
    """How many exercises there are, how many ask for code, and how many are transfer questions."""
    found = EXERCISES.values()
    return {"all": len(found), "code": sum(e.code for e in found), "transfer": sum(e.transfer for e in found)}


def exercise_targets() -> dict[str, bool]:
    """Each of the course's exercise targets, met or not."""
    counts = exercise_counts()
    return {f"at least {CODING_TARGET} coding exercises": counts["code"] >= CODING_TARGET,
            f"at least {TRANSFER_SHARE:.0%} transfer questions": counts["transfer"] >= TRANSFER_SHARE * counts["all"]}
