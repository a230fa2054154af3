"""The results store: one JSON file per finished run, written atomically, never silently reused.

Layout: ``<root>/<task>/<run_id>.json``, with ``root`` usually ``results/<profile>``. A file appears only
once its run has finished (written to a temporary file, then renamed), so a grid killed at any moment
leaves finished runs intact and nothing half-written. A file that is not valid JSON, not a run record
of this project, or a record of a different configuration stops the grid with a message that names it.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from .errors import BitFitError
from .training import SCHEMA, RunConfig


class ResultStore:
    """Finished run records under one folder."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path(self, config: RunConfig) -> Path:
        return self.root / config.task / f"{config.run_id}.json"

    def read(self, path: str | Path) -> dict:
        """A record from disk, validated; a clear error for a corrupt or foreign file."""
        path = Path(path)
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise BitFitError(
                f"corrupt results file {path}: not valid JSON ({error}). It holds no usable run: "
                "move it out of the results folder (or delete it) and run again to redo that run"
            ) from None
        if not isinstance(record, dict) or record.get("schema") != SCHEMA or "config" not in record:
            raise BitFitError(
                f"foreign file {path}: not a bitfit_edu run record (schema {SCHEMA!r}). "
                "Move it out of the results folder; the folder must hold only run records"
            )
        return record

    def finished(self, config: RunConfig) -> dict | None:
        """The record of ``config`` if that run has finished, else None."""
        path = self.path(config)
        if not path.exists():
            return None
        record = self.read(path)
        if record["config"] != json.loads(json.dumps(config.as_dict())):
            raise BitFitError(
                f"{path} holds a different configuration than its name says (edited by hand?). "
                "Move it out of the results folder and run again"
            )
        return record

    def write(self, record: dict) -> Path:
        """Write a record atomically: readers see the old state or the whole new file, never a part. The
        file is readable by all (0644) like any other committed file, not private like a temporary one."""
        config = RunConfig(**{**record["config"], "groups": _as_tuple(record["config"]["groups"])})
        path = self.path(config)
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp",
                                         delete=False, encoding="utf-8") as tmp:
            json.dump(record, tmp, indent=1)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.chmod(tmp.name, 0o644)
        os.replace(tmp.name, path)
        return path

    def records(self) -> list[dict]:
        """Every finished record under the root (a corrupt or foreign file raises)."""
        return [self.read(path) for path in sorted(self.root.rglob("*.json"))]


def _as_tuple(groups):
    return None if groups is None else tuple(groups)
