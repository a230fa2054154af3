"""Every notebook is paired with a MyST text source (jupytext), the file people edit; the two must agree."""

from pathlib import Path

import jupytext
import pytest

FOLDER = Path(__file__).parents[1] / "notebooks"
NOTEBOOKS = sorted(FOLDER.glob("*.ipynb"))
TAGS_THAT_MATTER = ("answer", "parameters", "slides", "verdicts")  # what the student edition, papermill, the slides
# and the site read from a cell's tags


def cells(notebook) -> list[tuple[str, str, tuple[str, ...]]]:
    """What a reader edits: each cell's type, source and the tags that decide what happens to it (outputs, ids
    and execution counts left out)."""
    return [(cell.cell_type, cell.source.strip(),
             tuple(tag for tag in cell.metadata.get("tags", []) if tag in TAGS_THAT_MATTER)) for cell in notebook.cells]


def test_every_notebook_is_here_and_paired():
    assert len(NOTEBOOKS) >= 8
    sources = {path.stem for path in FOLDER.glob("*.md")}
    executed = {path.stem for path in NOTEBOOKS}
    assert not sources - executed, f"text sources without a notebook: {sorted(sources - executed)}"
    assert not executed - sources, f"notebooks without a text source: {sorted(executed - sources)}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_and_its_source_agree(path):
    source = path.with_suffix(".md")
    assert source.is_file(), f"{path.name} has no text source: run `jupytext --set-formats ipynb,md:myst {path}`"
    executed, text = jupytext.read(path), jupytext.read(source)
    assert executed.metadata["jupytext"]["formats"] == "ipynb,md:myst"
    assert cells(executed) == cells(text), (
        f"{path.name} and {source.name} differ: edit the .md, run `jupytext --sync {source}`, then execute the "
        "notebook (CONTRIBUTING.md)")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_cell_ids_are_unique(path):
    ids = [cell.get("id") for cell in jupytext.read(path).cells]
    assert all(ids) and len(set(ids)) == len(ids)
