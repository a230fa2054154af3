"""Lesson plans that fit their time, measured on the notebooks themselves.

A plan is a list of steps; a step names a notebook, the sections of it the class goes through (the rest is
skipped, and the plan says so), what the class does there, and the minutes it adds for discussion or
exercises. A step's time is measured, not guessed: reading its sections' prose at
``readability.WORDS_PER_MINUTE``, plus running their code cells as long as they took in the committed
notebook's last execution, plus the minutes it adds. A plan fits when its steps add up to no more than its
length. The instructor guide prints every plan with these times (``site/pages.py``), and a test checks that
each fits.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import datetime

from . import readability
from .course import chapter

OPENING = "opening"  # a notebook's part before its first section: the title, the question, the objectives


def _cell_seconds(cell: dict) -> float:
    timing = cell.get("metadata", {}).get("execution", {})
    start, end = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds() if start and end else 0.0


def sections(stem: str) -> dict[str, tuple[int, float]]:
    """Each section of a committed notebook (a '## ' heading; ``OPENING`` before the first one): the words of its
    prose and the seconds its code cells ran in the last execution."""
    found: dict[str, list[float]] = {OPENING: [0, 0.0]}
    current = OPENING
    for cell in json.loads(chapter(stem).notebook.read_text(encoding="utf-8"))["cells"]:
        if cell["cell_type"] == "code":
            found[current][1] += _cell_seconds(cell)
            continue
        for block in re.split(r"(?m)^(?=#+ )", "".join(cell["source"])):
            if heading := re.match(r"## (.+)", block):
                current = heading.group(1).strip()
                found.setdefault(current, [0, 0.0])
            found[current][0] += sum(len(words) for words in readability.sentences(block))
    return {name: (int(words), seconds) for name, (words, seconds) in found.items()}


@dataclass(frozen=True)
class Step:
    """Part of a lesson: ``stem``'s sections named in ``read`` (their headings' beginnings), and ``activity``,
    what the class does, which adds ``extra`` minutes of discussion or exercises."""

    stem: str
    read: tuple[str, ...]
    activity: str
    extra: float = 0.0

    def chosen(self) -> list[str]:
        """The notebook's sections this step goes through, in the notebook's order."""
        found = sections(self.stem)
        missing = [start for start in self.read if not any(name.startswith(start) for name in found)]
        if missing:
            raise ValueError(f"{self.stem} has no section starting {missing}: its sections are {list(found)}")
        return [name for name in found if any(name.startswith(start) for start in self.read)]

    def measured(self) -> float:
        """Minutes of reading and running the chosen sections."""
        found = sections(self.stem)
        words = sum(found[name][0] for name in self.chosen())
        seconds = sum(found[name][1] for name in self.chosen())
        return words / readability.WORDS_PER_MINUTE + seconds / 60

    def minutes(self) -> float:
        return self.measured() + self.extra


@dataclass(frozen=True)
class Plan:
    """A lesson of ``length`` minutes."""

    title: str
    length: int
    steps: tuple[Step, ...]

    def minutes(self) -> float:
        return sum(step.minutes() for step in self.steps)

    def fits(self) -> bool:
        return self.minutes() <= self.length

    def skipped(self) -> dict[str, list[str]]:
        """Per notebook of the plan, the sections no step goes through (its exercises aside)."""
        stems = dict.fromkeys(step.stem for step in self.steps)
        read = {name for step in self.steps for name in step.chosen()}
        return {stem: [name for name in sections(stem) if name not in read and name not in (OPENING, "Exercises")]
                for stem in stems}

    def markdown(self) -> str:
        """The plan as the instructor guide prints it: each step's minutes and sections, then what it skips."""
        measured = sum(step.measured() for step in self.steps)
        allowed = sum(step.extra for step in self.steps)
        lines = [f"**{self.length} minutes: {self.title}** {math.ceil(self.minutes())} minutes in all: "
                 f"{math.ceil(measured)} measured for reading and running (at {readability.WORDS_PER_MINUTE} words "
                 f"a minute, cells as long as their last execution took), and {allowed:.0f} allowed for "
                 f"discussion and exercises. {'It fits.' if self.fits() else 'It is too long.'}\n"]
        for index, step in enumerate(self.steps, 1):
            read = ", ".join("the opening" if name == OPENING else f"*{name}*" for name in step.chosen())
            lines.append(f"{index}. ({math.ceil(step.minutes())} min) Notebook {chapter(step.stem).number}, "
                         f"{read}: {step.activity}")
        skips = [f"notebook {chapter(stem).number}: " + ", ".join(f"*{name}*" for name in names)
                 for stem, names in self.skipped().items() if names]
        if skips:
            lines.append(f"\nSkipped in class (students can read them after): {'; '.join(skips)}.")
        return "\n".join(lines) + "\n"


