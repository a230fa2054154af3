"""The package's layering (site/guide/layout.md): a lower folder never imports a higher one, nor the command line,
anywhere in a module (a function's own imports count too)."""

import ast
from pathlib import Path

import bitfit_edu

PACKAGE = Path(bitfit_edu.__file__).parent
LAYERS = ("data", "core", "deploy", "experiments", "evidence", "classroom")
ON_TOP = ("cli", "commands", "__main__")


def imported_modules(path: Path) -> list[tuple[str, int]]:
    """Each package module ``path`` imports (as 'core.biases'), with its line, wherever the import sits."""
    own = path.relative_to(PACKAGE).with_suffix("").parts
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = list(own[:len(own) - node.level])
            target = base + (node.module.split(".") if node.module else [])
            if target:  # from ..core.biases import x, or from ..core import biases (counted as 'core')
                found.append((".".join(target), node.lineno))
            else:  # from . import cli, at the package's top
                found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom | ast.Import):
            names = [node.module] if isinstance(node, ast.ImportFrom) else [alias.name for alias in node.names]
            found += [(name.removeprefix("bitfit_edu."), node.lineno) for name in names
                      if name and name.startswith("bitfit_edu.")]
    return found


def upward_imports(path: Path) -> list[str]:
    """The imports of ``path`` that go up a layer, or from a layer to the command line."""
    parts = path.relative_to(PACKAGE).parts
    if len(parts) < 2 or parts[0] not in LAYERS:
        return []
    level = LAYERS.index(parts[0])
    wrong = []
    for module, line in imported_modules(path):
        top = module.split(".")[0]
        if top in ON_TOP or (top in LAYERS and LAYERS.index(top) > level):
            wrong.append(f"{path.relative_to(PACKAGE)}:{line} imports {module}")
    return wrong


def test_no_folder_imports_a_higher_one():
    wrong = [line for path in sorted(PACKAGE.rglob("*.py")) for line in upward_imports(path)]
    assert not wrong, "\n".join(wrong)


def test_the_check_sees_an_upward_import(tmp_path, monkeypatch):
    folder = tmp_path / "bitfit_edu" / "core"
    folder.mkdir(parents=True)
    module = folder / "sneaky.py"
    module.write_text("def f():\n    from ..evidence import tables\n    from bitfit_edu.cli import main\n")
    monkeypatch.setattr(f"{__name__}.PACKAGE", tmp_path / "bitfit_edu")
    assert upward_imports(module) == ["core/sneaky.py:2 imports evidence", "core/sneaky.py:3 imports cli"]
