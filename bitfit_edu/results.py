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
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import BitFitError
from .locations import repo_root
from .runs import SCHEMA, RunConfig

VERSION_1 = "bitfit_edu.run/1"
READABLE_SCHEMAS = (VERSION_1, SCHEMA)
REQUIRED_FIELDS = ("run_id", "config", "label", "params", "epochs", "best_epoch", "best", "last", "timing")


class ResultStore:
    """Finished run records under one folder."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    @classmethod
    def committed(cls, profile: str, kind: str | None = None) -> ResultStore:
        """The checkout's committed records: ``results/<profile>``, or ``results/<kind>/<profile>``."""
        return cls(repo_root() / "results" / (kind or "") / profile)

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
        except IsADirectoryError:
            raise BitFitError(f"{path} is a folder named like a run record: "
                              "move it out of the results folder") from None
        schema = record.get("schema") if isinstance(record, dict) else None
        if isinstance(schema, str) and schema.startswith("bitfit_edu.run/") and schema not in READABLE_SCHEMAS:
            raise BitFitError(f"{path} is a run record of schema {schema!r}, which this version of bitfit_edu "
                              f"cannot read (it reads {', '.join(READABLE_SCHEMAS)}): update the package")
        if schema not in READABLE_SCHEMAS or "config" not in record:
            raise BitFitError(
                f"foreign file {path}: not a bitfit_edu run record (schema {SCHEMA!r}). "
                "Move it out of the results folder; the folder must hold only run records"
            )
        missing = [field for field in REQUIRED_FIELDS if field not in record]
        if missing:
            raise BitFitError(f"incomplete run record {path}: no {', '.join(missing)}. Move it out of the results "
                              "folder and run again to redo that run")
        return upgrade(record)

    def finished(self, config: RunConfig) -> dict | None:
        """The record of ``config`` if that run has finished, else None."""
        path = self.path(config)
        if not path.exists():
            return None
        record = self.read(path)
        if RunConfig.from_dict(record["config"]) != RunConfig.from_dict(config.as_dict()):  # groups: list or tuple
            raise BitFitError(
                f"{path} holds a different configuration than its name says (edited by hand?). "
                "Move it out of the results folder and run again"
            )
        return record

    def check_writable(self) -> None:
        """Fail before any training if records cannot be written here (a file in the way, a read-only folder)."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=self.root):
                pass
        except OSError as error:
            raise BitFitError(f"cannot write run records to {self.root}: {error.strerror}. Choose another "
                              "--results folder") from None

    def write(self, record: dict) -> Path:
        """Write a record atomically: readers see the old state or the whole new file, never a part. The
        file is readable by all (0644) like any other committed file, not private like a temporary one.
        If the write fails (a full disk, say), the record is kept in the system's temporary folder and the
        error says where, so a finished run is never lost."""
        path = self.path(RunConfig.from_dict(record["config"]))
        tmp = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp",
                                             delete=False, encoding="utf-8") as tmp:
                json.dump(record, tmp, indent=1)
                tmp.flush()
                os.fsync(tmp.fileno())
            os.chmod(tmp.name, 0o644)
            os.replace(tmp.name, path)
        except OSError as error:
            kept = Path(tempfile.gettempdir()) / path.name
            kept.write_text(json.dumps(record, indent=1), encoding="utf-8")
            raise BitFitError(f"could not write {path} ({error.strerror}); the finished record is kept in {kept}: "
                              f"copy it to {path.parent}/ once there is room") from None
        finally:  # a write that failed or was interrupted leaves no partial file behind
            if tmp is not None and os.path.exists(tmp.name):
                os.unlink(tmp.name)
        return path

    @contextmanager
    def claim(self, config: RunConfig) -> Iterator[bool]:
        """Claim a run before training it, so that two workers on one folder never train the same run:
        yields False when a live process holds the claim. A claim left by a process that died is taken over."""
        lock = self.path(config).with_suffix(".lock")
        lock.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                descriptor = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                break
            except FileExistsError:
                if _process_alive(lock):
                    yield False
                    return
                lock.unlink(missing_ok=True)  # stale: its process is gone
        else:
            yield False
            return
        try:
            os.write(descriptor, str(os.getpid()).encode())
            os.close(descriptor)
            yield True
        finally:
            lock.unlink(missing_ok=True)

    def records(self) -> list[dict]:
        """Every finished record under the root (a corrupt or foreign file raises)."""
        return [self.read(path) for path in sorted(self.root.rglob("*.json"))]


def _process_alive(lock: Path) -> bool:
    """Whether the process whose id a lock file holds still runs (a lock that cannot be read counts as live)."""
    try:
        pid = lock.read_text().strip()
        if not pid:  # being written by the process that just created it, unless that one died long ago
            return time.time() - lock.stat().st_mtime < 60
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError, FileNotFoundError):
        return False
    except OSError:  # e.g. PermissionError: the process exists under another user
        return True
    return True


def upgrade(record: dict) -> dict:
    """A record of any readable version in the shape of the current one; the file is never rewritten.

    Version 1 records were written before some fields existed. The run config's step budget
    (``max_steps``, ``eval_every``) was then always unused, and is left out of every record's config while
    unused (so ids stay the same); ``best_step`` belongs to step budgets only; and a run without
    ``timing.matrix_products`` ran before bf16 products could be emulated, so its bf16 products came from
    hardware kernels (PyTorch's own fallback would have taken some 30 times the time those records show).
    """
    if record["schema"] == VERSION_1:
        record = {**record, "schema": SCHEMA, "schema_read_from": VERSION_1}
        record.setdefault("best_step", None)
        bf16 = record["config"].get("bf16", False)
        record["timing"] = {"matrix_products": "bf16" if bf16 else "fp32", **record["timing"]}
    return record
