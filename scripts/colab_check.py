"""Run every notebook the way a student on Google Colab runs it, on this machine.

A student opens a notebook from GitHub in Colab. The kernel starts in ``/content`` with
``google.colab`` imported, and the notebook's first code cell (the Colab cell) clones the repository,
installs it with ``%pip install ./bitfit_edu`` (not editable), and changes into
``bitfit_edu/notebooks`` so that the committed ``results/`` are there. Then the rest of the notebook
runs. This script rebuilds that situation and executes each notebook from top to bottom with nbclient.

Run it from the checkout, with a Python that has nbclient and nbformat (the project's
requirements.txt brings them):

    python scripts/colab_check.py                                   # classroom profile, every notebook
    python scripts/colab_check.py --profile smoke --threads 1       # quick: seconds to minutes a notebook
    python scripts/colab_check.py --notebooks 01 03 --rebuild       # two notebooks, a freshly built venv

It prints a table, writes ``docs/colab_check.json`` and exits non-zero if any notebook failed.
Executed notebooks and the kernel's log are kept under ``WORKDIR/runs/<notebook>/``.

What is simulated
-----------------
* The runtime: a virtualenv (``WORKDIR/venv``, reused unless ``--rebuild``) holding only what Colab
  has before the notebook runs and the project needs from it: torch (``--torch``, default
  ``torch==2.13.0``, the CPU wheel from pip's configured find-links here) and ipykernel. Not the
  bitfit_edu package and none of its other dependencies: the Colab cell's ``%pip install`` must bring
  them from pyproject.toml. The script checks that it does: it compares the venv's distributions
  before the notebook and right after the Colab cell. A notebook whose cells all ran still fails if the
  cell did not install bitfit_edu and every dependency the venv lacked, if bitfit_edu was imported
  from anywhere but the installed package, or if the kernel did not end up in bitfit_edu/notebooks.
* One runtime per notebook, as on Colab, where every notebook gets its own machine: each notebook
  runs in a fresh kernel with a fresh ``/content`` (``WORKDIR/runs/<notebook>/content``, the
  kernel's working directory) and a fresh HOME, so every Colab cell clones and installs again.
  Before each notebook the venv is put back to its built state (what the previous Colab cell
  installed is uninstalled).
* ``google.colab``: a stand-in module (``WORKDIR/colab/site/google/colab``, on the kernel's
  PYTHONPATH) imported by an IPython startup file in the kernel's IPYTHONDIR, so
  ``"google.colab" in sys.modules`` holds as on Colab. It is empty: only its presence is simulated.
* GitHub: the checkout's committed HEAD is copied into a local bare repository
  (``WORKDIR/origin.git``, branch main) and the kernel's HOME has a ``.gitconfig`` whose
  ``url.<file://...origin.git>.insteadOf`` is the Repository URL of pyproject.toml (as committed),
  so the notebook's unmodified ``git clone --depth 1 https://github.com/...`` gets the local copy.
  Uncommitted changes of the checkout are therefore NOT tested (the script says so when there are
  any). The notebook itself is also read from that commit, as the student gets it from GitHub.
* The Hugging Face hub: this machine is offline, so the kernel gets ``BITFIT_EDU_DATA``,
  ``GLUE_DIR``, ``HF_HUB_CACHE`` (absolute paths under ``--shared``, default ``../shared``) and
  ``HF_HUB_OFFLINE=1``; they stand in for the hub that serves the model and GLUE on Colab.
* The profile: ``--profile`` (default classroom, what a Colab user gets) is passed as
  ``BITFIT_EDU_PROFILE``; ``--threads`` sets ``OMP_NUM_THREADS`` (default: unset, as on Colab).

What is not simulated
---------------------
* Python: Colab runs Python 3.12; the venv uses ``--python`` (default: the interpreter running this
  script; here 3.11, because the only torch wheel available offline is cp311).
* Colab preinstalls much more than torch (transformers, pandas, scipy, scikit-learn, matplotlib,
  ipywidgets, ... at Colab's versions). Here the Colab cell installs all of them, which checks that
  pyproject.toml's dependencies suffice, but not how pip resolves them against Colab's versions.
* Colab's hardware (a GPU, if the student picks one), its front end (widgets render nowhere here),
  network access to GitHub and the hub, and Colab's own ``google.colab`` features.
* The kernel's environment is this machine's, less its Python, Jupyter and Hugging Face settings.
  pip reaches PyPI as on Colab, but keeps this machine's global configuration (the ``PIP_*``
  variables, /etc/pip.conf; not the user's pip.conf, as HOME is a scratch one) and caches downloads
  in ``WORKDIR/cache/pip`` across runs, so the Colab cell's install time here is with a warm cache.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_WORKDIR = Path("/tmp/bitfit_colab_check")
DEFAULT_OUTPUT = ROOT / "docs" / "colab_check.json"
KERNEL_NAME = "colab-check"
BASE_STATE = "colab-check-base.json"  # inside the venv: what it held when built, and how long that took
COLAB_PYTHON = "3.12"
# host variables that would leak this machine's set-up into the kernel; the kernel gets its own
LEAKY_PREFIXES = ("PYTHON", "VIRTUAL_ENV", "CONDA", "IPYTHON", "JUPYTER", "XDG_", "HF_", "HUGGINGFACE",
                  "TRANSFORMERS_", "BITFIT_EDU_", "GLUE_", "OMP_", "MKL_", "MPLBACKEND", "TOKENIZERS_")
# appended to each notebook, removed again before it is saved: where the kernel ended up
PROBE_SOURCE = """\
import json as _json, os as _os, sys as _sys
print("COLAB_CHECK_PROBE " + _json.dumps({
    "cwd": _os.getcwd(), "google.colab": "google.colab" in _sys.modules,
    "bitfit_edu": getattr(_sys.modules.get("bitfit_edu"), "__file__", None)}))"""
PROBE_TAG = "colab-check-probe"


@dataclass
class Layout:
    """Where everything lives in the scratch folder."""

    workdir: Path

    @property
    def venv(self) -> Path:
        return self.workdir / "venv"

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def pip_cache(self) -> Path:
        return self.workdir / "cache" / "pip"

    @property
    def origin(self) -> Path:
        return self.workdir / "origin.git"

    @property
    def colab(self) -> Path:
        """The google.colab stand-in and the kernelspec: shared by every notebook's runtime."""
        return self.workdir / "colab"

    @property
    def site(self) -> Path:
        return self.colab / "site"

    @property
    def kernels(self) -> Path:
        return self.colab / "kernels"

    def run_dir(self, notebook: str) -> Path:
        return self.workdir / "runs" / Path(notebook).stem

    def content(self, notebook: str) -> Path:
        return self.run_dir(notebook) / "content"

    def home(self, notebook: str) -> Path:
        return self.run_dir(notebook) / "home"


