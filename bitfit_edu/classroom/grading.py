"""The student edition of the notebooks, and grading what students hand back.

``student_edition`` writes the course notebooks without their answers: every cell tagged ``answer`` is
dropped, and each exercise cell keeps its source (``exercises.check(key, None)``) with its outputs
cleared. With the package that holds the answer key, ``exercises.check`` works in them as in the full
notebooks (self-study). For a graded class, ``student_build`` writes a whole course folder to install
instead: the package without its answer key, the committed results and the student notebooks.

``grade`` executes each submitted notebook in a fresh kernel (nbclient, the smoke profile, a time limit
per notebook, in a process of its own, so that a loop that never ends or a kernel that dies stops only
that notebook) and writes one row per student and exercise: right, wrong or not attempted, and why. The
answers are judged here, by ``Exercise.failure``, never from what the notebook printed: before running,
each ``exercises.check(key, answer)`` call is rewritten to hand its answer to a recorder whose printed
lines carry a random token the notebook cannot know. A coding exercise's answer is a function: the recorder
writes down what it returns on the exercise's inputs (``coding``), and those outputs are judged here.
Calls under another name (``import ... exercises as ex``, ``from ...exercises import check``) and answers given
as ``answer=`` are recorded alike.

Nothing one notebook does stops the class: every student folder present when grading starts gets rows (a
symlinked notebook or folder, an empty folder, a notebook that fails to grade: a row that says why); an answer
that cannot be read or judged is that exercise's "not graded"; grades.csv is replaced whole after each notebook.

Each submission runs in a bubblewrap sandbox (``sandbox_command``): a read-only file system, its own small /tmp,
no network, its own process namespace, limits on memory, on a file's size and on all it writes. The
submissions and the grades are hidden from it, and so is every copy of the answers it could read in the
teacher's course: the key (``key.py`` and its compiled copies), the git history, a built site; the course's
notebooks are replaced by the student edition.
"""

from __future__ import annotations

import ast
import contextlib
import csv
import json
import os
import re
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from copy import deepcopy
from dataclasses import asdict, dataclass
from pathlib import Path

import nbformat

from ..data import locations
from ..data.locations import CHECKOUT, course_root
from ..errors import BitFitError
from .exercises import EXERCISES, answer_key, key_file

ANSWER_TAG = "answer"
CHECK_CALL = re.compile(r"\bexercises\.check\(")
MODULE = "bitfit_edu.classroom.exercises"
RECORDER = "__bitfit_edu_grade__"
DEFAULT_TIMEOUT = 600


def is_exercise_cell(cell) -> bool:
    return cell.cell_type == "code" and bool(CHECK_CALL.search(cell.source))


def course_notebooks() -> Path | None:
    """The course's notebooks folder (``locations.course_root``), if it has one."""
    notebooks = course_root() / "notebooks"
    return notebooks if notebooks.is_dir() else None


def student_edition(out: Path, notebooks: Path | None = None) -> list[Path]:
    """Write every course notebook to ``out`` without its answer cells, exercise outputs cleared."""
    notebooks = notebooks or course_notebooks() or course_root() / "notebooks"
    sources = sorted(notebooks.glob("[0-9][0-9]_*.ipynb"))
    if not sources:
        raise BitFitError(f"no course notebooks (NN_name.ipynb) in {notebooks}: run this from a checkout")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for source in sources:
        notebook = nbformat.read(source, as_version=4)
        notebook.cells = [cell for cell in notebook.cells if ANSWER_TAG not in cell.metadata.get("tags", [])]
        for cell in notebook.cells:
            if is_exercise_cell(cell):
                cell.outputs, cell.execution_count = [], None
        nbformat.write(notebook, out / source.name)
        written.append(out / source.name)
    return written


COURSE_FILES = ("pyproject.toml", "README.md", "LICENSE")  # what installing a course folder needs
LEFT_OUT_OF_RESULTS = ("*.lock", ".*.tmp", "smoke")


