"""The answer key: each exercise's answer and why, and the coding exercises' model solutions.

The teacher's copy of the package holds this file; a graded class's student build leaves it out, and the grader's
sandbox hides it (``grading``), so a student can neither read the answers nor call them. Without it,
``exercises.check`` records an answer and says that the teacher grades it. No answer is typed in: a number comes
from the package (a parameter count from a model's config, a score from the committed runs), a choice is a letter.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats

from ..core import adapters, biases, counting
from ..core.biases import BIAS_GROUPS
from ..core.counting import ModelShape, share_of_model
from ..core.methods import display_name
from ..data.locations import results_folder
from ..errors import BitFitError
from ..evidence import claims, expose, power, tables
from ..experiments import grids
from ..experiments.profiles import get_profile
from ..experiments.results import ResultStore
from .exercises import DULL_REVIEW, SMALL_DATA, TERM_PAIRS


@dataclass(frozen=True)
class Answer:
    """The key to one exercise: why its answer is right, and the answer itself: a letter or a number
    (``answer``, computed when asked), or for a coding exercise the model solution."""

    why: Callable[[], str]
    answer: Callable[[], str | float] | None = None
    solution: Callable | None = None


# The model solutions, as a student would write them.

def attention_head(x, W_q, b_q, W_k, b_k, W_v, b_v):
    """One attention head with its biases: softmax(Q K^T / sqrt(d)) V for the tokens (rows) of x."""
    Q, K, V = x @ W_q.T + b_q, x @ W_k.T + b_k, x @ W_v.T + b_v
    return torch.softmax(Q @ K.T / math.sqrt(Q.shape[-1]), dim=-1) @ V


def welch_interval(method_scores, baseline_scores, level=0.90):
    """The `level` Welch t-interval of mean(method_scores) - mean(baseline_scores): (low, high)."""
    a, b = np.asarray(method_scores, dtype=float), np.asarray(baseline_scores, dtype=float)
    var_a, var_b = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(var_a + var_b)
    df = (var_a + var_b) ** 2 / (var_a ** 2 / (len(a) - 1) + var_b ** 2 / (len(b) - 1))
    t = stats.t.ppf(0.5 + level / 2, df)
    gap = a.mean() - b.mean()
    return gap - t * se, gap + t * se


def trained_entries(hidden, layers, groups):
    """Bias entries trained when the bias terms named in `groups` train in every one of `layers` layers:
    b_m2 is 4H wide (the feed-forward layer), every other term of a layer H wide."""
    return layers * sum(4 * hidden if group == "b_m2" else hidden for group in groups)


def mean_abs_change(before, after):
    """Mean |after - before| of every tensor, by name: the measure of the paper's Figure 1."""
    return {name: (after[name] - before[name]).abs().mean().item() for name in before}


def trainable_percent(model):
    """The percentage of a model's parameters (head included) that will train: those with requires_grad."""
    total = sum(p.numel() for p in model.parameters())
    return 100 * sum(p.numel() for p in model.parameters() if p.requires_grad) / total


def lora_entries(hidden, layers, rank, adapted):
    """Entries LoRA of rank r trains when it adapts `adapted` H x H matrices in each of `layers` layers:
    A (r x H) and B (H x r) per matrix, the head left out."""
    return layers * adapted * rank * (hidden + hidden)


def _bert_base_layer_biases() -> int:
    return int(biases.census_table(counting.meta_encoder("bert-base-cased")).loc["total", 0])


def _bert_base_bias_percent() -> float:
    return float(counting.accounting_table(["bert-base-cased"]).loc["bert-base-cased", "bias %"])


def _classroom_frame(experiment: str):
    profile = get_profile("classroom")
    if experiment == "ablation":  # as notebook 4 reads it
        configs = grids.ablation_comparison(profile)
    else:
        configs = grids.experiment_configs(profile, experiment)
    if experiment not in ("main", "ablation"):  # as notebook 5 reads them: with the seeds that settle open claims
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


