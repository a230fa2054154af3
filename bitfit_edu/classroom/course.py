"""The course as data: each notebook's place in it, what it teaches and how to teach it.

The home page's course map and the instructor guide are written from here, so the notebooks' titles,
objectives and discussion questions live once. Every number beside them is measured, not typed: a
notebook's time is read from the cell timestamps of its committed, executed copy
(``measured_seconds``), and the cost of regenerating its committed results from the records' own
timing (``regeneration_cost``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from ..data.locations import course_root
from . import readability
from .exercises import EXERCISES


@dataclass(frozen=True)
class Chapter:
    """One notebook of the course: ``stem`` names ``notebooks/<stem>.ipynb``; ``experiments`` are the grids
    whose committed records it reads (``python -m bitfit_edu grid --experiment NAME`` regenerates each), and
    ``records`` a results sub-folder (``results/<records>/classroom``) of runs it makes itself on demand."""

    stem: str
    title: str
    teaches: str
    objectives: tuple[str, ...]
    prerequisites: str
    live: str
    committed: str
    questions: tuple[str, ...]
    experiments: tuple[str, ...] = ()
    records: str | None = None
    answers: tuple[str, ...] = ()  # a model answer to each of ``questions``, for the instructor guide

    @property
    def number(self) -> str:
        return self.stem[:2]

    @property
    def notebook(self) -> Path:
        return course_root() / "notebooks" / f"{self.stem}.ipynb"

    def exercises(self) -> dict[str, object]:
        return {key: exercise for key, exercise in EXERCISES.items() if key.startswith(f"{self.number}.")}


CHAPTERS: tuple[Chapter, ...] = (
    Chapter("01_transformer_equations", "The transformer equations",
            "the encoder layer as the paper writes it, where each bias enters, and why b_k cannot matter",
            ("write an encoder layer with the paper's names (Q, K, V, h1...h5) and check it against Hugging Face's",
             "point to each of the eight bias terms b_q ... b_LN2 in those equations",
             "explain from the softmax why b_k receives no gradient",
             "count the biases of BERT-base from its configuration alone"),
            "Python and PyTorch tensors; matrix products; what softmax does",
            "everything: the equations on the classroom model, counts from configurations; no training",
            "nothing", ("The paper's b_k argument is exact arithmetic. What would break it in practice?",
                        "Where in the layer would you expect a bias to matter most, before seeing any result?"),
            answers=("Rounding. In bf16 the constant q·b_k added to every score no longer cancels exactly in the "
                     "softmax, so b_k gets a small, noisy gradient, and AdamW's normalised step turns that noise "
                     "into full-size moves (notebook 05 measures it under bf16 autocast).",
                     "There is no single right answer; the point is to commit to one. A good one: b_m2, the widest "
                     "bias (4H) and the last shift before the GELU, so it decides which units fire; or b_q, which "
                     "shifts every query and so the attention pattern. Notebook 05 shows which moved most.")),
    Chapter("02_bias_freezing", "Bias freezing",
            "what BitFit trains, one optimizer step diffed, the delta file, and four pitfalls",
            ("freeze everything but the biases (and the head) by exact parameter names",
             "verify with a diff that one optimizer step changed only what should train",
             "recognise the four pitfalls: substring matching, a truthy `or`, an untrained pooler, Full-FT's rate"),
            "notebook 01", "one short SST-2 BitFit run with its learning curve",
            "the pitfall runs (readout and learning rate) as records",
            ("Why is a learning rate 50 times Full-FT's right for BitFit?",
             "The classroom model's pooler was never trained. What else in a checkpoint can be silently untrained?"),
            records="notebook02",
            answers=("AdamW moves each parameter by about the learning rate per step, whatever its gradient's size. "
                     "Full-FT changes millions of weights a little; BitFit has only the biases, which must move far "
                     "in the same number of steps. The sweep in notebook 03 chose the rates.",
                     "Anything the original training never used: a head shipped for another task, a pooler under a "
                     "mean-pooling readout, embeddings of tokens added later. Read the model card and look at the "
                     "weights' statistics before freezing them.")),
    Chapter("03_glue_runs", "GLUE runs, verdicts and power",
            "one GLUE task from files to a score, the main table beside the paper's, verdicts under one declared "
            "protocol, and how many seeds a verdict needs",
            ("tokenize a GLUE task, score it with its metric, and compare against its majority-class floor",
             "read the main table (Full-FT, BitFit, Frozen) against the paper's averages, labelled as theirs",
             "state a claim as an equivalence test with a margin and judge it with a 90% interval",
             "compute how many seeds a verdict needs, and why five seeds may not be enough"),
            "notebooks 01-02; a mean, a standard deviation and a confidence interval",
            "one short MRPC BitFit run", "the learning-rate sweep, the checks and the main grid",
            ("Why is the last epoch a fairer protocol than the best epoch?",
             "A verdict 'not resolved' after five seeds: what would you tell a reader, and what would you run?",
             "Which of the paper's claims would you expect to change with a smaller model?"),
            ("lr_sweep", "checks", "main"),
            answers=("The best epoch lets the dev set choose among a run's evaluations, and a method evaluated more "
                     "often gets more chances to be lucky. The last epoch scores what the recipe trained, the same "
                     "way for every method.",
                     "That the seeds cannot yet tell: it neither supports nor contradicts the claim. Run the number "
                     "of seeds the power table names, declared before running, and report the verdict at that "
                     "count, whatever it is.",
                     "Those that rest on what the model learned and how much it can hold: 'BitFit matches Full-FT' "
                     "and where the size curves cross (notebook 09 shows how much depends on pre-training). "
                     "Parameter counts and the deployment claims do not depend on the model's size.")),
    Chapter("04_ablations", "Ablations: which biases matter",
            "b_q + b_m2, b_m2 and b_q against all biases, and random parameters of the same size",
            ("count what each variant trains", "compare subsets against all biases under the declared protocol",
             "explain why random rows or columns come closer than random entries"),
            "notebook 03", "nothing: counts and tables",
            "the ablation grid, with the runs that settle its claims (experiment settle)",
            ("If b_q + b_m2 is close to all biases, why might one still train all of them?",
             "What would a fair random baseline for b_q + b_m2 look like?"),
            ("ablation",),
            answers=("All biases cost almost nothing more (notebook 04 counts them) and remove a choice that could "
                     "go wrong on a new task. 'Close' is a claim about an average over tasks, not about every task.",
                     "The same number of parameters as b_q + b_m2 (5H per layer), drawn from the weight matrices at "
                     "random, as single entries or as whole rows and columns, trained with the same rate, epochs "
                     "and seeds.")),
    Chapter("05_visualizations", "What changes, and when BitFit wins",
            "bias change per term and layer (the paper's Figure 1), learning curves, the generalization gap and "
            "the SST-2 size curve",
            ("read the paper's Figure 1 from our runs, absolute and relative to each bias's size",
             "tell a number-format artifact (b_k under bf16) from a real change",
             "read who is ahead at each training size from the spread over seeds"),
            "notebooks 03-04", "nothing: tables and figures", "the main grid, figure_1 and the size curve",
            ("Why draw Figure 1 from fp32 runs?",
             "What does a learning curve still rising at the last epoch tell you?"),
            ("figure_1", "size_curve"),
            answers=("Under bf16 autocast, rounding breaks the cancellation that keeps b_k's gradient at zero, and "
                     "AdamW turns the noise into full-size steps: b_k would seem to move. fp32 shows what the "
                     "gradients really do.",
                     "That the run stopped before it converged: more training might change its score, so a "
                     "comparison at that point may understate the method (notebook 03's 'still rising' view).")),
    Chapter("06_deployment", "One backbone, many tasks",
            "a task as a delta file, task switching, a mixed-task batch in one forward pass, a bf16 or int8 "
            "backbone under fp32 deltas, and their costs",
            ("save and load a task as a few bias vectors and a head, with a manifest",
             "answer a batch whose rows belong to different tasks in one forward pass",
             "explain why a task's biases stay fp32 on a bf16 or int8 backbone, and what that format buys",
             "say what BitFit saves at training time and what it does not"),
            "notebook 02", "switching and a mixed batch on the five committed deltas",
            "the deltas (results/deployment) and the deployment benchmark",
            ("What must a delta file record so that it is never applied to the wrong backbone?",
             "Why does BitFit save less training time than its parameter count suggests?"),
            records="deployment",
            answers=("A fingerprint of the exact backbone (a hash of its weights), the model's name, the readout, "
                     "the task and its labels, every tensor's name and shape, and reference logits to check after "
                     "loading.",
                     "The backward pass still runs through every frozen layer to reach the biases below it. BitFit "
                     "saves the weight gradients' products and the optimizer's state, not the pass itself.")),
    Chapter("07_lab", "The lab",
            "an interactive lab: choose bias groups and layers, watch what trains, train it live",
            ("predict what share of the model a choice of biases trains, then check it",
             "train a chosen subset live and compare it with the committed grids"),
            "notebooks 01-02", "one 60-step SST-2 run, and whatever the students train from the Train button",
            "the main and ablation grids for comparison",
            ("Which trains more: one wide bias everywhere, or every bias in half the layers?",
             "Your subset scored within a point of BitFit on one seed. What would convince you?"),
            answers=("Count it before guessing: b_m2 is 4H per layer, all of a layer's biases 11H. Exercise "
                     "07.which_more checks the counts.",
                     "Several seeds of both, a margin fixed in advance, and a 90% interval of the difference inside "
                     "it (notebook 03's rule). One seed's difference is within the noise between seeds.")),
    Chapter("08_peft_comparison", "BitFit against LoRA, IA3 and BEFT",
            "today's parameter-efficient methods through peft on the same harness, counted and compared",
            ("count what LoRA, IA3 and BEFT train by kind, and check it against peft's count",
             "compare methods at very different parameter counts on one plot",
             "read a verdict that depends on the machine that ran the baselines"),
            "notebooks 03-04", "nothing: counts on the real model, tables and a figure",
            "the peft sweep and grid, and the GPU re-runs of the baselines",
            ("BEFT on every linear layer trains like BitFit without LayerNorm biases. What does that comparison "
             "then measure?", "When would you choose LoRA over BitFit for a deployment?"),
            ("peft_sweep", "peft"),
            answers=("Whether the LayerNorm biases matter: they are the only difference between the two (notebook "
                     "08's derivation), so a gap between them is what those biases contribute.",
                     "When the task needs more than biases give (much data, or far from what the model learned), "
                     "and a few megabytes per task are affordable. BitFit fits many tasks, little data, and "
                     "mixed-task batches on one backbone.")),
    Chapter("09_expose_or_learn", "Expose or learn?",
            "the paper's own question answered by experiment: BitFit from random and shuffled encoders, linear "
            "probes of the frozen model, CKA before and after fine-tuning, and a toy vision transformer",
            ("say what 'expose' and 'learn' each predict, before looking at a result",
             "take pre-training away (random or shuffled weights) and read what BitFit loses beside Full-FT",
             "read a linear probe and a CKA curve",
             "write BitFit's freezing for a new architecture (a small ViT)"),
            "notebooks 01-03", "the toy ViT pre-trained and fine-tuned once (about a minute)",
            "experiment expose, the probes and CKA (measure probes, measure cka) and the toy ViT (measure vision)",
            ("The classroom model was trained on sentence pairs. Which GLUE tasks would you expect BitFit to "
             "expose most easily, and why?",
             "A probe on a random network scores above zero. What does that tell you about how to read probes?",
             "What result would convince you that fine-tuning *learns* rather than exposes?"),
            ("expose",),
            answers=("Tasks close to that training: STS-B and MRPC (similar meaning), and through its entailment "
                     "data, RTE. CoLA's grammaticality is far from it. Notebook 09 contrasts STS-B with CoLA, as an "
                     "exploratory reading.",
                     "Even random features keep something of the input, such as which words occur. A probe's "
                     "baseline is the same probe on a random network, not zero.",
                     "BitFit losing no more than Full-FT when pre-training is taken away, probes of the frozen "
                     "model reading little of the task, and large changes (low CKA) in the layers BitFit trains.")),
)


def chapter(stem: str) -> Chapter:
    """The chapter of ``notebooks/<stem>.ipynb``."""
    return next(c for c in CHAPTERS if c.stem == stem)


def time_line(stem: str) -> str:
    """A notebook's time in words: reading its prose at 200 words a minute (``readability``) and running it,
    from its committed copy's last execution."""
    notebook = chapter(stem).notebook
    reading = readability.measure(notebook).reading_minutes
    running = measured_seconds(notebook)
    ran = "not recorded yet" if running is None else (f"{running:.0f} s" if running < 90 else f"{running / 60:.0f} min")
    return f"about {reading:.0f} minutes to read; {ran} to run (its last execution, on 2 CPU cores)"