def student_build(out: Path) -> list[Path]:
    """A course folder for a graded class, for students to install (``pip install -e``) in place of the
    teacher's: the package without its answer key, the committed results, and the student notebooks."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BitFitError(f"{out} is not an empty folder: give a new folder for the student build")
    root, key = course_root(), key_file()
    package = Path(__file__).resolve().parents[1]
    shutil.copytree(package, out / package.name, ignore=lambda folder, names: [
        name for name in names if name == "__pycache__" or Path(folder, name) == key])
    shutil.copytree(root / "results", out / "results", ignore=shutil.ignore_patterns(*LEFT_OUT_OF_RESULTS))
    for name in COURSE_FILES:
        if (root / name).is_file():
            shutil.copy2(root / name, out / name)
    return student_edition(out / "notebooks")


@dataclass(frozen=True)
class Grade:
    """One row of the grades: a student's result on one exercise, and why."""

    student: str
    notebook: str
    exercise: str
    result: str  # 'right', 'wrong', 'not attempted' or 'not graded'
    why: str


def _check_names(sources: list[str]) -> tuple[set[str], set[str]]:
    """The names a notebook gives the exercises module (``exercises``, or ``ex`` after ``import ... as ex``) and
    its ``check`` function (after ``from ...exercises import check``), from its import statements."""
    modules, functions = {"exercises"}, set()
    for source in sources:
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "bitfit_edu.classroom":
                modules |= {a.asname or a.name for a in node.names if a.name == "exercises"}
            elif isinstance(node, ast.ImportFrom) and node.module == MODULE:
                functions |= {a.asname or a.name for a in node.names if a.name == "check"}
            elif isinstance(node, ast.Import):
                modules |= {a.asname for a in node.names if a.name == MODULE and a.asname}
    return modules, functions


def _call_pattern(modules: set[str], functions: set[str]) -> re.Pattern:
    """A call of ``check`` under any of the notebook's names for it."""
    names = [rf"\b{re.escape(m)}\.check" for m in sorted(modules)] + [rf"(?<![\w.]){re.escape(f)}" for f in
                                                                    sorted(functions)]
    return re.compile(rf"(?:{'|'.join(names)})\(")


