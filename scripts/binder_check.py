#!/usr/bin/env python3
"""Check, as a student would, that the Binder environment runs every notebook in JupyterLab.

What it does, step by step:

1. Builds the environment the way repo2docker does for this repository: a fresh Python 3.11
   virtualenv, ``pip install -r binder/requirements.txt``, then ``bash binder/postBuild`` from the
   repository root with the virtualenv active. The repository it builds from is a *copy* of the
   checkout's git-tracked files (working-tree versions) in a scratch folder, so that JupyterLab's
   autosave can never modify the real checkout. An existing virtualenv is reused unless
   ``--rebuild`` is given or the requirement files changed since it was built; the repository copy
   and postBuild are redone on every run.
2. Starts JupyterLab from that virtualenv on 127.0.0.1 (a free port, a random token, no browser),
   with the copy as root folder and a fresh home folder, as on Binder. Kernels get the offline data
   (``BITFIT_EDU_DATA``, ``GLUE_DIR``, ``HF_HUB_CACHE``, ``HF_HUB_OFFLINE=1``) and
   ``BITFIT_EDU_PROFILE``. ``OMP_NUM_THREADS`` stays unset unless ``--threads`` is given.
3. Drives Debian's chromium with Playwright. For each notebook: opens ``lab/tree/notebooks/NAME``,
   waits for the kernel, clears the stored outputs, runs Run > Run All Cells, waits until every cell
   has finished, counts the cells that raised (error outputs, not stderr warnings), saves the
   notebook (in the copy) and a screenshot of the whole executed notebook
   (``docs/binder/<stem>.png``), and shuts the kernel down.
4. Measures the kernel's peak memory: its VmHWM (plus the VmHWM of any child processes) just before
   shutdown, cross-checked by sampling the RSS of the kernel's process tree every half second.
   Binder's limit is 2 GB.
5. Writes ``docs/binder/binder_check.json`` and prints a table. Exits non-zero if a notebook raised,
   timed out, left cells unexecuted, or went over 2,048 MB.

One-time setup (outside the Binder environment, for the Python that runs this script)::

    apt-get update && apt-get install -y chromium      # the browser, at /usr/bin/chromium
    python3 -m pip install playwright                   # never `playwright install`: we use chromium

Run it from anywhere (the default profile is ``classroom``, what a Binder user gets)::

    python3 scripts/binder_check.py                                  # every notebook, classroom
    python3 scripts/binder_check.py --profile smoke --threads 1      # quick: seconds per notebook
    python3 scripts/binder_check.py --notebooks 01_transformer_equations 03_glue_runs
    python3 scripts/binder_check.py --rebuild                        # rebuild the virtualenv

Offline machines: ``binder/requirements.txt`` names an extra index (download.pytorch.org). Where it
cannot be reached (DNS fails at once), pip still succeeds from the other indexes, but for every one
of the ~160 packages it resolves it retries that index five times with back-off (about 8 s each):
22 minutes for the whole stack, against under 2 minutes with ``--pip-retries 0``, which makes pip
give up on the unreachable index at once. The packages installed are the same.

The summary holds only the notebooks of the last run (``--notebooks`` runs fewer). Notebooks run in
the scratch copy, so whatever they write (figures, results) stays there; so does the executed
notebook, saved in ``<workdir>/repo/notebooks``. Untracked work in progress is not copied unless
``--untracked`` is given.

The check is not run by CI: it needs a browser and takes as long as the notebooks do.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
OUTPUT_DIR = REPO_ROOT / "docs" / "binder"
SUMMARY_FILE = OUTPUT_DIR / "binder_check.json"
DEFAULT_WORKDIR = Path("/tmp/bitfit_binder_check")
DEFAULT_PYTHON = "/root/.pyenv/versions/3.11.7/bin/python"
DEFAULT_DATA = Path("/work/shared")
CHROMIUM = Path("/usr/bin/chromium")
BINDER_LIMIT_MB = 2048
VIEWPORT = {"width": 1400, "height": 900}
MAX_SCREENSHOT_HEIGHT = 16000  # px; taller notebooks are cut at the bottom (noted in the summary)
SAMPLE_INTERVAL_S = 0.5
POLL_INTERVAL_S = 1.0


def log(message: str) -> None:
    stamp = dt.datetime.now().strftime("%H:%M:%S")
    print(f"[{stamp}] {message}", flush=True)


# --------------------------------------------------------------------------------------------------
# 1. The environment, built as repo2docker does
# --------------------------------------------------------------------------------------------------


@dataclass
class BuildReport:
    venv_reused: bool
    requirements_digest: str
    venv_seconds: float = 0.0
    pip_seconds: float = 0.0
    postbuild_seconds: float = 0.0
    pip_retries: int | None = None
    log_file: str = ""


def venv_env(venv: Path) -> dict[str, str]:
    """This process's environment as a shell with ``venv`` activated would have it."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env.pop("PYTHONHOME", None)
    env["VIRTUAL_ENV"] = str(venv)
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


