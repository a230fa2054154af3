"""Write the repository's public address into every badge and Colab cell.

The address lives in one place, ``[project.urls] Repository`` in ``pyproject.toml``. To publish the
project under another address, change that line and run ``python scripts/sync_repository.py``;
``tests/test_repository.py`` fails while any badge or Colab cell disagrees with it.
"""

from __future__ import annotations

import re
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
# every form the address takes: the clone URL, Binder's gh/OWNER/NAME, Colab's github/OWNER/NAME
ADDRESS_FORMS = (r"(github\.com/)", r"(mybinder\.org/v2/gh/)", r"(colab\.research\.google\.com/github/)")
OWNER_NAME = r"[\w.-]+/[\w.-]+"


def repository() -> str:
    """'owner/name' from pyproject.toml's Repository URL."""
    url = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]["Repository"]
    return url.removeprefix("https://github.com/").removesuffix(".git").strip("/")


def addresses(text: str) -> list[str]:
    """Every 'owner/name' that ``text`` links to in one of the forms above."""
    return [m.group(2) for form in ADDRESS_FORMS for m in re.finditer(form + f"({OWNER_NAME})", text)]


def documents() -> list[Path]:
    """The files that carry the address: the README and every notebook, executed and as its text source."""
    notebooks = ROOT / "notebooks"
    return [ROOT / "README.md", *sorted(notebooks.glob("*.ipynb")), *sorted(notebooks.glob("*.md"))]


def sync() -> list[Path]:
    """Rewrite every address in the documents to pyproject's; returns the files changed."""
    target, changed = repository(), []
    for path in documents():
        text = path.read_text()
        new = text
        for form in ADDRESS_FORMS:
            new = re.sub(form + OWNER_NAME, lambda m: m.group(1) + target, new)
        if new != text:
            path.write_text(new)
            changed.append(path)
    return changed


if __name__ == "__main__":
    for path in sync():
        print(f"rewrote {path.relative_to(ROOT)}")
    print(f"every badge and Colab cell points at {repository()}")