def _check_calls(source: str, pattern: re.Pattern = CHECK_CALL) -> list[tuple[str, bool]]:
    """(key, attempted) for each check call (``pattern``) in a cell, the answer given by position or as
    ``answer=``; answer None or missing: not attempted."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return [(key, True) for key in re.findall(pattern.pattern + r"\s*[\"']([\w.]+)[\"']", source)]
    calls = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and pattern.match(ast.unparse(node.func) + "(")
                and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            keyword = next((k.value for k in node.keywords if k.arg == "answer"), None)
            answer = node.args[1] if len(node.args) > 1 else keyword
            attempted = not (answer is None or (isinstance(answer, ast.Constant) and answer.value is None))
            calls.append((node.args[0].value, attempted))
    return calls


def _instrumented(notebook, token: str, pattern: re.Pattern = CHECK_CALL):
    """A copy whose exercise cells hand their answers to the recorder instead of ``exercises.check``."""
    copy = deepcopy(notebook)
    recorder = (f"def {RECORDER}(key, answer=None):\n"
                f"    import json\n"
                f"    if callable(answer):  # a coding exercise: what the function returns on its inputs\n"
                f"        from bitfit_edu.classroom.coding import CODING\n"
                f"        answer = CODING[key].outputs(answer) if key in CODING else repr(answer)\n"
                f"    shown = answer if isinstance(answer, (str, int, float, list, type(None))) else repr(answer)\n"
                f"    print({token!r} + json.dumps({{'key': key, 'answer': shown}}))\n")
    for cell in copy.cells:
        if cell.cell_type == "code" and pattern.search(cell.source):
            cell.source = pattern.sub(f"{RECORDER}(", cell.source)
    copy.cells.insert(0, nbformat.v4.new_code_cell(recorder))
    return copy


BWRAP = shutil.which("bwrap")
MEMORY_LIMIT = 8 * 2**30  # bytes of address space per process in the sandbox
FILE_LIMIT = 256 * 2**20  # the largest file a submission may write (its executed notebook included)
DISK_LIMIT = 2**30  # all it may write to its own folder; watched every second
TMP_LIMIT = 512 * 2**20  # the size of its own /tmp (memory)


@dataclass(frozen=True)
class Sandbox:
    """What a submission's sandbox hides, each replaced by an empty read-only folder or an empty file (the
    submissions, the grades, the answer key and every copy of it), and the folder it sees in place of another
    (the student edition in place of the course's notebooks)."""

    hidden: tuple[Path, ...]
    shown_instead: dict[Path, Path]  # the folder inside -> the folder it shows
    empty_file: Path  # shown in place of a hidden file (not /dev/null: a device cannot be read on a bind mount)


def withheld() -> list[Path]:
    """Where the teacher's course holds the answers, for the sandbox to hide: the key module and its compiled
    copies, the checkout's git history, and a site built from the full notebooks."""
    key, root = key_file(), course_root()
    keys = [key, key.parent / "__pycache__"] if key is not None else []
    return [*keys, root / ".git", root / "build", root / "site" / "_generated"]


def sandbox_command(command: list[str], scratch: Path, sandbox: Sandbox, needed: list[Path]) -> list[str]:
    """``command`` inside bubblewrap: the whole file system read-only, its own empty /tmp (the ``needed``
    folders that lie under /tmp, such as a checkout, still there, read-only), only ``scratch`` writable, what
    ``sandbox`` hides or shows instead, no network, and its own process namespace, so that everything it starts
    dies with it."""
    masks = []
    for inside, shown in sandbox.shown_instead.items():
        masks += ["--ro-bind", str(shown), str(inside)]
    for path in sandbox.hidden:
        if any(folder in path.parents for folder in sandbox.hidden if folder.is_dir()):
            continue  # already hidden with its folder
        if path.is_dir():
            masks += ["--tmpfs", str(path), "--remount-ro", str(path)]
        elif path.exists():
            masks += ["--ro-bind", str(sandbox.empty_file), str(path)]
    kept = [arg for path in needed if Path("/tmp") in path.parents for arg in ("--ro-bind", str(path), str(path))]
    return [BWRAP, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--size", str(TMP_LIMIT), "--tmpfs",
            "/tmp", *kept, *masks,
            "--bind", str(scratch), str(scratch), "--unshare-all", "--die-with-parent", "--new-session",
            "--chdir", str(scratch), *command]


def _limits() -> None:
    """Resource limits of the sandbox (set in the child before it starts): memory and the size of a file."""
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_LIMIT, FILE_LIMIT))


def _execute(notebook_path: Path, executed_path: Path, timeout: int, sandbox: Sandbox | None = None) -> str | None:
    """Run one notebook in its own process group, in ``sandbox`` (``sandbox_command``) unless it is None
    (``--unsafe``); None when it finished, else why it did not. The executed notebook is written after every
    cell, so the cells that ran before a stop are still graded."""
    scratch = notebook_path.parent
    environment = {**os.environ, "BITFIT_EDU_PROFILE": "smoke", "TOKENIZERS_PARALLELISM": "false"}
    for variable, folder in (("JUPYTER_RUNTIME_DIR", "runtime"), ("IPYTHONDIR", "ipython"),
                             ("MPLCONFIGDIR", "matplotlib"), ("HF_DATASETS_CACHE", "datasets")):
        environment[variable] = str(scratch / folder)  # the places a kernel writes to, inside its own folder
    course = course_notebooks() or scratch
    command = [sys.executable, "-m", "bitfit_edu.classroom.grading", str(notebook_path), str(executed_path),
               str(course)]  # the kernel works where the course notebooks are, as a student's would
    if sandbox is not None:
        data = [locations.data_home(), locations.glue_dir(), locations.hub_cache()]
        if data[0] is not None:  # found here, where ``shared/`` beside the checkout may lie outside the sandbox
            environment[locations.DATA_VARIABLE] = str(data[0])
        needed = {path.resolve() for path in (CHECKOUT, course, *data) if path is not None}
        command = sandbox_command(command, scratch, sandbox, sorted(needed))
    process = subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               start_new_session=True, preexec_fn=_limits if sandbox is not None else None)
    deadline = time.monotonic() + timeout
    while True:
        try:
            output, _ = process.communicate(timeout=1)
            break
        except subprocess.TimeoutExpired:
            if time.monotonic() > deadline:
                why = f"ran past the time limit of {timeout} s"
            elif sandbox is not None and _bytes_in(scratch) > DISK_LIMIT:
                why = f"wrote more than {DISK_LIMIT // 2**20} MiB to its folder"
            else:
                continue
            os.killpg(process.pid, signal.SIGKILL)  # the kernel too: it is in the same process group
            process.communicate()
            return why
    if process.returncode != 0:
        last = output.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        return f"stopped: {last[0][:200]}"
    return None