@dataclass
class NotebookResult:
    notebook: str
    status: str = "ok"  # ok | failed
    seconds: float = 0.0
    error: str | None = None  # the exception's last line, or what went wrong
    error_cell: int | None = None  # index in the notebook's cells (0-based)
    colab_cell_seconds: float | None = None
    installed_by_colab_cell: dict[str, str] = field(default_factory=dict)  # distribution -> version
    bitfit_edu_imported_from: str | None = None
    kernel_cwd: str | None = None
    google_colab_in_sys_modules: bool | None = None
    executed: str | None = None  # the saved executed notebook


# ----------------------------------------------------------------------------------------------- helpers

def run(cmd: list[str | Path], **kwargs: Any) -> str:
    """Run a command, return its stdout; on failure raise with its output."""
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kwargs)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    return proc.stdout


@functools.cache
def pyproject() -> dict[str, Any]:
    """The [project] table of pyproject.toml as committed: the commit under test, not the working tree."""
    import tomllib  # Python 3.11+, like the pinned stack this script runs with

    return tomllib.loads(run(["git", "-C", ROOT, "show", "HEAD:pyproject.toml"]))["project"]


def repository_url() -> str:
    """The public address, from pyproject.toml's [project.urls] Repository."""
    return pyproject()["urls"]["Repository"].removesuffix(".git").rstrip("/")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def project_dependencies() -> list[str]:
    """The canonical names of pyproject.toml's [project] dependencies."""
    return [canonical(re.split(r"[^A-Za-z0-9._-]", r, maxsplit=1)[0]) for r in pyproject()["dependencies"]]