def run_logged(command: list[str], cwd: Path, env: dict[str, str], log_file: Path) -> float:
    """Run ``command``, appending its output to ``log_file``; return its wall seconds."""
    start = time.monotonic()
    with log_file.open("a") as handle:
        handle.write(f"\n$ {' '.join(command)}   (in {cwd})\n")
        handle.flush()
        result = subprocess.run(command, cwd=cwd, env=env, stdout=handle, stderr=subprocess.STDOUT)
    seconds = round(time.monotonic() - start, 1)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}); see {log_file}")
    return seconds


def git_files(source: Path, *options: str) -> list[str]:
    listing = subprocess.run(
        ["git", "ls-files", "-z", *options], cwd=source, check=True, capture_output=True
    ).stdout.decode()
    return [name for name in listing.split("\0") if name]


def copy_checkout(source: Path, destination: Path, untracked: bool) -> int:
    """Copy the git-tracked files of ``source`` (working-tree versions) to a fresh ``destination``;
    with ``untracked``, also the untracked files that git does not ignore (what `git add -A` adds)."""
    names = git_files(source)
    output = OUTPUT_DIR.relative_to(REPO_ROOT).as_posix() + "/"
    new = [n for n in git_files(source, "--others", "--exclude-standard") if not n.startswith(output)]
    if untracked:
        names += new
    elif new:
        log(f"not copied, as not tracked by git ({len(new)}; --untracked copies them): "
            + ", ".join(new[:10]) + (" ..." if len(new) > 10 else ""))
    if destination.exists():
        shutil.rmtree(destination)
    copied = 0
    for name in names:
        origin = source / name
        if not origin.is_file():  # deleted in the working tree, or a submodule
            continue
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(origin, target)
        copied += 1
    return copied


def requirements_digest(repo: Path) -> str:
    """A digest of the requirement files a build installs: a change means the venv is stale."""
    digest = hashlib.sha256()
    for name in ("binder/requirements.txt", "requirements.txt", "binder/runtime.txt"):
        path = repo / name
        digest.update(name.encode() + b"\0" + (path.read_bytes() if path.exists() else b""))
    return digest.hexdigest()[:16]


def build_environment(
    workdir: Path, repo_copy: Path, python: str, rebuild: bool, pip_retries: int | None
) -> BuildReport:
    """The virtualenv (built, or reused when its requirements are unchanged), then postBuild."""
    venv = workdir / "venv"
    marker = venv / "binder_check_requirements.txt"  # written once pip has succeeded
    log_file = workdir / "build.log"
    wanted = requirements_digest(repo_copy)
    built = marker.read_text().strip() if marker.exists() else None
    reuse = built == wanted and not rebuild
    if built and built != wanted and not rebuild:
        log("the requirement files changed since the virtualenv was built: rebuilding it")
    report = BuildReport(venv_reused=reuse, requirements_digest=wanted, pip_retries=pip_retries,
                         log_file=str(log_file))
    if reuse:
        log(f"reusing the virtualenv {venv} (--rebuild builds it again)")
    else:
        log_file.write_text("")
        if venv.exists():
            shutil.rmtree(venv)
        log(f"creating the virtualenv {venv} with {python}")
        report.venv_seconds = run_logged([python, "-m", "venv", str(venv)], workdir,
                                         dict(os.environ), log_file)
        log(f"pip install -r binder/requirements.txt (log: {log_file})")
        command = [str(venv / "bin" / "python"), "-m", "pip", "install"]
        if pip_retries is not None:
            command += ["--retries", str(pip_retries)]
        command += ["-r", "binder/requirements.txt"]
        report.pip_seconds = run_logged(command, repo_copy, venv_env(venv), log_file)
        marker.write_text(wanted + "\n")
        log(f"pip install took {report.pip_seconds:.0f} s")
    log("bash binder/postBuild")
    report.postbuild_seconds = run_logged(
        ["bash", "binder/postBuild"], repo_copy, venv_env(venv), log_file
    )
    return report


