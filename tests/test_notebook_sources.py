"""Every notebook is paired with a MyST text source (jupytext), the file people edit; the two must agree."""

from pathlib import Path

import jupytext
import pytest

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("*.ipynb"))


def cells(notebook) -> list[tuple[str, str]]:
    """What a reader edits: each cell's type and source (outputs, ids and execution counts left out)."""
    return [(cell.cell_type, cell.source.strip()) for cell in notebook.cells]


def test_every_notebook_is_here():
    assert len(NOTEBOOKS) >= 8


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
