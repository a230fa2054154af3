"""The results store: one JSON file per finished run, written atomically, never silently reused.

Layout: ``<root>/<task>/<run_id>.json``, with ``root`` usually ``results/<profile>``. A file appears only
once its run has finished (written to a temporary file, then renamed), so a grid killed at any moment
leaves finished runs intact and nothing half-written. A file that is not valid JSON, not a run record
of this project, or a record of a different configuration stops the grid with a message that names it.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..data.locations import results_folder
from ..errors import BitFitError
from .runs import RunConfig, RunRecord


class ResultStore:
    """Finished run records under one folder."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    @classmethod
    def committed(cls, profile: str, kind: str | None = None) -> ResultStore:
        """The checkout's committed records: ``results/<profile>``, or ``results/<kind>/<profile>``."""
        return cls(results_folder(kind or "", profile))

    @classmethod
    def in_folder(cls, results: str | Path, profile: str) -> ResultStore:
        """The store of a profile's runs in a results folder chosen by the user (``--results``)."""
        return cls(Path(results) / profile)

    def path(self, config: RunConfig) -> Path:
        return self.root / config.task / f"{config.run_id}.json"

    def read(self, path: str | Path) -> RunRecord:
        """A record from disk, validated and read through ``RunRecord.from_json`` (every schema version);
        a clear error for a corrupt or foreign file."""
        path = Path(path)
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise BitFitError(
                f"corrupt results file {path}: not valid JSON ({error}). It holds no usable run: "
                "move it out of the results folder (or delete it) and run again to redo that run"
            ) from None
        except IsADirectoryError:
            raise BitFitError(f"{path} is a folder named like a run record: "
                              "move it out of the results folder") from None
        if not isinstance(stored, dict):
            stored = {}
        return RunRecord.from_json(stored, source=str(path))

    def finished(self, config: RunConfig) -> RunRecord | None:
        """The record of ``config`` if that run has finished, else None."""
        path = self.path(config)
        if not path.exists():
            return None
        record = self.read(path)
        if record.config != RunConfig.from_dict(config.as_dict()):  # as stored: groups a tuple, names normalised
            raise BitFitError(
                f"{path} holds a different configuration than its name says (edited by hand?). "
                "Move it out of the results folder and run again"
            )
        return record

    def load(self, configs: list[RunConfig]) -> tuple[list[RunRecord], list[RunConfig]]:
        """The records of the finished configurations, and the configurations still to run. Tables are
        built from exactly an experiment's configs, so other runs in the same folder (a sweep, a check
        with other settings) never leak into them (``runner.load_grid`` trains the missing ones first)."""
        records, missing = [], []
        for config in configs:
            record = self.finished(config)
            if record is None:
                missing.append(config)
            else:
                records.append(record)
        return records, missing

    def check_writable(self) -> None:
        """Fail before any training if records cannot be written here (a file in the way, a read-only folder)."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=self.root):
                pass
        except OSError as error:
            raise BitFitError(f"cannot write run records to {self.root}: {error.strerror}. Choose another "
                              "--results folder") from None

    def write(self, record: RunRecord) -> Path:
        """Write a record atomically: readers see the old state or the whole new file, never a part. The
        file is readable by all (0644) like any other committed file, not private like a temporary one.
        If the write fails (a full disk, say), the record is kept in the system's temporary folder and the
        error says where, so a finished run is never lost."""
        path = self.path(record.config)
        tmp = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp",
                                             delete=False, encoding="utf-8") as tmp:
                json.dump(record.to_json(), tmp, indent=1)
                tmp.flush()
                os.fsync(tmp.fileno())
            os.chmod(tmp.name, 0o644)
            os.replace(tmp.name, path)
        except OSError as error:
            kept = Path(tempfile.gettempdir()) / path.name
            kept.write_text(json.dumps(record.to_json(), indent=1), encoding="utf-8")
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

    def records(self) -> list[RunRecord]:
        """Every finished record under the root (a corrupt or foreign file raises)."""
        return [self.read(path) for path in sorted(self.root.rglob("*.json"))]

    def checked_records(self) -> tuple[list[RunRecord], list[tuple[Path, str]]]:
        """Every run under the root, once, and each file left out with why: a file that is not a readable
        record, one whose name is not its configuration's run id (copied, renamed or edited by hand), a second
        copy of a run, and a run whose scores are not scores (NaN, or outside -1..1)."""
        records, left_out, seen = [], [], set()
        for path in sorted(self.root.rglob("*.json")):
            try:
                record = self.read(path)
            except BitFitError as error:
                left_out.append((path, str(error)))
                continue
            except Exception as error:  # a malformed record of any other kind: that file, not the report
                left_out.append((path, f"not a readable run record ({type(error).__name__}: {error})"[:300]))
                continue
            scores = [record.best.score, record.last.score, *(e.dev.score for e in record.epochs)]
            if path.stem != record.config.run_id or record.run_id != record.config.run_id:
                left_out.append((path, "its name is not its configuration's run id (copied, renamed or edited "
                                       f"by hand; its configuration's is {record.config.run_id})"))
            elif record.config.run_id in seen:
                left_out.append((path, "a second copy of a run already counted"))
            elif not all(isinstance(s, int | float) and math.isfinite(s) and -1 <= s <= 1 for s in scores):
                left_out.append((path, "a score that is not a score (NaN, or outside -1..1)"))
            else:
                seen.add(record.config.run_id)
                records.append(record)
        return records, left_out


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