# --------------------------------------------------------------------------------------------------
# 2. JupyterLab
# --------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Server:
    url: str
    token: str
    process: subprocess.Popen[bytes]

    def api(self, path: str, method: str = "GET") -> Any:
        request = urllib.request.Request(
            f"{self.url}{path}", method=method, headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            body = response.read()
        return json.loads(body) if body else None


def kernel_environment(args: argparse.Namespace, venv: Path, home: Path) -> dict[str, str]:
    """The server's (and so the kernels') environment: a fresh home, the offline data, the profile."""
    env = venv_env(venv)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "BITFIT_EDU_PROFILE", "JUPYTER_CONFIG_DIR",
                 "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR", "JUPYTER_PATH", "IPYTHONDIR"):
        env.pop(name, None)
    data = args.data.resolve()
    env.update(
        HOME=str(home),
        BITFIT_EDU_DATA=str(data),
        GLUE_DIR=str(data / "glue_data"),
        HF_HUB_CACHE=str(data / "hf-hub"),
        HF_HUB_OFFLINE="1",
        BITFIT_EDU_PROFILE=args.profile,
        JUPYTERLAB_SETTINGS_DIR=str(home / ".jupyter" / "lab" / "user-settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(home / ".jupyter" / "lab" / "workspaces"),
    )
    if args.threads is not None:
        env["OMP_NUM_THREADS"] = str(args.threads)
    return env


def write_user_settings(settings_dir: Path) -> None:
    """Answer 'no' to JupyterLab's news and update prompts, so no toast covers the screenshots."""
    target = settings_dir / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))


@contextmanager
def jupyterlab(venv: Path, root: Path, env: dict[str, str], log_file: Path) -> Iterator[Server]:
    """A JupyterLab server on a free local port; stopped (with its kernels) on exit, whatever happens."""
    port, token = free_port(), secrets.token_hex(16)
    command = [
        str(venv / "bin" / "jupyter"), "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
        f"--ServerApp.root_dir={root}", f"--IdentityProvider.token={token}",
        "--LabApp.expose_app_in_browser=True",  # window.jupyterapp, to run commands and read models
    ]
    if os.geteuid() == 0:  # Binder runs as a user; this machine may not
        command.append("--allow-root")
    handle = log_file.open("w")
    process = subprocess.Popen(
        command, cwd=root, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
    )
    server = Server(url=f"http://127.0.0.1:{port}/", token=token, process=process)
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"JupyterLab exited ({process.returncode}); see {log_file}")
            try:
                server.api("api/status")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"JupyterLab did not answer in 120 s; see {log_file}") from None
                time.sleep(0.5)
        log(f"JupyterLab is up at {server.url} (log: {log_file})")
        yield server
    finally:
        stop_process_group(process)
        handle.close()
        # Kernels run in sessions of their own; a server that had to be killed leaves them behind.
        # Each names its connection file, in this server's runtime folder (under the fresh home).
        for pid in processes_naming(f"{env['HOME']}/.local/share/jupyter/runtime/kernel-"):
            log(f"stopping a kernel left behind (pid {pid})")
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        log("JupyterLab stopped")


