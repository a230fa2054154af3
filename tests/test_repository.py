"""The public address lives in pyproject.toml; every badge and Colab cell must agree with it."""

import importlib.util
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("sync_repository", ROOT / "scripts" / "sync_repository.py")
sync_repository = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sync_repository)


def test_every_badge_and_colab_cell_points_at_the_repository():
    target = sync_repository.repository()
    for path in sync_repository.documents():
        found = sync_repository.addresses(path.read_text())
        assert found, f"{path.name} carries no repository address"
        wrong = sorted(set(found) - {target})
        assert not wrong, (f"{path.name} links to {wrong}, pyproject.toml says {target}: "
                           "run python scripts/sync_repository.py")


def test_every_notebook_opens_with_the_colab_cell():
    target = sync_repository.repository()
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        first_code = next(c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code")
        source = "".join(first_code["source"])
        assert '"google.colab" in sys.modules' in source, f"{path.name}: the first code cell is not the Colab cell"
        assert f"git clone -q --depth 1 https://github.com/{target}" in source, path.name


def test_addresses_reads_every_form():
    text = ("[b](https://mybinder.org/v2/gh/a/b/main) [c](https://colab.research.google.com/github/c/d/blob/x.ipynb)"
            " git clone https://github.com/e/f")
    assert sorted(sync_repository.addresses(text)) == ["a/b", "c/d", "e/f"]


def test_every_subpackage_is_installed():
    """pyproject's package list must name every folder of the package, or a wheel (Binder, Colab) lacks it."""
    import tomllib

    root = Path(__file__).resolve().parents[1]
    listed = set(tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(init.parent.relative_to(root).parts) for init in (root / "bitfit_edu").rglob("__init__.py")}
    assert listed == found


def test_one_version_for_the_package_the_citation_and_the_changelog():
    import bitfit_edu

    root = Path(__file__).resolve().parents[1]
    citation = re.search(r"^version: (\S+)$", (root / "CITATION.cff").read_text(), re.MULTILINE).group(1)
    latest = re.search(r"^## (\S+) ", (root / "CHANGELOG.md").read_text(), re.MULTILINE).group(1)
    assert citation == latest == bitfit_edu.__version__
    assert 'dynamic = ["version"]' in (root / "pyproject.toml").read_text()