def opening(stem: str):
    """A notebook's opening, as Markdown for its first cells: what the student will be able to do, what to
    read first, and its time (``time_line``). The objectives and prerequisites live here, once."""
    from IPython.display import Markdown

    found = chapter(stem)
    goals = "\n".join(f"- {objective};" for objective in found.objectives[:-1]) + f"\n- {found.objectives[-1]}."
    return Markdown(f"**You will be able to**\n\n{goals}\n\n**Before this notebook**: {found.prerequisites}.\n\n"
                    f"**Time**: {time_line(stem)}.")


def measured_seconds(notebook: Path) -> float | None:
    """Wall time of the last execution of a committed notebook: the first code cell's start to the last
    one's reply, from the timestamps nbclient records; None when the notebook holds none."""
    cells = [cell for cell in json.loads(notebook.read_text())["cells"] if cell["cell_type"] == "code"]
    times = [cell.get("metadata", {}).get("execution", {}) for cell in cells]
    start, end = times[0].get("iopub.execute_input"), times[-1].get("shell.execute_reply")
    if not (start and end):
        return None
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def regeneration_cost(chapter: Chapter) -> dict[str, float | int | str]:
    """Runs, CPU core-hours, GPU hours and devices of the committed classroom records behind ``chapter``
    (its experiments' runs, or every run of its own results folder), from each record's measured wall time
    and threads (``Timing.core_seconds``)."""
    from ..experiments import grids
    from ..experiments.profiles import get_profile
    from ..experiments.results import ResultStore

    profile = get_profile("classroom")
    if chapter.records:
        records = ResultStore.committed(profile.name, chapter.records).records()
    else:
        configs = [config for name in chapter.experiments for config in grids.experiment_configs(profile, name)]
        records = ResultStore.committed(profile.name).load(configs)[0]
    on_gpu = [record.timing.memory_kind.startswith("cuda") for record in records]
    seconds = [record.timing.core_seconds for record in records]
    return {"runs": len(records),
            "cpu_core_hours": sum(s for s, gpu in zip(seconds, on_gpu, strict=True) if not gpu) / 3600,
            "gpu_hours": sum(s for s, gpu in zip(seconds, on_gpu, strict=True) if gpu) / 3600,
            "devices": ", ".join(sorted({record.timing.device for record in records}))}
