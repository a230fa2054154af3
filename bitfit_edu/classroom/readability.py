"""How a notebook reads: its prose measured against the course's writing targets (issue #42).

Only markdown cells count, and only their prose: code spans, math, tables, headings, links' targets and HTML
are left out before counting. A sentence ends at '.', '!' or '?' followed by a space or a line end, and each
list item is a sentence of its own. A *block* is a markdown cell, or the part of one under a heading (a reader
sees a new heading as a new unit). A notebook's "main flow" is every block outside the sections headed "How
we know this is sound" (the folded notes about provenance) and "Exercises": such a section runs to the next
heading of its level or higher.

The targets:

- reading time at ``WORDS_PER_MINUTE``;
- at most ``LONG_SHARE`` of the main flow's sentences longer than ``LONG_SENTENCE`` words;
- no block of the main flow longer than ``LONG_CELL`` words;
- learning objectives at the start (in its first markdown cells, or printed by ``course.opening`` in one of
  its first code cells) and takeaways at the end;
- at most ``PROVENANCE_SHARE`` of the main flow's sentences about provenance: how the evidence was made
  (machines, number formats, CPU kernels, costs, issues, the project's history) rather than what it shows.
  A sentence counts as provenance when it names one of ``PROVENANCE``'s words: a crude rule, but one that
  can be checked and that errs toward counting.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

WORDS_PER_MINUTE = 200
LONG_SENTENCE = 35
LONG_SHARE = 0.03
LONG_CELL = 200
FOLDED_HEADINGS = ("how we know this is sound", "exercises")
OBJECTIVES = re.compile(r"you will be able to|learning objectives|\bobjectives\b|course\.opening\(", re.IGNORECASE)
PROVENANCE_SHARE = 0.10
PROVENANCE = re.compile(r"\b(AVX|AVX2|AVX-512|bf16|bfloat16|fp32|kernels?|core-hours?|core-minutes?|GPU|H200|"
                        r"CPUs?|machines?|issue|emulated|autocast|session|commit(?:ted)?)\b", re.IGNORECASE)
TAKEAWAYS = re.compile(r"^#+\s*(key )?takeaways", re.IGNORECASE | re.MULTILINE)

_SKIPPED = [
    re.compile(r"```.*?```", re.DOTALL),  # fenced blocks (MyST directives included)
    re.compile(r"\$\$.*?\$\$", re.DOTALL),
    re.compile(r"\$[^$\n]+\$"),
    re.compile(r"`[^`\n]+`"),
    re.compile(r"<[^>\n]+>"),
    re.compile(r"^\s*\|.*\|\s*$", re.MULTILINE),  # table rows
    re.compile(r"^\s*#+ .*$", re.MULTILINE),  # headings
]
_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n\s*[-*+]\s+|\n\s*\d+\.\s+|\n{2,}")


def prose(markdown: str) -> str:
    """The prose of a markdown cell: code, math, tables, headings and HTML removed, links kept as their text."""
    text = _LINK.sub(r"\1", markdown)
    for pattern in _SKIPPED:
        text = pattern.sub(" ", text)
    return text


def sentences(markdown: str) -> list[list[str]]:
    """The sentences of a markdown cell's prose, each as its list of words."""
    parts = _SENTENCE_END.split("\n" + prose(markdown))
    return [words for part in parts if (words := re.findall(r"[\w'’.,%×-]+", part))]


@dataclass(frozen=True)
class Readability:
    """What a notebook's prose measures (see the module docstring)."""

    words: int
    main_sentences: int
    long_sentences: int
    provenance_sentences: int
    longest_sentence: int
    longest_cell: int
    objectives: bool
    takeaways: bool

    @property
    def reading_minutes(self) -> float:
        return self.words / WORDS_PER_MINUTE

    @property
    def long_share(self) -> float:
        return self.long_sentences / max(self.main_sentences, 1)

    @property
    def provenance_share(self) -> float:
        return self.provenance_sentences / max(self.main_sentences, 1)

    @property
    def targets_met(self) -> dict[str, bool]:
        """Each writing target, met or not."""
        return {f"sentences over {LONG_SENTENCE} words ≤ {LONG_SHARE:.0%}": self.long_share <= LONG_SHARE,
                f"no block over {LONG_CELL} words": self.longest_cell <= LONG_CELL,
                f"provenance ≤ {PROVENANCE_SHARE:.0%}": self.provenance_share <= PROVENANCE_SHARE,
                "objectives": self.objectives, "takeaways": self.takeaways}


def markdown_blocks(notebook: Path) -> list[str]:
    """The blocks of a notebook's (``.ipynb``) markdown cells: each cell cut before each of its headings."""
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    return [block for cell in cells if cell["cell_type"] == "markdown"
            for block in re.split(r"(?m)^(?=#+ )", "".join(cell["source"])) if block.strip()]


def measure(notebook: Path) -> Readability:
    """Measure a notebook's prose (``.ipynb``)."""
    cells = markdown_blocks(notebook)
    main, folded_level = [], None  # the level of the folded section we are in, if any
    for cell in cells:
        if heading := re.match(r"(#+)\s*(.*)", cell):
            level, title = len(heading.group(1)), heading.group(2).strip().lower()
            if any(title.startswith(name) for name in FOLDED_HEADINGS):
                folded_level = level if folded_level is None else min(folded_level, level)
            elif folded_level is not None and level <= folded_level:
                folded_level = None
        if folded_level is None:
            main.append(cell)
    main_words = [words for cell in main for words in sentences(cell)]
    main_sentences = [len(words) for words in main_words]
    code = [cell for cell in json.loads(notebook.read_text(encoding="utf-8"))["cells"] if cell["cell_type"] == "code"]
    opening = "\n".join(cells[:2]) + "".join("".join(cell["source"]) for cell in code[:3])
    return Readability(
        words=sum(len(words) for cell in cells for words in sentences(cell)),
        main_sentences=len(main_sentences),
        long_sentences=sum(length > LONG_SENTENCE for length in main_sentences),
        provenance_sentences=sum(bool(PROVENANCE.search(" ".join(words))) for words in main_words),
        longest_sentence=max(main_sentences, default=0),
        longest_cell=max((sum(len(words) for words in sentences(cell)) for cell in main), default=0),
        objectives=bool(OBJECTIVES.search(opening)),
        takeaways=any(TAKEAWAYS.search(cell) for cell in cells),
    )