PLANS = (
    Plan("train 0.1% of a model.", 45, (
        Step("01_transformer_equations", (OPENING, "Attention", "Where every bias enters", "The bias census"),
             "where each bias enters and why b_k cannot matter; ask the first discussion question.", extra=5),
        Step("02_bias_freezing", ("What BitFit trains", "The training loop, written out", "Pitfalls",
                                  "A BitFit run, live", "Takeaways"),
             "freezing by exact names, the loop written out and its pitfalls; students start the live BitFit run "
             "while you discuss them.", extra=5),
        Step("07_lab", (OPENING, "The lab", "A run, as if Train were pressed", "Takeaways"),
             "students predict the share of the model their choice of biases trains, then train it; collect "
             "the scores on the board.", extra=10),
        Step("07_lab", ("Exercises",), "exercises `07.which_more` and `07.trainable_percent` (code).", extra=7),
    )),
    Plan("does the claim hold?", 90, (
        Step("01_transformer_equations", ("Where every bias enters",), "why b_k cannot matter, briefly.", extra=3),
        Step("02_bias_freezing", ("What BitFit trains", "The training loop, written out"),
             "freezing by exact names and the loop written out.", extra=4),
        Step("03_glue_runs", (OPENING, "Part 1", "Part 2", "What the numbers say", "How many seeds", "Takeaways"),
             "one task from files to a score; the main table beside the paper's; stop at the declared protocol "
             "and ask why it is the last epoch; then the verdicts and how many seeds a verdict needs.", extra=12),
        Step("05_visualizations", ("1. Which biases move", "3. The generalization gap", "4. Training-set size"),
             "in groups: one group reads the bias-change figure, one the gap, one the size curve; each reports "
             "one verdict and the evidence behind it.", extra=10),
        Step("06_deployment", ("1. A task as a file", "2. One backbone", "3. A batch of mixed tasks"),
             "one backbone, many tasks: the delta file, switching and the mixed batch.", extra=4),
        Step("03_glue_runs", ("Exercises",), "exercises `03.seeds_at_zero` and `03.welch_interval` (code); "
             "discussion.", extra=10),
    )),
    Plan("expose or learn? (after notebooks 01-03)", 45, (
        Step("09_expose_or_learn", (OPENING, "1. Two stories"),
             "the two stories; every student writes a prediction (exercise `09.who_loses_more`) before seeing any "
             "result.", extra=4),
        Step("09_expose_or_learn", ("2. Meet the classroom model", "3. Taking pre-training away"),
             "the classroom model's history and how pre-training is taken away; ask which GLUE tasks the model "
             "should find easy, and why.", extra=4),
        Step("09_expose_or_learn", ("4. What BitFit loses", "5. What the frozen network", "6. How much"),
             "the ablation, the probes and CKA; stop after each figure and ask what the other story would have "
             "predicted.", extra=6),
        Step("09_expose_or_learn", ("7. Beyond language",),
             "students write BitFit's freezing for the toy ViT (exercise `09.vit_bitfit`) and run the live demo.",
             extra=6),
        Step("09_expose_or_learn", ("8. The answer", "Takeaways"),
             "the answer and its limits; exercise `09.underfitting`.", extra=4),
    )),
)