def stop_process_group(process: subprocess.Popen[bytes]) -> None:
    """Stop a process started with its own session, and everything it started (kernels)."""
    if process.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


# --------------------------------------------------------------------------------------------------
# 4. Memory of a kernel and its children
# --------------------------------------------------------------------------------------------------


def status_kb(pid: int, key: str) -> int:
    """A ``kB`` field of /proc/PID/status (VmRSS, VmHWM); 0 when the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return 0


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid``."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # The command name, in parentheses, may hold spaces: read the fields after it.
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def processes_naming(text: str) -> list[int]:
    """The processes whose command line contains ``text``."""
    needle, found = text.encode(), []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return found


def find_kernel_pid(kernel_id: str) -> int | None:
    """The kernel process: its command line names the connection file ``kernel-<id>.json``."""
    found = processes_naming(f"kernel-{kernel_id}.json")
    return found[0] if found else None


class MemorySampler:
    """Samples the RSS of a kernel's process tree in a background thread, keeping the peak."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_tree_rss_kb = 0
        self.max_children = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(SAMPLE_INTERVAL_S)

    def sample(self) -> None:
        children = descendants(self.pid)
        total = status_kb(self.pid, "VmRSS") + sum(status_kb(c, "VmRSS") for c in children)
        self.peak_tree_rss_kb = max(self.peak_tree_rss_kb, total)
        self.max_children = max(self.max_children, len(children))

    def high_water_marks_kb(self) -> tuple[int, int]:
        """VmHWM of the kernel and the sum of its live children's VmHWM, read now."""
        return status_kb(self.pid, "VmHWM"), sum(status_kb(c, "VmHWM") for c in descendants(self.pid))


# --------------------------------------------------------------------------------------------------
# 3. One notebook in the browser
# --------------------------------------------------------------------------------------------------

# JavaScript run in the page. `window.jupyterapp` is JupyterLab's application object
# (exposed by --LabApp.expose_app_in_browser); the current widget is the notebook panel.
JS_KERNEL_STATE = """
() => {
  const app = window.jupyterapp;
  const panel = app && app.shell.currentWidget;
  if (!panel || !panel.sessionContext || !panel.context) return null;
  const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
  return {path: panel.context.path, ready: panel.sessionContext.isReady,
          status: kernel ? kernel.status : null, id: kernel ? kernel.id : null};
}
"""

JS_START_RUN_ALL = """
async () => {
  const app = window.jupyterapp;
  await app.commands.execute('notebook:clear-all-cell-outputs');
  window.__binderCheckRun = null;
  app.commands.execute('notebook:run-all-cells').then(
    (ok) => { window.__binderCheckRun = {finished: true, ok: ok === true}; },
    (error) => { window.__binderCheckRun = {finished: true, ok: false, error: String(error)}; });
  return true;
}
"""

# Progress: the kernel's status, the prompts still showing [*], and per code cell whether it ran
# and whether the notebook model holds an error output (output_type "error": an exception, not a
# stderr warning nor a traceback printed to stderr).
JS_PROGRESS = r"""
() => {
  const app = window.jupyterapp;
  const panel = app.shell.currentWidget;
  const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
  const cells = panel.content.model.cells;
  let code = 0, executed = 0;
  const errors = [];
  for (let i = 0; i < cells.length; i++) {
    const cell = cells.get(i);
    if (cell.type !== 'code') continue;
    code += 1;
    if (cell.executionCount) executed += 1;
    for (const output of cell.outputs.toJSON()) {
      if (output.output_type === 'error') {
        errors.push({cell: i, code_cell: code, ename: output.ename,
                     evalue: String(output.evalue).slice(0, 300)});
      }
    }
  }
  // Cross-check in the page: JupyterLab renders an error with the stderr MIME type, like a warning,
  // and no class of its own; what marks it is IPython's traceback header (a red dashed line, then
  // "Name   Traceback (most recent call last)").
  const header = /^-{20,}\s*\n\S+\s+Traceback \(most recent call last\)/;
  const domTracebacks = [...panel.node.querySelectorAll(
      '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')]
    .filter((o) => header.test(o.textContent)).length;
  const running = [...panel.node.querySelectorAll('.jp-InputArea-prompt')]
    .filter((p) => p.textContent.includes('*')).length;
  return {status: kernel ? kernel.status : null, running, code, executed, errors, domTracebacks,
          run: window.__binderCheckRun};
}
"""