def venv_env(layout: Layout) -> dict[str, str]:
    """This process's environment, less what would point the venv's Python elsewhere."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    return {**env, "PIP_CACHE_DIR": str(layout.pip_cache)}


def installed(layout: Layout) -> dict[str, str]:
    """Canonical distribution name -> version of everything installed in the venv."""
    code = ("import importlib.metadata as m, json; "
            "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions() if d.metadata['Name']}))")
    found = json.loads(run([layout.python, "-c", code], cwd="/", env=venv_env(layout)))
    return {canonical(name): version for name, version in found.items()}


def pip(layout: Layout, *args: str) -> None:
    run([layout.python, "-m", "pip", "--disable-pip-version-check", *args], env=venv_env(layout))


# ----------------------------------------------------------------------------------------------- the runtime

def build_venv(layout: Layout, base_python: str, torch_spec: str, rebuild: bool) -> dict[str, Any]:
    """The venv as Colab's runtime is before a notebook runs; reused when built before."""
    state_file = layout.venv / BASE_STATE
    settings = {"base_python": base_python, "torch_spec": torch_spec}
    if state_file.exists() and not rebuild:
        state = json.loads(state_file.read_text())
        if all(state.get(key) == value for key, value in settings.items()):
            print(f"venv: reusing {layout.venv} (--rebuild to build it again)", flush=True)
            return state
        print(f"venv: {layout.venv} was built with other settings than {settings}", flush=True)
    shutil.rmtree(layout.venv, ignore_errors=True)
    print(f"venv: building {layout.venv} from {base_python} with {torch_spec} and ipykernel ...", flush=True)
    start = time.perf_counter()
    run([base_python, "-m", "venv", layout.venv])
    pip(layout, "install", "-q", "--upgrade", "pip")
    pip(layout, "install", "-q", torch_spec, "ipykernel")
    packages = installed(layout)
    if "bitfit-edu" in packages:
        raise RuntimeError("the fresh venv already holds bitfit_edu: the Colab cell's install would go untested")
    state = {
        **settings,
        "built": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - start, 1),
        "python": run([layout.python, "-c", "import platform; print(platform.python_version())"]).strip(),
        "packages": packages,
    }
    state_file.write_text(json.dumps(state, indent=1, sort_keys=True) + "\n")
    print(f"venv: built in {state['seconds']:.0f} s", flush=True)
    return state


def reset_venv(layout: Layout, base: dict[str, str]) -> None:
    """Put the venv back to its built state: uninstall what a notebook installed, restore what it changed."""
    now = installed(layout)
    extra = sorted(set(now) - set(base))
    if extra:
        pip(layout, "uninstall", "-q", "-y", *extra)
    changed = [f"{name}=={version}" for name, version in base.items() if now.get(name) != version]
    if changed:
        pip(layout, "install", "-q", "--no-deps", *changed)
    if installed(layout) != base:
        raise RuntimeError(f"could not restore {layout.venv} to its built state: use --rebuild")


def mirror_head(layout: Layout) -> str:
    """A bare repository holding the checkout's committed HEAD as branch main: the stand-in for GitHub."""
    shutil.rmtree(layout.origin, ignore_errors=True)
    commit = run(["git", "-C", ROOT, "rev-parse", "HEAD"]).strip()
    run(["git", "init", "-q", "--bare", layout.origin])
    run(["git", "-C", layout.origin, "fetch", "-q", "--no-tags", ROOT, f"{commit}:refs/heads/main"])
    run(["git", "-C", layout.origin, "symbolic-ref", "HEAD", "refs/heads/main"])
    return commit


