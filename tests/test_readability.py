"""How a notebook reads: the writing targets are measured on the prose alone, main flow apart from folded notes."""

import json

from bitfit_edu.classroom import readability
from bitfit_edu.classroom.readability import LONG_SENTENCE, measure, sentences


def notebook(tmp_path, *markdown: str):
    cells = [{"cell_type": "markdown", "metadata": {}, "source": text} for text in markdown]
    cells.insert(1, {"cell_type": "code", "metadata": {}, "source": "x = 1", "outputs": [], "execution_count": None})
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps({"cells": cells}))
    return path


def test_code_math_tables_and_link_targets_are_not_prose():
    text = "We add `b_q` to $W_q x$ here. See [the guide](https://example.org/a/b/c).\n\n| a | b |\n|---|---|"
    assert [len(words) for words in sentences(text)] == [4, 3]


def test_list_items_and_paragraphs_are_sentences_of_their_own():
    assert len(sentences("Intro:\n\n- one item\n- another item\n\n1. first\n2. second")) == 5


def test_long_sentences_count_in_the_main_flow_only(tmp_path):
    long = " ".join(["word"] * (LONG_SENTENCE + 1)) + "."
    path = notebook(tmp_path, "# Title\n\nYou will be able to read.", f"Short one. {long}",
                    f"## How we know this is sound\n\n{long}\n\n### A note inside it\n\n{long}",
                    "## Takeaways\n\n- it reads")
    found = measure(path)
    # the folded section runs to the next heading of its level: its two long sentences are not counted, the
    # takeaways after it are
    assert found.main_sentences == 4 and found.long_sentences == 1
    assert found.objectives and found.takeaways
    assert found.words > 3 * LONG_SENTENCE  # reading time counts every word, folded notes included


def test_a_heading_starts_a_new_block_and_targets_say_what_is_missed(tmp_path):
    words = " ".join(["word"] * 150)
    blocks = f"## One\n\n{words}.\n\n## Two\n\n{words}.\n\n## Takeaways"
    path = notebook(tmp_path, "# Title\n\nNo goals stated.", blocks)
    found = measure(path)
    assert found.longest_cell == 150 and found.takeaways and not found.objectives
    assert found.targets_met == {"sentences over 35 words ≤ 3%": False, "no block over 200 words": True,
                                 "provenance ≤ 10%": True, "objectives": False, "takeaways": True}
    assert found.reading_minutes == found.words / readability.WORDS_PER_MINUTE


def test_every_file_and_readme_section_a_notebook_points_to_exists():
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    readme_headings = set(re.findall(r"^#+ (.+)$", (root / "README.md").read_text(), flags=re.M))
    for source in sorted((root / "notebooks").glob("[0-9][0-9]_*.md")):
        text = source.read_text()
        pattern = r"`((?:site|notebooks|benchmarks|scripts|results)/[\w./-]+\.(?:md|py|ipynb|json))`"
        for path in re.findall(pattern, text):
            assert (root / path).exists(), f"{source.name} points to {path}, which does not exist"
        for section in re.findall(r"README's \"([^\"]+)\"", text):
            assert section in readme_headings, f"{source.name} points to the README's {section!r}, which it lacks"


def test_sentences_about_how_the_evidence_was_made_count_as_provenance(tmp_path):
    path = notebook(tmp_path, "# T\n\nBitFit trains the biases. The runs used bf16 kernels on an AVX-512 CPU. "
                              "It scores well.")
    found = measure(path)
    assert (found.provenance_sentences, found.main_sentences) == (1, 3)
    assert found.provenance_share == 1 / 3 and not found.targets_met["provenance ≤ 10%"]
