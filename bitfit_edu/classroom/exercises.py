"""Exercises for the notebooks: the questions, and ``check``, which judges an answer against the key.

Every notebook ends with a few exercises. A student writes an answer in a cell and runs
``exercises.check(key, answer)``; with ``answer=None`` it prints the question. A right answer gets why it is
right, a wrong one a hint, never the answer. A coding exercise's answer is a function the student writes,
tried on inputs no notebook prints (``coding``). ``exercises.answer(key)`` prints the answer and why (the
notebooks keep that cell collapsed); for a coding exercise, a model solution.

The answers and explanations live apart, in the answer key (``key``). A graded class's student build leaves
the key out, and the grader's sandbox hides it: there ``check`` says an answer is in a form it can grade and
that the teacher grades it, and ``answer`` says the teacher keeps the answers.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..errors import BitFitError, unknown_choice
from .coding import CODING, CodingExercise

KEY_MODULE = f"{__package__}.key"
WITHHELD = "In this edition of the course your teacher keeps the answers and grades them."


def key_file() -> Path | None:
    """The answer key's source file; None where it is left out (a graded class's student build)."""
    spec = importlib.util.find_spec(KEY_MODULE)
    return Path(spec.origin) if spec is not None else None


def answer_key() -> dict:
    """The answer key (``key.ANSWERS``); empty where it is left out (a graded class's student build, the
    grader's sandbox). A key that is present but fails to import is an error, never a silent empty key."""
    if key_file() is None:
        return {}
    return getattr(importlib.import_module(KEY_MODULE), "ANSWERS", {})


@dataclass(frozen=True)
class Exercise:
    """A question and how to judge an answer: a letter of ``choices``, a number within ``tolerance``
    (relative) of the key's, or a function (``function``) tried on inputs no notebook prints."""

    question: str
    choices: dict[str, str] = field(default_factory=dict)
    tolerance: float = 0.02
    hint: str = ""  # what a wrong answer gets instead of the answer (``check``); "" for ``GENERIC_HINT``
    code: bool = False  # the student writes code to answer it
    transfer: bool = False  # it asks about another model, task or scale than the notebook shows, or for a prediction
    function: CodingExercise | None = None  # the answer is a function, tried on inputs no notebook prints
    name: str = ""  # its key in ``EXERCISES``

    def __post_init__(self):
        if self.function is not None:
            object.__setattr__(self, "code", True)

    @property
    def has_key(self) -> bool:
        return self.name in answer_key()

    def _key(self):
        if not self.has_key:
            raise BitFitError(f"the answer to {self.name} is not here. {WITHHELD}")
        return answer_key()[self.name]

    def answer(self) -> str | float | list:
        """The right answer: a letter, a number, or what the model solution returns on the function's inputs."""
        found = self._key()
        return self.function.outputs(found.solution) if self.function is not None else found.answer()

    def why(self) -> str:
        return self._key().why()

    def given(self, given: str | float | Callable | list) -> str | float | list:
        """An answer in the form this exercise grades: a letter of its choices, a number (8448, "8,448" or
        8448.0), or a function's outputs on its inputs; an error that says which form, otherwise."""
        if self.function is not None:
            if not callable(given) and not isinstance(given, list):
                raise BitFitError(f"this exercise wants your function ({self.function.signature}), not {given!r}")
            return self.function.outputs(given) if callable(given) else given
        if self.choices:
            letter = str(given).strip().lower().strip("()")
            if letter not in self.choices:
                raise BitFitError(f"this exercise wants one of the letters {', '.join(self.choices)}, not {given!r}")
            return letter
        try:
            return float(given.replace(",", "").replace("_", "").strip()) if isinstance(given, str) else float(given)
        except (TypeError, ValueError):
            raise BitFitError(f"this exercise wants a number (8448, 8,448 or 8448.0), not {given!r}") from None
        except OverflowError:  # an integer too large for a float: a number, and not this one
            return math.inf

    def failure(self, given: str | float | Callable | list) -> str | None:
        """What is wrong with an answer, or None when it is right: for a coding exercise, which input the
        function (or the outputs recorded from it) got wrong."""
        found = self.given(given)
        if self.function is not None:
            return self.function.first_failure(found, self.answer())
        if self.choices:
            return None if found == self.answer() else f"answered ({found})"
        return None if math.isclose(found, self.answer(), rel_tol=self.tolerance) else f"answered {found:,.6g}"


TERM_PAIRS = {"a": "b_q + b_m2", "b": "b_k + b_v", "c": "b_LN1 + b_LN2", "d": "b_m1 + b_m3", "e": "another pair"}


SMALL_DATA = {"a": "BitFit", "b": "Full-FT", "c": "neither: the seeds' spread cannot tell them apart"}


WHO_LOSES_MORE = {"a": "BitFit loses more points than Full-FT", "b": "Full-FT loses more points than BitFit",
                  "c": "neither: the seeds cannot tell the two losses apart"}


DULL_REVIEW = "The plot was dull and far too long."


PASS = ("Pass the function itself (its name, no brackets) in place of None: it is tried on inputs this notebook "
        "does not print.")


def _coding_exercise(key: str, question: str, hint: str, transfer: bool = False) -> Exercise:
    """An exercise whose answer is a function (``coding.CODING[key]``): its question says how to hand it in."""
    return Exercise(f"{question} {PASS}", hint=hint, transfer=transfer, function=CODING[key])


_QUESTIONS: dict[str, Exercise] = {
    "01.b_k": Exercise(
        "Why can b_k not change what a layer computes?",
        choices={"a": "it is initialised to zero", "b": "it shifts all of a query's attention scores by the same "
                 "amount, and softmax ignores a constant shift", "c": "the key projection is frozen by BitFit"}),
    "01.layer_biases": Exercise(
        "How many bias parameters does one BERT-base encoder layer hold (H = 768)?", tolerance=0.0),
    "01.bert_large_layer": Exercise(
        "Transfer: how many bias entries does one layer of BERT-large (bert-large-cased, H = 1024) hold?",
        tolerance=0.0,
        hint="Count a layer's biases in units of H: the feed-forward layer is 4H wide. The count does not depend "
             "on the number of layers.",
        transfer=True),
    "01.attention_head": _coding_exercise(
        "01.attention_head",
        "In code: write attention_head(x, W_q, b_q, W_k, b_k, W_v, b_v), one attention head with its biases. The "
        "tokens are the rows of x; each projection is x @ W.T + b; the scores Q K^T are divided by sqrt(d), d the "
        "width of Q, and a softmax runs over each query's row.",
        hint="Q = x @ W_q.T + b_q (and so for K and V). The scores are Q @ K.T / math.sqrt(Q.shape[-1]); "
             "torch.softmax(scores, dim=-1) weighs the rows of V."),
    "02.bias_percent": Exercise(
        "What percentage of BERT-base's parameters are biases (head excluded)? Give it to two decimals.",
        tolerance=0.06),
    "02.learning_rate": Exercise(
        "Why does BitFit with Full-FT's learning rate (2e-5) barely learn?",
        choices={"a": "biases have no gradient", "b": "AdamW ignores small parameters",
                 "c": "a bias moves a whole unit's activation by at most the learning rate per step, and biases "
                      "need to move far from their pre-trained values: 10-100x larger steps"}),
    "02.bert_base_three_labels": Exercise(
        "Transfer, in code: how many parameters does BitFit train in BERT-base (bert-base-cased) with a new head "
        "for a three-class task such as MNLI, head included? Count them from the configuration, as this notebook "
        "does, or by hand.",
        tolerance=0.0,
        hint="The biases do not depend on the task; only the head does. A head for k classes is a k x H matrix and "
             "k biases.",
        code=True, transfer=True),
    "03.mrpc_floor": Exercise(
        "What dev score (x100, the mean of accuracy and F1) does always answering 'equivalent' get on MRPC?"),
    "03.seeds_at_zero": Exercise(
        "If BitFit and Full-FT were truly equal, how many seeds per method would 'BitFit matches Full-FT' need "
        "to be resolved with 80% probability, with the spreads of the committed runs (declared protocol)?",
        tolerance=0.2),
    "03.frozen_stsb": Exercise(
        "Why is Frozen so far below on STS-B?",
        choices={"a": "it is still learning: its dev score rises until the last epoch",
                 "b": "STS-B is a regression task, which a frozen encoder cannot do",
                 "c": "its learning rate made it diverge"}),
    "03.welch_interval": _coding_exercise(
        "03.welch_interval",
        "In code: write welch_interval(method_scores, baseline_scores, level=0.90), returning (low, high): the "
        "Welch t-interval of mean(method_scores) - mean(baseline_scores), as the worked example computes it "
        "(scipy.stats.t.ppf gives t).",
        hint="Use the sample variance (ddof=1), each divided by its own number of seeds. Take t at "
             "0.5 + level / 2 with Welch's degrees of freedom, not n - 1."),
    "04.random_baseline": Exercise(
        "Which random baseline comes closer to all biases?",
        choices={"a": "random entries (uniform)", "b": "random rows/columns"}),
    "04.bq_bm2_entries": Exercise(
        "How many bias entries do b_q and b_m2 hold together in one layer of the classroom model (H = 384)?",
        tolerance=0.0),
    "04.bq_bm2_bert_base": Exercise(
        "Transfer: how many entries do b_q and b_m2 hold together in all of BERT-base's layers (bert-base-cased)?",
        tolerance=0.0,
        hint="Per layer, b_q is H wide and b_m2 4H. Then multiply by the number of layers.",
        transfer=True),
    "04.trained_entries": _coding_exercise(
        "04.trained_entries",
        "Transfer, in code: write trained_entries(hidden, layers, groups): how many bias entries train when the "
        "terms named in groups (a set such as {'b_q', 'b_m2'}) train in every one of layers layers of a model of "
        "width hidden (no head, nothing outside the layers).",
        transfer=True,
        hint="Which term is 4H wide and not H? Sum the named terms' widths, then multiply by the layers."),
    "05.small_data": Exercise(
        "On the smallest training set of the SST-2 size curve, who is ahead?",
        choices=SMALL_DATA),
    "05.mean_abs_change": _coding_exercise(
        "05.mean_abs_change",
        "In code: write mean_abs_change(before, after). Both map bias names to tensors: a run's biases before and "
        "after training. Return a dict from each name to the mean of |after - before| over its entries, as a "
        "float: the measure behind section 1's heatmaps.",
        hint="Loop over the names of before: subtract, .abs(), .mean(), then .item() for a float."),
    "05.top_two": Exercise(
        "Which two bias terms change most in our BitFit runs, mean |Δb| averaged over layers, tasks and seeds?",
        choices=TERM_PAIRS),
    "06.thousand_tasks": Exercise(
        "How many MiB would 1,000 tasks take as BitFit deltas of the classroom model?",
        tolerance=0.1),
    "06.delta_by_hand": Exercise(
        f"Apply the SST-2 delta by hand, without the serving code: a fresh classifier "
        f"(readout.load_classifier(manifest.model, manifest.num_labels, manifest.readout)), each of the delta's "
        f"tensors (deltas.read_delta) copied into the parameter of the same name, then the softmax of its logits for "
        f"'{DULL_REVIEW}'. What probability does it give 'positive'?",
        tolerance=0.05,
        hint="Use model.eval() (dropout off), the tokenizer of manifest.model, and torch.no_grad(). "
             "manifest.label_names says which column is 'positive'.",
        code=True),
    "06.bert_base_delta": Exercise(
        "Transfer: a BitFit delta of BERT-base (bert-base-cased, read through its pooler) for a two-class task "
        "holds its biases and its head in fp32, 4 bytes an entry. How many KiB of tensors is that?",
        tolerance=0.05, transfer=True,
        hint="Count BERT-base's biases (notebook 2's table) and a two-class head (2 x H weights and 2 biases), "
             "then 4 bytes each; 1 KiB is 1,024 bytes."),
    "06.shared_head": Exercise(
        "In a mixed-task batch every row shares the weight matrices. Why can rows not share the head as well?",
        choices={"a": "the head is not pre-trained", "b": "each task's head is a different matrix, with as many "
                 "outputs as that task has labels, so each row needs its own task's head"}),
    "06.bf16_bias": Exercise(
        "Predict: a BitFit run moved one entry of b_q from 0.5 to 0.5012. If the server kept its biases in bf16 "
        "(8 significant bits), what number would that entry hold?",
        choices={"a": "0.5012, as fp32 holds it", "b": "0.5, as before fine-tuning", "c": "0.50390625",
                 "d": "0.501"},
        transfer=True,
        hint="bf16 keeps 8 significant bits, so between 0.5 and 1 its numbers are 2^-8 = 0.0039 apart. Which of "
             "them is nearest? torch.tensor(0.5012).bfloat16() shows it."),
    "07.b_m2_share": Exercise(
        "Tick b_m2 alone, in every layer, head off: what percentage of the classroom model trains?",
        tolerance=0.05),
    "07.which_more": Exercise(
        "Which trains more: b_m2 alone in every layer, or every bias in the first half of the layers?",
        choices={"a": "b_m2 alone in every layer", "b": "every bias in the first half of the layers"}),
    "07.b_m2_bert_base": Exercise(
        "Transfer: in BERT-base (bert-base-cased, read through its pooler), what percentage of the encoder does "
        "b_m2 alone in every layer train, head off?",
        tolerance=0.05, transfer=True,
        hint="b_m2 is 4H wide in each of the 12 layers. Divide by the encoder's parameters: notebook 2 counts "
             "BERT-base's (counting.count_parameters gives them too)."),
    "07.trainable_percent": _coding_exercise(
        "07.trainable_percent",
        "Transfer, in code: write trainable_percent(model): the percentage of a model's parameters, head "
        "included, that will train (those with requires_grad). The lab's shares leave the head out; this one "
        "counts it, and one of the models it is tried on is not a language model.",
        transfer=True,
        hint="Sum p.numel() over model.parameters(), once for all of them and once for those with "
             "p.requires_grad."),
    "08.lora_bert_base": Exercise(
        "LoRA's GLUE setting puts rank r = 8 on W_q and W_v of every layer. How many entries does it train in "
        "BERT-base (12 layers, H = 768), head excluded?",
        transfer=True),
    "08.no_counterpart": Exercise(
        "BEFT on every linear layer adds a new bias beside each W. Which of BitFit's biases has no BEFT "
        "counterpart?",
        choices={"a": "b_q", "b": "b_m2", "c": "the LayerNorm biases (b_LN1, b_LN2 and the embeddings')",
                 "d": "none: BEFT can reach every bias BitFit trains"}),
    "08.lora_entries": _coding_exercise(
        "08.lora_entries",
        "Transfer, in code: write lora_entries(hidden, layers, rank, adapted): how many entries LoRA of rank "
        "rank trains when it adapts adapted of the H x H matrices in each of layers layers (head excluded).",
        transfer=True,
        hint="LoRA adds B A beside W, A of shape r x H and B of shape H x r. Count one matrix, then multiply."),
    "09.who_loses_more": Exercise(
        "Take pre-training away: train Full-FT and BitFit from a random encoder instead of the pre-trained one. "
        "Predict before you read section 4: which method loses more points?",
        choices=WHO_LOSES_MORE,
        hint="Section 4 prints how many points each method loses, and the verdict on the change of BitFit's gap.",
        transfer=True),
    "09.vit_bitfit": Exercise(
        "Make the toy ViT ready for BitFit: freeze every parameter except the biases and the classifier head, "
        "then count the parameters that still train. What is the count?",
        tolerance=0.0,
        hint="Every bias's name ends in '.bias', LayerNorm's too. The head is `vit.classifier`: count its weight "
             "and its bias. Then sum `p.numel()` over the parameters with `requires_grad`.",
        code=True, transfer=True),
    "09.underfitting": Exercise(
        "Frozen's generalization gap is even smaller than BitFit's. Does a small gap show that a method exposes "
        "what pre-training learned?",
        choices={"a": "yes: a small gap means the method memorised little, so it must have exposed",
                 "b": "no: a method that learns little also has a small gap; read the gap beside the dev score",
                 "c": "yes, but only for BitFit"},
        hint="What does Frozen train, and how does its dev score compare with BitFit's (notebook 05)?"),
}


EXERCISES: dict[str, Exercise] = {key: replace(exercise, name=key) for key, exercise in _QUESTIONS.items()}


def _exercise(key: str) -> Exercise:
    if key not in EXERCISES:
        raise unknown_choice("exercise", key, EXERCISES)
    return EXERCISES[key]


GENERIC_HINT = ("Look again at the section above the exercise, then try another answer. When you are done, "
                "exercises.answer(key) explains it.")


def check(key: str, answer: str | float | Callable | None = None) -> None:
    """Check a student's answer to exercise ``key``: a right answer gets why it is right, a wrong one a hint,
    never the answer. With no answer, print the question (and its choices). Without the key (a graded class),
    say that the answer is in a form the teacher can grade."""
    exercise = _exercise(key)
    if answer is None:
        print(exercise.question)
        for letter, text in exercise.choices.items():
            print(f"  ({letter}) {text}")
        print("Write your function above, then pass it in place of None." if exercise.function else
              "Replace None with your answer and run the cell again.")
        return
    if not exercise.has_key:
        print(_recorded(exercise, exercise.given(answer)))
        return
    failed = exercise.failure(answer)
    if failed is None:
        print("Right. " + exercise.why())
    elif exercise.function is not None:
        print(f"Not quite: your function's result differs on {failed}. " + (exercise.hint or GENERIC_HINT))
    else:
        print("Not quite. " + (exercise.hint or GENERIC_HINT))


def _recorded(exercise: Exercise, given: str | float | list) -> str:
    """What a student sees without the key: the answer as it will be graded, or the inputs a function failed on."""
    if exercise.function is None:
        return f"Your answer, {given if exercise.choices else f'{given:,.6g}'}, is ready to hand in. {WITHHELD}"
    raised = [case.about for case, output in zip(exercise.function.cases, given, strict=False)
              if isinstance(output, str) and output.startswith("raised")]
    if raised:
        return f"Your function raised an error on {raised[0]}: fix it before you hand it in."
    return f"Your function ran on all {len(exercise.function.cases)} of its inputs. {WITHHELD}"


def answer(key: str) -> None:
    """Print the answer to exercise ``key`` and why (where this copy of the course has the answer key)."""
    exercise = _exercise(key)
    if not exercise.has_key:
        print(WITHHELD)
        return
    if exercise.function is not None:
        solution = answer_key()[key].solution
        print(f"A model solution:\n\n{inspect.getsource(solution)}\n{exercise.why()}")
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