# The notebook scrolls inside `.jp-WindowedPanel-outer`; `-inner` holds every cell. In JupyterLab's
# default "contentVisibility" windowing mode, cells off screen are not painted and their height is
# only estimated, so the screenshot grows the viewport to the notebook's height until it settles.
JS_PREPARE_SCREENSHOT = """
async () => {
  const app = window.jupyterapp;
  app.shell.collapseLeft();
  app.shell.collapseRight();
  await app.commands.execute('docmanager:save');
}
"""

JS_MEASURE = """
() => {
  const panel = window.jupyterapp.shell.currentWidget;
  const outer = panel.node.querySelector('.jp-WindowedPanel-outer');
  const inner = panel.node.querySelector('.jp-WindowedPanel-inner');
  outer.scrollTop = 0;
  const chrome = window.innerHeight - outer.clientHeight;  // menus, toolbar, status bar
  return Math.ceil(chrome + inner.scrollHeight + 20);
}
"""


@dataclass
class NotebookResult:
    notebook: str
    status: str = "not run"  # ok | errors | timeout | failed | over memory
    wall_seconds: float | None = None
    peak_memory_mb: float | None = None
    kernel_vmhwm_mb: float | None = None
    children_vmhwm_mb: float | None = None
    sampled_peak_tree_rss_mb: float | None = None
    max_child_processes: int = 0
    code_cells: int = 0
    executed_cells: int = 0
    error_cells: int = 0
    dom_tracebacks: int = 0  # error outputs seen in the page: a cross-check of error_cells
    errors: list[dict[str, Any]] = field(default_factory=list)
    screenshot: str | None = None
    screenshot_truncated: bool = False
    kernel_executable: str | None = None
    message: str = ""


def wait_for(condition: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.5)


def session_kernel_id(server: Server, path: str) -> str | None:
    for session in server.api("api/sessions"):
        if session.get("path") == path and session.get("kernel"):
            return str(session["kernel"]["id"])
    return None