def write_colab_stand_ins(layout: Layout) -> None:
    """The google.colab module and a kernelspec for the venv's Python."""
    shutil.rmtree(layout.colab, ignore_errors=True)
    package = layout.site / "google" / "colab"  # google/ stays a namespace package, as installed ones are
    package.mkdir(parents=True)
    (package / "__init__.py").write_text('"""Stand-in for Colab\'s google.colab: only its presence is simulated."""\n')
    spec = layout.kernels / KERNEL_NAME
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [str(layout.python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Colab check (venv)", "language": "python"}, indent=1))


def write_home(home: Path, clone_source: str, public_url: str) -> Path:
    """A fresh HOME: git clones of the public URL go to the local mirror; IPython imports google.colab."""
    home.mkdir(parents=True)
    (home / ".gitconfig").write_text(f'[url "{clone_source}"]\n\tinsteadOf = {public_url}\n')
    startup = home / ".ipython" / "profile_default" / "startup"
    startup.mkdir(parents=True)
    (startup / "00-google-colab.py").write_text("import google.colab  # noqa: F401  (on Colab it is imported)\n")
    return home / ".ipython"


def hub_stand_ins(shared: Path) -> dict[str, str]:
    """The settings that stand in for the Hugging Face hub, which serves the model and GLUE on Colab."""
    shared = shared.resolve()
    return {"BITFIT_EDU_DATA": str(shared), "GLUE_DIR": str(shared / "glue_data"),
            "HF_HUB_CACHE": str(shared / "hf-hub"), "HF_HUB_OFFLINE": "1"}


def kernel_env(layout: Layout, home: Path, ipython_dir: Path, args: argparse.Namespace) -> dict[str, str]:
    """The kernel's environment: this machine's, less its Python/Jupyter/hub settings, plus Colab's stand-ins."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(LEAKY_PREFIXES)}
    env.update({
        "HOME": str(home),
        "IPYTHONDIR": str(ipython_dir),
        "PATH": f"{layout.venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        "PYTHONPATH": str(layout.site),
        "PIP_CACHE_DIR": str(layout.pip_cache),
        "BITFIT_EDU_PROFILE": args.profile,
        **hub_stand_ins(args.shared),
    })
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    return env


# ----------------------------------------------------------------------------------------------- notebooks

def list_notebooks(layout: Layout, selection: list[str] | None) -> list[str]:
    """notebooks/*.ipynb of the mirrored commit, sorted; ``selection`` keeps those named (name, stem or prefix)."""
    names = sorted(Path(p).name for p in run(["git", "-C", layout.origin, "ls-tree", "--name-only", "HEAD",
                                                "notebooks/"]).split() if p.endswith(".ipynb"))
    if not selection:
        return names
    chosen = [n for n in names if any(n == s or Path(n).stem == s or n.startswith(s) for s in selection)]
    if not chosen:
        raise SystemExit(f"no notebook matches {selection}; the commit has {names}")
    return chosen


def cell_seconds(cell: Any) -> float | None:
    """How long a cell ran, from the timing nbclient records in its metadata."""
    timing = cell.get("metadata", {}).get("execution", {})
    start, end = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
    if not (start and end):
        return None
    elapsed = datetime.fromisoformat(end.replace("Z", "+00:00")) - datetime.fromisoformat(start.replace("Z", "+00:00"))
    return round(elapsed.total_seconds(), 1)


def error_line(exc: BaseException) -> str:
    """A cell's exception as its traceback ends ("ValueError: ..."); nbclient's own (a timeout, a dead
    kernel) by its type and first line."""
    ename, evalue = getattr(exc, "ename", None), getattr(exc, "evalue", None)
    if ename:  # CellExecutionError: the exception raised in the cell
        lines = [line for line in str(evalue or "").splitlines() if line.strip()]
        return f"{ename}: {lines[-1] if lines else ''}".strip()
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"


def execute_notebook(name: str, layout: Layout, base: dict[str, str], public_url: str,
                     args: argparse.Namespace) -> NotebookResult:
    """One notebook in a fresh runtime: fresh /content, HOME and kernel, the venv as built."""
    import nbformat
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from jupyter_core.utils import run_sync
    from nbclient import NotebookClient

    result = NotebookResult(notebook=name)
    reset_venv(layout, base)
    run_dir = layout.run_dir(name)
    shutil.rmtree(run_dir, ignore_errors=True)
    content = layout.content(name)
    content.mkdir(parents=True)
    ipython_dir = write_home(layout.home(name), f"file://{layout.origin}", public_url)
    env = kernel_env(layout, layout.home(name), ipython_dir, args)

    # the notebook as the student gets it from GitHub, plus the probe at its end
    nb = nbformat.reads(run(["git", "-C", layout.origin, "show", f"HEAD:notebooks/{name}"]), as_version=4)
    colab_cell = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")
    nb.cells.append(nbformat.v4.new_code_cell(PROBE_SOURCE, metadata={"tags": [PROBE_TAG]}))

    current: dict[str, int] = {"cell": -1}
    after_colab_cell: dict[str, str] = {}

    def on_cell_start(cell: Any, cell_index: int) -> None:
        current["cell"] = cell_index

    def on_cell_executed(cell: Any, cell_index: int, execute_reply: Any) -> None:
        if cell_index == colab_cell:
            after_colab_cell.update(installed(layout))

    # an async manager: with a blocking one, nbclient's per-cell timeout never fires
    km = AsyncKernelManager(kernel_name=KERNEL_NAME,
                            kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(layout.kernels)]))
    client = NotebookClient(nb, km=km, kernel_name=KERNEL_NAME, timeout=args.cell_timeout,
                            startup_timeout=120, resources={"metadata": {"path": str(content)}},
                            on_cell_start=on_cell_start, on_cell_executed=on_cell_executed)
    start = time.perf_counter()
    with open(run_dir / "kernel.log", "w") as log:  # the kernel's own stderr (its warnings), not the cells'
        try:
            client.execute(env=env, stdout=log, stderr=log)
        except Exception as exc:  # a cell's error, a timeout, a dead kernel: the notebook failed
            result.status, result.error, result.error_cell = "failed", error_line(exc), current["cell"]
        finally:
            if km.has_kernel:  # nbclient leaves a kernel manager it was given running
                run_sync(km.shutdown_kernel)(now=True)
    result.seconds = round(time.perf_counter() - start, 1)

    # what the probe saw, then the notebook without it
    for output in nb.cells[-1].get("outputs", []):
        for line in output.get("text", "").splitlines():
            if line.startswith("COLAB_CHECK_PROBE "):
                probe = json.loads(line.removeprefix("COLAB_CHECK_PROBE "))
                result.kernel_cwd, result.bitfit_edu_imported_from = probe["cwd"], probe["bitfit_edu"]
                result.google_colab_in_sys_modules = probe["google.colab"]
    nb.cells.pop()
    result.colab_cell_seconds = cell_seconds(nb.cells[colab_cell])
    result.installed_by_colab_cell = {k: v for k, v in sorted(after_colab_cell.items()) if base.get(k) != v}

    if result.status == "ok":
        problem = colab_cell_problem(result, layout, base)
        if problem:
            result.status, result.error, result.error_cell = "failed", problem, colab_cell
    saved = run_dir / name
    nbformat.write(nb, saved)
    result.executed = str(saved)
    return result


def colab_cell_problem(result: NotebookResult, layout: Layout, base: dict[str, str]) -> str | None:
    """What the Colab cell failed to do, though every cell ran; None when it did its job."""
    if result.google_colab_in_sys_modules is False:
        return "google.colab was not in sys.modules: the simulation is broken"
    wanted = ["bitfit-edu", *(d for d in project_dependencies() if d not in base)]
    missing = [d for d in wanted if d not in result.installed_by_colab_cell]
    if missing:
        return f"the Colab cell did not install {', '.join(missing)}"
    if result.bitfit_edu_imported_from and not result.bitfit_edu_imported_from.startswith(str(layout.venv)):
        return f"bitfit_edu was imported from {result.bitfit_edu_imported_from}, not from the installed package"
    if result.kernel_cwd and Path(result.kernel_cwd) != layout.content(result.notebook) / "bitfit_edu" / "notebooks":
        return f"the kernel ended in {result.kernel_cwd}, not in bitfit_edu/notebooks"
    return None


# ----------------------------------------------------------------------------------------------- report

def print_table(results: list[NotebookResult]) -> None:
    rows = [("notebook", "status", "seconds", "colab cell s", "detail")]
    for r in results:
        new = r.installed_by_colab_cell
        detail = f"cell {r.error_cell}: {r.error}" if r.error else (
            f"the Colab cell installed {len(new)} distributions: bitfit_edu {new.get('bitfit-edu')}, "
            f"transformers {new.get('transformers')}, ...")
        colab_s = "" if r.colab_cell_seconds is None else f"{r.colab_cell_seconds:.1f}"
        rows.append((r.notebook, r.status, f"{r.seconds:.1f}", colab_s, detail))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths, strict=True)) + "  " + row[4])


def write_summary(path: Path, results: list[NotebookResult], venv_state: dict[str, Any], commit: str,
                  uncommitted: bool, args: argparse.Namespace, layout: Layout, total_seconds: float) -> None:
    packages = venv_state["packages"]
    summary = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "commit": commit,
        "uncommitted_changes_not_tested": uncommitted,
        "all_ok": all(r.status == "ok" for r in results),
        "seconds": round(total_seconds, 1),
        "environment": {
            "python": venv_state["python"],
            "python_note": f"Colab runs Python {COLAB_PYTHON}; the venv uses {venv_state['python']} because the "
                           "only torch wheel available offline here is cp311",
            "torch": packages.get("torch"),
            "venv_packages_before_notebook": len(packages),
            "venv_build_seconds": venv_state["seconds"],
            "venv_built": venv_state["built"],
            "profile": args.profile,
            "omp_num_threads": args.threads,
            "cell_timeout_seconds": args.cell_timeout,
            "dependencies_present_before_colab_cell": {d: packages[d] for d in project_dependencies() if d in packages},
            "bitfit_edu_installed_by_colab_cell": all("bitfit-edu" in r.installed_by_colab_cell for r in results),
            "transformers_installed_by_colab_cell": all("transformers" in r.installed_by_colab_cell for r in results),
            "hub_stand_ins": hub_stand_ins(args.shared),
            "platform": platform.platform(),
            "workdir": str(layout.workdir),
        },
        "notebooks": [asdict(r) for r in results],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=1) + "\n")


def default_python() -> str:
    """The interpreter running this script, outside any venv it may be in."""
    return getattr(sys, "_base_executable", None) or sys.executable


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR, help="scratch folder (default: %(default)s)")
    p.add_argument("--notebooks", nargs="+", metavar="NAME", help="only these notebooks (file name, stem or prefix)")
    p.add_argument("--profile", choices=("smoke", "classroom"), default="classroom",
                   help="BITFIT_EDU_PROFILE for the kernel (default: %(default)s, what a Colab user gets)")
    p.add_argument("--threads", type=int, help="OMP_NUM_THREADS for the kernel (default: unset)")
    p.add_argument("--cell-timeout", type=int, default=15 * 60, help="seconds per cell (default: %(default)s)")
    p.add_argument("--rebuild", action="store_true", help="build the venv again")
    p.add_argument("--python", default=default_python(), help="Python for the venv (default: %(default)s)")
    p.add_argument("--torch", default="torch==2.13.0", help="torch requirement for the venv (default: %(default)s)")
    p.add_argument("--shared", type=Path, default=ROOT.parent / "shared",
                   help="offline stand-in for the hub: glue_data/ and hf-hub/ (default: %(default)s)")
    p.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="JSON summary (default: %(default)s)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    layout = Layout(args.workdir.resolve())
    layout.workdir.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(layout.workdir / "runs", ignore_errors=True)  # every notebook's /content, HOME and output
    started = time.perf_counter()

    public_url = repository_url()
    commit = mirror_head(layout)
    uncommitted = bool(run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"]).strip())
    print(f"GitHub stand-in: {public_url} -> {layout.origin} at {commit[:10]}", flush=True)
    if uncommitted:
        print("note: the checkout has uncommitted changes; they are not tested (the notebooks clone HEAD)", flush=True)
    venv_state = build_venv(layout, args.python, args.torch, args.rebuild)
    write_colab_stand_ins(layout)

    results = []
    for name in list_notebooks(layout, args.notebooks):
        print(f"{name}: running (profile {args.profile}) ...", flush=True)
        result = execute_notebook(name, layout, venv_state["packages"], public_url, args)
        print(f"{name}: {result.status} in {result.seconds:.0f} s"
              + (f" (cell {result.error_cell}: {result.error})" if result.error else ""), flush=True)
        results.append(result)

    print()
    print_table(results)
    write_summary(args.output, results, venv_state, commit, uncommitted, args, layout,
                  time.perf_counter() - started)
    print(f"\nsummary: {args.output}; executed notebooks under {layout.workdir / 'runs'}")
    return 0 if all(r.status == "ok" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