ANSWERS: dict[str, Answer] = {
    "01.b_k": Answer(
        answer=lambda: "b",
        why=lambda: "q·(W_k x_j + b_k) = q·W_k x_j + q·b_k: the second term is the same for every key j, and "
                    "softmax(s + c) = softmax(s). So b_k's gradient is exactly zero in exact arithmetic."),
    "01.layer_biases": Answer(
        answer=_bert_base_layer_biases,
        why=lambda: f"Seven biases of width H (b_q, b_k, b_v, b_m1, b_LN1, b_m3, b_LN2) and b_m2 of width 4H: "
                    f"11H = {_bert_base_layer_biases():,}."),
    "01.bert_large_layer": Answer(
        answer=lambda: _layer_biases("bert-large-cased"),
        why=lambda: f"{_layer_biases('bert-large-cased'):,}: 11H, as in every BERT layer (3H for b_q, b_k, b_v; H each "
                    "for b_m1, b_LN1, b_m3, b_LN2; 4H for b_m2)."),
    "01.attention_head": Answer(
        solution=attention_head,
        why=lambda: "softmax(Q K^T / sqrt(d)) V, with Q, K and V affine in x. One of the inputs has a large b_k: "
                    "it adds q·b_k to every score of a query, softmax ignores a shift, and the output is what it "
                    "would be with b_k = 0. Try it: call your function with b_k * 0."),
    "02.bias_percent": Answer(
        answer=_bert_base_bias_percent,
        why=lambda: f"{_bert_base_bias_percent():.3f}% from the config's exact counts; the paper prints 0.09% "
                    "(notebook 2 shows which rounding)."),
    "02.learning_rate": Answer(
        answer=lambda: "c",
        why=lambda: "AdamW's step on a parameter is about the learning rate, whatever its gradient's scale. Full-FT "
                    "changes millions of weights a little; BitFit must change a few thousand biases a lot."),
    "02.bert_base_three_labels": Answer(
        answer=_bert_base_three_labels,
        why=lambda: f"{_bert_base_three_labels():,}: the encoder's biases (11H per layer in 12 layers, plus the "
                    "embeddings' LayerNorm and the pooler: 2H) and a head of 3H weights and 3 biases, H = 768."),
    "03.mrpc_floor": Answer(
        answer=_mrpc_floor,
        why=lambda: f"{_mrpc_floor():.1f}: most MRPC dev pairs are paraphrases, and F1 of the positive class is high "
                    "when every pair is called one. A classifier has to beat this floor, not 50."),
    "03.seeds_at_zero": Answer(
        answer=_seeds_for_equivalence,
        why=lambda: f"{_seeds_for_equivalence()} seeds per method (power.seeds_needed). The 90% interval must fit "
                    "inside ±1.0: its half-width shrinks like one over the square root of the seeds, so halving "
                    "it takes four times as many. Two identical methods are not 'equivalent' until the seeds can "
                    "show it."),
    "03.frozen_stsb": Answer(
        answer=lambda: "a",
        why=_frozen_stsb_why),
    "03.welch_interval": Answer(
        solution=welch_interval,
        why=lambda: "Each mean's variance is s^2 / n (s^2 the sample variance, ddof=1); se is the square root of "
                    "their sum; Welch's df is (v_a + v_b)^2 / (v_a^2 / (n_a - 1) + v_b^2 / (n_b - 1)); the interval "
                    "is the gap ± t·se, t = stats.t.ppf(0.5 + level / 2, df). It is what the verdicts get from "
                    "scipy.stats.ttest_ind(..., equal_var=False)."),
    "04.random_baseline": Answer(
        answer=_closer_random_baseline,
        why=_random_baselines_why),
    "04.bq_bm2_entries": Answer(
        answer=_classroom_bq_bm2_entries,
        why=lambda: f"b_q has H entries and b_m2 has 4H (the feed-forward layer is 4H wide): 5H = "
                    f"{_classroom_bq_bm2_entries():,}, a little under half of a layer's 11H."),
    "04.bq_bm2_bert_base": Answer(
        answer=lambda: _bq_bm2_all_layers("bert-base-cased"),
        why=lambda: f"{_bq_bm2_all_layers('bert-base-cased'):,}: 5H per layer (H for b_q, 4H for b_m2), H = 768, in "
                    "12 layers."),
    "04.trained_entries": Answer(
        solution=trained_entries,
        why=lambda: "Every term of a layer is H wide except b_m2, the feed-forward layer's, which is 4H: layers "
                    "times the sum of the named terms' widths. The tests check it against the bias census of "
                    "BERT-base and BERT-large built from their configs."),
    "05.small_data": Answer(
        answer=lambda: _ahead_at_smallest_size()[0],
        why=lambda: f"With {_ahead_at_smallest_size()[1]:,} examples: {SMALL_DATA[_ahead_at_smallest_size()[0]]}, "
                    "read from the 90% interval over seeds of the last-epoch difference (notebook 5's table). The "
                    "paper finds "
                    "BitFit ahead when data is small."),
    "05.mean_abs_change": Answer(
        solution=mean_abs_change,
        why=lambda: "(after[name] - before[name]).abs().mean().item() for each name. The training code records "
                    "exactly this for every bias term of every run; the heatmaps average it over tasks and seeds."),
    "05.top_two": Answer(
        answer=_top_two_letter,
        why=lambda: f"{_top_two_groups()} moved most (the heatmaps of notebook 5 show them layer by layer). The "
                    "paper's Figure 1 names b_q and b_m2."),
    "06.thousand_tasks": Answer(
        answer=_thousand_tasks_mib,
        why=lambda: f"About {_thousand_tasks_mib():.0f} MiB: a thousand times the mean size of the committed deltas. "
                    "A thousand full copies of the model would take a thousand times its checkpoint."),
    "06.delta_by_hand": Answer(
        answer=_sst2_delta_by_hand,
        why=lambda: f"{_sst2_delta_by_hand():.3f}. A delta is nothing but tensors with the names of the parameters "
                    "they replace: copying them into a fresh model of the same backbone gives the fine-tuned model."),
    "06.bert_base_delta": Answer(
        answer=_bert_base_delta_kib,
        why=lambda: f"About {_bert_base_delta_kib():.0f} KiB: BERT-base's biases (notebook 2 counts them) and a "
                    "head of 2 x 768 weights and 2 biases, 4 bytes each. The encoder it adapts takes "
                    f"{_bert_base_encoder_kib() / 1024:.0f} MiB in fp32: a task costs about "
                    f"1/{_bert_base_encoder_kib() / _bert_base_delta_kib():,.0f} of a copy."),
    "06.shared_head": Answer(
        answer=lambda: "b",
        why=lambda: "A bias per row is a gather of one vector. A head per row is a gather of one small matrix "
                    "(labels x width), and the server applies all the rows' heads in one batched product "
                    "(torch.baddbmm). The backbone's weight matrices, the same for every task, are applied once "
                    "to the whole batch."),
    "06.bf16_bias": Answer(
        answer=lambda: {0.5: "b", 0.50390625: "c"}[torch.tensor(0.5012).bfloat16().item()],
        why=lambda: f"{torch.tensor(0.5012).bfloat16().item():g}: bf16's numbers near 0.5 are 2^-8 = 0.0039 apart, so "
                    "0.5012 rounds back to 0.5 and the run's change is lost. That is why the server keeps every bias "
                    "in fp32 (24 bits, 6e-8 apart near 0.5) and adds it after the bf16 product."),
    "07.b_m2_share": Answer(
        answer=lambda: _classroom_share({"b_m2"}),
        why=lambda: f"{_classroom_share({'b_m2'}):.3f}%: b_m2 is 4H wide in each of the classroom model's layers, "
                    "the widest bias of a layer, and still a tiny share of the model."),
    "07.which_more": Answer(
        answer=lambda: "a" if _classroom_share({"b_m2"}) > _classroom_share(BIAS_GROUPS, first_half=True) else "b",
        why=lambda: f"b_m2 everywhere: {_classroom_share({'b_m2'}):.3f}%; every bias in the first half: "
                    f"{_classroom_share(BIAS_GROUPS, first_half=True):.3f}% (a layer's biases are 11H, of which b_m2 "
                    "is 4H; the embeddings' LayerNorm, outside the layers, counts too)."),
    "07.b_m2_bert_base": Answer(
        answer=lambda: _share("bert-base-cased", "cls_pooler", {"b_m2"}),
        why=lambda: f"{_share('bert-base-cased', 'cls_pooler', {'b_m2'}):.3f}%: 4H entries per layer, H = 768, in "
                    f"12 layers, out of {counting.count_parameters('bert-base-cased').total / 1e6:.0f}M parameters. "
                    f"In the classroom model it is {_classroom_share({'b_m2'}):.3f}%: a wider model has wider "
                    "biases, but its weight matrices grow with the square of the width."),
    "07.trainable_percent": Answer(
        solution=trainable_percent,
        why=lambda: "100 times the entries of the parameters with requires_grad over the entries of all of them. "
                    "It works on any PyTorch model, which is why BitFit carries over to a vision transformer "
                    "(notebook 9)."),
    "08.lora_bert_base": Answer(
        answer=lambda: _bert_base_counts()["LoRA matrices"],
        why=lambda: "W_q and W_v each get A (r x H) and B (H x r): 2 x 12 x 8 x (768 + 768) = "
                    f"{_bert_base_counts()['LoRA matrices']:,}, the LoRA paper's '0.3M'. BitFit trains "
                    f"{_bert_base_counts()['biases']:,} biases in the same model."),
    "08.no_counterpart": Answer(
        answer=lambda: "c",
        why=lambda: "BEFT wraps linear layers only; LayerNorm is not one. In the classroom model BitFit trains "
                    f"{_classroom_biases_beyond_beft():,} more entries than BEFT on every linear layer, exactly the "
                    "LayerNorm biases: 2 per layer and 1 in the embeddings, H = 384 each."),
    "08.lora_entries": Answer(
        solution=lora_entries,
        why=lambda: "Each adapted matrix gets A (r x H) and B (H x r): 2rH entries, times the matrices per "
                    "layer, times the layers. The tests check it against peft's LoRA put into BERT models built "
                    "from their configs."),
    "09.who_loses_more": Answer(
        answer=_who_loses_more,
        why=_who_loses_more_why),
    "09.vit_bitfit": Answer(
        answer=_vit_bitfit_count,
        why=_vit_bitfit_why),
    "09.underfitting": Answer(
        answer=lambda: "b",
        why=_underfitting_why),
}