def run_notebook(browser: Any, server: Server, notebook: Path, timeout: float) -> NotebookResult:
    name = notebook.name
    path = f"notebooks/{name}"
    result = NotebookResult(notebook=name)
    page = browser.new_page(viewport=VIEWPORT)
    try:
        page.goto(f"{server.url}lab/tree/{path}?reset&token={server.token}")
        state = wait_for(
            lambda: (s := page.evaluate(JS_KERNEL_STATE)) and s["path"] == path
            and s["ready"] and s["status"] == "idle" and s,
            180, "the notebook to open and its kernel to be idle",
        )
        kernel_id = session_kernel_id(server, path) or state["id"]
        pid = wait_for(lambda: find_kernel_pid(kernel_id), 30, "the kernel process")
        result.kernel_executable = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
        log(f"{name}: kernel {kernel_id[:8]} (pid {pid}, {result.kernel_executable}) is idle; run all")

        with MemorySampler(pid) as sampler:
            page.evaluate(JS_START_RUN_ALL)
            start = time.monotonic()
            progress: dict[str, Any] = {}
            last_report = start
            while True:
                time.sleep(POLL_INTERVAL_S)
                progress = page.evaluate(JS_PROGRESS)
                finished = (progress["run"] or {}).get("finished")
                if finished and progress["status"] == "idle" and progress["running"] == 0:
                    break
                elapsed = time.monotonic() - start
                if elapsed > timeout:
                    result.status = "timeout"
                    result.message = f"not finished after {timeout:.0f} s"
                    break
                if time.monotonic() - last_report > 30:
                    log(f"{name}: {progress['executed']}/{progress['code']} code cells run, "
                        f"{elapsed:.0f} s")
                    last_report = time.monotonic()
            result.wall_seconds = round(time.monotonic() - start, 1)
            sampler.sample()
            kernel_hwm, children_hwm = sampler.high_water_marks_kb()

        result.code_cells = progress["code"]
        result.executed_cells = progress["executed"]
        result.errors = progress["errors"]
        result.error_cells = len({e["cell"] for e in progress["errors"]})
        result.dom_tracebacks = progress["domTracebacks"]
        if result.dom_tracebacks != len(progress["errors"]):
            result.message = (f"the page shows {result.dom_tracebacks} tracebacks, the notebook "
                              f"model {len(progress['errors'])} error outputs")
        result.kernel_vmhwm_mb = round(kernel_hwm / 1024, 1)
        result.children_vmhwm_mb = round(children_hwm / 1024, 1)
        result.sampled_peak_tree_rss_mb = round(sampler.peak_tree_rss_kb / 1024, 1)
        result.max_child_processes = sampler.max_children
        result.peak_memory_mb = round(max(kernel_hwm + children_hwm, sampler.peak_tree_rss_kb) / 1024, 1)
        if result.status != "timeout":
            if result.error_cells:
                result.status = "errors"
            elif result.executed_cells < result.code_cells:
                result.status = "failed"
                result.message = f"{result.code_cells - result.executed_cells} code cells never ran"
            elif result.peak_memory_mb > BINDER_LIMIT_MB:
                result.status = "over memory"
            else:
                result.status = "ok"
        result.screenshot, result.screenshot_truncated = take_screenshot(page, notebook.stem)
        log(f"{name}: {result.status} in {result.wall_seconds} s, peak {result.peak_memory_mb} MB")
    except Exception as error:  # one notebook's failure must not stop the others
        result.status = "failed"
        result.message = f"{type(error).__name__}: {error}"
        log(f"{name}: FAILED: {result.message}")
        try:
            result.screenshot, _ = take_screenshot(page, notebook.stem)
        except Exception:
            pass
    finally:
        shut_down_kernel(server, path)
        page.close()
    return result


def take_screenshot(page: Any, stem: str) -> tuple[str, bool]:
    """A screenshot of the whole notebook, top first: the viewport grown to the notebook's height
    (at most MAX_SCREENSHOT_HEIGHT; True in the answer when the notebook was taller)."""
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    target = OUTPUT_DIR / f"{stem}.png"
    truncated = False
    try:
        page.evaluate(JS_PREPARE_SCREENSHOT)
        height = VIEWPORT["height"]
        for _ in range(8):  # each growth paints more cells, whose real heights may differ
            wanted = page.evaluate(JS_MEASURE)
            truncated = wanted > MAX_SCREENSHOT_HEIGHT
            new_height = min(max(wanted, VIEWPORT["height"]), MAX_SCREENSHOT_HEIGHT)
            if new_height == height:
                break
            height = new_height
            page.set_viewport_size({"width": VIEWPORT["width"], "height": height})
            page.wait_for_timeout(1000)  # let the newly visible cells render
    except Exception:
        pass  # a page that never showed a notebook is still worth a picture
    page.screenshot(path=str(target))
    return str(target.relative_to(REPO_ROOT)), truncated


def shut_down_kernel(server: Server, path: str) -> None:
    try:
        for session in server.api("api/sessions"):
            if session.get("path") == path:
                server.api(f"api/sessions/{session['id']}", method="DELETE")
    except OSError as error:
        log(f"could not shut the kernel of {path} down: {error}")


# --------------------------------------------------------------------------------------------------
# 5. Facts and summary
# --------------------------------------------------------------------------------------------------


