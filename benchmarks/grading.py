"""Time grading an honest class: 40 students hand in notebook 01, each graded in its own sandbox.

Each student's notebook is the student edition of notebook 01 with every exercise answered as a student
would: the letters and numbers typed in, the function written. Every fourth student gets one answer wrong, so
the grades have both kinds. Grading runs as a teacher runs it (``classroom grade``: a fresh kernel per
notebook, the smoke profile, bubblewrap); this prints the wall time per notebook and for the class, checks that
every row is what the student answered, and writes ``results/benchmarks/grading.json``:

    python benchmarks/grading.py              # 40 students
    python benchmarks/grading.py --students 4 # a quick look

Run it on a quiet machine: anything else on the cores slows grading down.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import platform
import tempfile
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import nbformat

from bitfit_edu.classroom import grading
from bitfit_edu.classroom.exercises import EXERCISES
from bitfit_edu.classroom.key import ANSWERS
from bitfit_edu.core import precision
from bitfit_edu.data.locations import results_folder

NOTEBOOK = "01_transformer_equations.ipynb"
CHAPTER = "01."


def typed(key: str, wrong: bool) -> str:
    """The answer a student types for ``key``: the right one, or (``wrong``) another letter or number."""
    exercise = EXERCISES[key]
    right = exercise.answer()
    if exercise.choices:
        return repr(next(letter for letter in exercise.choices if letter != right) if wrong else right)
    return repr(int(right) + 1 if wrong else int(right))


def answered(notebook, wrong_key: str | None):
    """The student edition with every exercise of the notebook answered (``wrong_key`` wrongly)."""
    for cell in notebook.cells:
        if not grading.is_exercise_cell(cell):
            continue
        key = next(k for k in EXERCISES if f'"{k}"' in cell.source)
        if EXERCISES[key].function is not None:
            solution = ANSWERS[key].solution
            name = solution.__name__
            body = f"def {name}(*args):\n    return 0\n" if key == wrong_key else inspect.getsource(solution)
            cell.source = f"import math\nimport torch\n\n{body}\n\nexercises.check({key!r}, {name})"
        else:
            cell.source = f"exercises.check({key!r}, {typed(key, key == wrong_key)})"
    return notebook


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", type=int, default=40)
    args = parser.parse_args()
    keys = [key for key in EXERCISES if key.startswith(CHAPTER)]
    with tempfile.TemporaryDirectory() as folder:
        edition, submissions = Path(folder, "edition"), Path(folder, "submissions")
        grading.student_edition(edition)
        expected = {}
        for number in range(args.students):
            student = f"student_{number + 1:02d}"
            wrong_key = keys[number // 4 % len(keys)] if number % 4 == 3 else None
            notebook = answered(nbformat.read(edition / NOTEBOOK, as_version=4), wrong_key)
            (submissions / student).mkdir(parents=True)
            nbformat.write(notebook, submissions / student / NOTEBOOK)
            expected.update({(student, key): "wrong" if key == wrong_key else "right" for key in keys})
        start = time.perf_counter()
        rows = grading.grade(submissions, submissions / "grades.csv")
        seconds = time.perf_counter() - start
    found = {(row.student, row.exercise): row.result for row in rows}
    mismatched = sorted(f"{student} {key}: {found.get((student, key))}, not {result}"
                        for (student, key), result in expected.items() if found.get((student, key)) != result)
    report = {
        "what": f"grading {args.students} honest submissions of notebook 01 (classroom grade, bubblewrap sandbox, "
                "smoke profile), one after another",
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cores": os.cpu_count(), "cpu": platform.processor() or platform.machine(),
                    "hardware": precision.hardware_name(), "bf16 kernels": precision.native_bf16()},
        "students": args.students, "exercises per notebook": len(keys), "rows": len(rows),
        "results": dict(Counter(row.result for row in rows)), "rows not as answered": mismatched,
        "wall seconds": round(seconds, 1), "seconds per notebook": round(seconds / args.students, 1),
    }
    out = results_folder("benchmarks", "grading.json")
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{args.students} notebooks graded in {seconds / 60:.1f} min ({seconds / args.students:.1f} s each); "
          f"{len(rows)} rows, {len(mismatched)} not as answered. Written to {out}")


if __name__ == "__main__":
    main()