def _bytes_in(folder: Path) -> int:
    """The bytes of disk the files under ``folder`` take (a file removed while they are counted counts 0)."""
    found = 0
    for root, _, names in os.walk(folder):
        for name in names:
            with contextlib.suppress(OSError):
                found += os.lstat(Path(root, name)).st_blocks * 512
    return found


def _recorded(executed, token: str) -> dict[str, object]:
    """Each exercise's answer, from the recorder's lines; a line that cannot be read records nothing."""
    answers = {}
    for cell in executed.cells:
        for output in cell.get("outputs", []):
            if output.get("name") == "stdout":
                for line in str(output.get("text", "")).splitlines():
                    if line.startswith(token):
                        try:
                            found = json.loads(line[len(token):])
                            answers[str(found["key"])] = found["answer"]
                        except (ValueError, TypeError, KeyError):
                            continue
    return answers


def _cell_errors(executed) -> dict[str, str]:
    """Exercise key -> the error its cell raised, for exercise cells that raised."""
    errors = {}
    for cell in executed.cells:
        if cell.cell_type != "code":
            continue
        raised = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        if raised:
            for key, _ in _check_calls(cell.source.replace(f"{RECORDER}(", "exercises.check(")):
                errors[key] = f"{raised[0]['ename']}: {raised[0]['evalue']}"[:200]
    return errors


def _judge(key: str, answer: object) -> tuple[str, str]:
    try:
        return _judged(key, answer)
    except Exception as error:  # whatever a hostile answer makes a check do: that exercise, not the class
        return "not graded", f"its answer could not be judged ({type(error).__name__})"


def _judged(key: str, answer: object) -> tuple[str, str]:
    exercise = EXERCISES[key]
    try:
        failed = exercise.failure(answer)
    except BitFitError as error:
        return "wrong", str(error)
    if failed is None:
        return "right", ""
    return "wrong", f"the function's result differs on {failed}" if exercise.function is not None else failed


def grade_notebook(student: str, path: Path, timeout: int = DEFAULT_TIMEOUT,
                   sandbox: Sandbox | None = None) -> list[Grade]:
    """One student's notebook: a row per exercise of its chapter, run in ``sandbox`` (None: no sandbox)."""
    chapter = path.stem[:2]
    keys = [key for key in EXERCISES if key.startswith(f"{chapter}.")]
    if not keys:
        return [Grade(student, path.name, "", "not graded", "not a course notebook (its name starts with no "
                      "chapter number that has exercises)")]
    if path.is_symlink():
        return [Grade(student, path.name, key, "not graded", "the notebook is a symbolic link: hand in the file "
                      "itself") for key in keys]
    try:
        notebook = nbformat.read(path, as_version=4)
        for cell in notebook.cells:  # a code cell saved without outputs still runs
            if cell.cell_type == "code":
                cell.setdefault("outputs", [])
                cell.setdefault("execution_count", None)
    except Exception as error:  # any way a file can fail to be a notebook
        return [Grade(student, path.name, key, "not graded", f"the notebook does not parse: {error}"[:300])
                for key in keys]
    sources = [cell.source for cell in notebook.cells if cell.cell_type == "code"]
    pattern = _call_pattern(*_check_names(sources))
    calls = {key: attempted for source in sources if pattern.search(source)
             for key, attempted in _check_calls(source, pattern)}
    token = f"#grade-{secrets.token_hex(8)}#"
    with tempfile.TemporaryDirectory() as scratch:
        submitted, executed_path = Path(scratch) / "submitted.ipynb", Path(scratch) / "executed.ipynb"
        nbformat.write(_instrumented(notebook, token, pattern), submitted)
        stopped = _execute(submitted, executed_path, timeout, sandbox)
        executed = nbformat.read(executed_path, as_version=4) if executed_path.is_file() else None
    answers = _recorded(executed, token) if executed else {}
    errors = _cell_errors(executed) if executed else {}
    grades = []
    for key in keys:
        if key not in calls:
            result, why = "not attempted", "its exercise cell is missing"
        elif not calls[key]:
            result, why = "not attempted", "the answer is still None"
        elif key in errors:
            result, why = "wrong", f"its cell raised {errors[key]}"
        elif key in answers:
            result, why = _judge(key, answers[key])
        else:
            result, why = "not graded", f"the notebook {stopped or 'ended before this cell'}"
        grades.append(Grade(student, path.name, key, result, why))
    return grades