def environment_facts(args: argparse.Namespace, venv: Path, env: dict[str, str]) -> dict[str, Any]:
    probe = (
        "import json, platform, torch, jupyterlab, transformers; print(json.dumps({"
        "'python': platform.python_version(), 'torch': torch.__version__, "
        "'torch_threads': torch.get_num_threads(), 'jupyterlab': jupyterlab.__version__, "
        "'transformers': transformers.__version__}))"
    )
    venv_facts = json.loads(
        subprocess.run([str(venv / "bin" / "python"), "-c", probe], env=env, check=True,
                       capture_output=True, text=True).stdout
    )
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines()
                  if line.startswith("model name")), platform.processor())
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines()
                  if line.startswith("flags")), [])
    chromium = subprocess.run([str(CHROMIUM), "--version"], capture_output=True, text=True).stdout
    return {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "profile": args.profile,
        "omp_num_threads": env.get("OMP_NUM_THREADS", "unset"),
        "cpu_count": os.cpu_count(),
        "cpu_model": model,
        "avx512_bf16": "avx512_bf16" in flags,
        "amx_bf16": "amx_bf16" in flags,
        "venv": venv_facts,
        "chromium": chromium.strip(),
        "data": str(args.data.resolve()),
        "git_commit": subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT,
                                     capture_output=True, text=True).stdout.strip(),
        "git_dirty": bool(subprocess.run(["git", "status", "--porcelain"], cwd=REPO_ROOT,
                                         capture_output=True, text=True).stdout.strip()),
    }


def print_table(results: list[NotebookResult]) -> None:
    header = f"{'notebook':<34} {'status':<11} {'seconds':>8} {'peak MB':>8} {'errors':>6} {'cells':>7}  screenshot"
    print("\n" + header + "\n" + "-" * len(header))
    for r in results:
        seconds = "-" if r.wall_seconds is None else f"{r.wall_seconds:.1f}"
        memory = "-" if r.peak_memory_mb is None else f"{r.peak_memory_mb:.0f}"
        print(f"{r.notebook:<34} {r.status:<11} {seconds:>8} {memory:>8} {r.error_cells:>6} "
              f"{r.executed_cells:>3}/{r.code_cells:<3}  {r.screenshot or '-'}")
        for error in r.errors:
            print(f"    cell {error['cell']}: {error['ename']}: {error['evalue']}")
        if r.message:
            print(f"    {r.message}")
    print()


# --------------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Run every notebook in JupyterLab, in a real browser, in the Binder environment.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--profile", choices=["smoke", "classroom"], default="classroom",
                        help="BITFIT_EDU_PROFILE for the kernels (classroom: what a Binder user gets)")
    parser.add_argument("--notebooks", nargs="+", metavar="NAME",
                        help="notebooks to run: stems or file names in notebooks/, or paths to other .ipynb "
                             "files (copied into the scratch copy); default: every notebooks/*.ipynb")
    parser.add_argument("--threads", type=int,
                        help="OMP_NUM_THREADS for the kernels; default: unset, as on Binder")
    parser.add_argument("--timeout", type=float, default=15 * 60,
                        help="seconds one notebook may take to run all its cells")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR,
                        help="scratch folder: the virtualenv, the repository copy, the logs")
    parser.add_argument("--rebuild", action="store_true",
                        help="build the virtualenv again even if one exists")
    parser.add_argument("--python", default=DEFAULT_PYTHON,
                        help="the Python 3.11 that creates the virtualenv")
    parser.add_argument("--pip-retries", type=int,
                        help="pass --retries N to pip; 0 makes an unreachable index fail at once "
                             "instead of costing ~8 s per package (default: pip's own)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="offline data: glue_data/ and hf-hub/ (BITFIT_EDU_DATA)")
    parser.add_argument("--untracked", action="store_true",
                        help="also copy untracked files that git does not ignore (work in progress)")
    parser.add_argument("--headed", action="store_true", help="show the browser (needs a display)")
    return parser.parse_args(argv)


def select_notebooks(repo_copy: Path, names: list[str] | None) -> list[Path]:
    """The notebooks to run: every notebooks/*.ipynb, or those named (stem or file name). A path to
    an .ipynb file elsewhere is copied into the copy's notebooks/ folder and run from there."""
    folder = repo_copy / "notebooks"
    available = sorted(folder.glob("*.ipynb"))
    if not names:
        return available
    by_name = {p.stem: p for p in available} | {p.name: p for p in available}
    chosen, missing = [], []
    for name in names:
        if name in by_name:
            chosen.append(by_name[name])
        elif name.endswith(".ipynb") and Path(name).is_file():
            target = folder / Path(name).name
            shutil.copy2(name, target)
            chosen.append(target)
        else:
            missing.append(name)
    if missing:
        raise SystemExit(f"no such notebook(s): {', '.join(missing)}; "
                         f"available: {', '.join(p.stem for p in available)}")
    return chosen


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not CHROMIUM.exists():
        print(f"{CHROMIUM} is missing. Install it once with:\n"
              "    apt-get update && apt-get install -y chromium", file=sys.stderr)
        return 2
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        print(f"Playwright is missing from {sys.executable}. Install it once with:\n"
              f"    {sys.executable} -m pip install playwright\n"
              "(never `playwright install`: the script drives /usr/bin/chromium)", file=sys.stderr)
        return 2

    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    repo_copy, venv, home = workdir / "repo", workdir / "venv", workdir / "home"
    copied = copy_checkout(REPO_ROOT, repo_copy, args.untracked)
    log(f"copied {copied} files of {REPO_ROOT} to {repo_copy}")
    try:
        build = build_environment(workdir, repo_copy, args.python, args.rebuild, args.pip_retries)
    except RuntimeError as error:
        log(f"the Binder environment did not build: {error}")
        return 2
    notebooks = select_notebooks(repo_copy, args.notebooks)

    if home.exists():
        shutil.rmtree(home)
    home.mkdir()
    env = kernel_environment(args, venv, home)
    write_user_settings(Path(env["JUPYTERLAB_SETTINGS_DIR"]))
    facts = environment_facts(args, venv, env)
    log(f"profile {args.profile}, OMP_NUM_THREADS {facts['omp_num_threads']}, "
        f"torch {facts['venv']['torch']} ({facts['venv']['torch_threads']} threads)")

    results: list[NotebookResult] = []
    server_peak_mb: float | None = None
    aborted: str | None = None
    try:
        with jupyterlab(venv, repo_copy, env, workdir / "jupyter.log") as server, \
                sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), headless=not args.headed,
                args=["--no-sandbox", "--disable-dev-shm-usage"],
            )
            try:
                for notebook in notebooks:
                    results.append(run_notebook(browser, server, notebook, args.timeout))
            finally:
                browser.close()
                server_peak_mb = round(status_kb(server.process.pid, "VmHWM") / 1024, 1)
    except Exception as error:  # JupyterLab or the browser failed: still write what we have
        aborted = f"{type(error).__name__}: {error}"
        log(f"ABORTED: {aborted}")
    done = {r.notebook for r in results}
    results += [NotebookResult(notebook=n.name, message="not reached") for n in notebooks
                if n.name not in done]

    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    summary = {
        "environment": facts,
        "build": asdict(build),
        "aborted": aborted,
        "memory_limit_mb": BINDER_LIMIT_MB,
        "peak_memory_note": "max(kernel VmHWM + children's VmHWM just before shutdown, sampled peak "
                            "RSS of the kernel's process tree). The JupyterLab server, also inside "
                            "Binder's limit, is counted apart: jupyterlab_server_vmhwm_mb",
        "jupyterlab_server_vmhwm_mb": server_peak_mb,
        "timeout_seconds": args.timeout,
        "notebooks": [asdict(r) for r in results],
    }
    SUMMARY_FILE.write_text(json.dumps(summary, indent=2) + "\n")
    print_table(results)
    log(f"summary: {SUMMARY_FILE.relative_to(REPO_ROOT)}")
    if server_peak_mb is not None:
        log(f"JupyterLab server peak RSS: {server_peak_mb:.0f} MB (not in the per-notebook figures)")
    bad = [r.notebook for r in results if r.status != "ok"]
    if bad or aborted:
        log(f"FAILED: {', '.join(bad) or aborted}")
        return 1
    log("every notebook ran without errors within Binder's memory limit")
    return 0


if __name__ == "__main__":
    sys.exit(main())