def grade(submissions: Path, out_csv: Path, timeout: int = DEFAULT_TIMEOUT, unsafe: bool = False) -> list[Grade]:
    """Grade ``submissions/<student>/<notebook>.ipynb`` for every student, each in the sandbox (``unsafe``:
    without one); write the rows to ``out_csv``."""
    if not submissions.is_dir():
        raise BitFitError(f"{submissions} is not a folder: give a folder with one sub-folder per student")
    if BWRAP is None and not unsafe:
        raise BitFitError("grading runs each submission in a bubblewrap sandbox, and bwrap is not installed: "
                          "install it (apt-get install bubblewrap), or pass --unsafe to run submissions as "
                          "yourself, with nothing between them and your files")
    if not answer_key():
        raise BitFitError("this copy of the course has no answer key (a student build?): grade from the "
                          "teacher's copy, the checkout the student build was made from")
    students = sorted(p for p in submissions.iterdir() if p.is_dir())
    if not students:
        raise BitFitError(f"{submissions} holds no student folders: put each student's notebooks in "
                          f"{submissions}/<student>/")
    rows = []
    with tempfile.TemporaryDirectory() as shown:
        sandbox = None
        if not unsafe:
            edition, empty = Path(shown, "notebooks"), Path(shown, "empty")
            student_edition(edition)
            empty.touch()
            instead = {course_notebooks(): edition} if course_notebooks() else {}
            sandbox = Sandbox((submissions.resolve(), out_csv.resolve(), *withheld()), instead, empty)
        for student in students:  # the class as it was when grading began: every student gets a row
            for graded in _grade_student(student, timeout, sandbox):
                rows.extend(graded)
                _write_rows(rows, out_csv)  # after each notebook: nothing finished is lost
    return rows


def _grade_student(student: Path, timeout: int, sandbox: Sandbox | None):
    """Each of a student's notebooks graded, one list of rows at a time; a row that says why where none can be."""
    if student.is_symlink():
        yield [Grade(student.name, "", "", "not graded", "the student's folder is a symbolic link")]
        return
    notebooks = sorted(student.glob("*.ipynb"))
    if not notebooks:
        yield [Grade(student.name, "", "", "not graded", "no notebook handed in (or the folder is gone)")]
    for path in notebooks:
        try:
            yield grade_notebook(student.name, path, timeout, sandbox)
        except Exception as error:  # one notebook never stops the class
            yield [Grade(student.name, path.name, "", "not graded", f"grading failed: {error}"[:300])]


def _write_rows(rows: list[Grade], out_csv: Path) -> None:
    """Write the grades whole or not at all: to a file beside ``out_csv``, then renamed over it."""
    partial = out_csv.with_name(f".{out_csv.name}.{os.getpid()}.tmp")
    with partial.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(Grade.__dataclass_fields__))
        writer.writeheader()
        writer.writerows(asdict(row) for row in rows)
    os.replace(partial, out_csv)


def _run_one(submitted: str, executed: str, working_folder: str) -> None:
    """Execute one notebook with nbclient, errors allowed (each raising cell is graded on its own)."""
    from nbclient import NotebookClient

    notebook = nbformat.read(submitted, as_version=4)
    client = NotebookClient(notebook, kernel_name="python3", allow_errors=True, timeout=None,
                            resources={"metadata": {"path": working_folder}},
                            on_cell_executed=lambda **_: nbformat.write(notebook, executed))
    client.execute()


if __name__ == "__main__":
    _run_one(*sys.argv[1:4])
