#!/usr/bin/env python3
"""Use the lab (notebook 07) as a student would, in JupyterLab in headless Chromium, and photograph it.

It builds (or reuses) the Binder environment and starts JupyterLab exactly as ``binder_check.py`` does,
opens ``notebooks/07_lab.ipynb`` and runs all its cells: the lab appears, and the notebook makes one run
from code. Then, in the browser, it does what the lab asks of a student: unticks every bias box but b_q
and b_m2, chooses *the chosen biases*, presses **Train**, and waits until the run joins the table. It
saves a screenshot of the lab (``docs/lab/lab.png``) and writes ``docs/lab/lab_check.json``: the seconds
from the click to the finished run, the kernel's peak memory (Binder's limit is 2 GB), and what the
table shows.

    python3 scripts/lab_check.py --pip-retries 0          # offline: see binder_check.py
    python3 scripts/lab_check.py --profile smoke          # quick

Set-up, once: see ``binder_check.py`` (chromium from Debian, ``pip install playwright``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import binder_check as binder

OUTPUT_DIR = binder.REPO_ROOT / "docs" / "lab"
NOTEBOOK = "notebooks/07_lab.ipynb"
KEEP = {"b_q", "b_m2", "head"}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=["smoke", "classroom"], default="classroom")
    parser.add_argument("--threads", type=int, help="OMP_NUM_THREADS for the kernel; default: unset, as on Binder")
    parser.add_argument("--timeout", type=float, default=15 * 60, help="seconds for the notebook, and for the run")
    parser.add_argument("--workdir", type=Path, default=binder.DEFAULT_WORKDIR)
    parser.add_argument("--python", default=binder.DEFAULT_PYTHON)
    parser.add_argument("--pip-retries", type=int)
    parser.add_argument("--data", type=Path, default=binder.DEFAULT_DATA)
    return parser.parse_args()


def run_all(page, timeout: float) -> dict:
    """Run every cell of the open notebook and wait until the kernel is idle again."""
    page.evaluate(binder.JS_START_RUN_ALL)
    return binder.wait_for(lambda: (p := page.evaluate(binder.JS_PROGRESS)) and (p["run"] or {}).get("finished")
                           and p["status"] == "idle" and p["running"] == 0 and p, timeout, "Run All to finish")


def use_the_lab(page, timeout: float) -> dict:
    """Untick every bias box but b_q and b_m2, choose the chosen biases, press Train, wait for the run."""
    boxes = page.locator(".widget-checkbox")
    boxes.first.scroll_into_view_if_needed()
    unticked = []
    for index in range(boxes.count()):
        box = boxes.nth(index)
        label = box.inner_text().strip()
        if label not in KEEP and box.locator("input").is_checked():
            box.locator("input").uncheck()
            unticked.append(label)
    page.locator("button.jupyter-button", has_text="the chosen biases").click()
    counts = page.locator(".widget-html table").first.inner_text()
    started = time.monotonic()
    page.locator("button.jupyter-button", has_text="Train").click()
    binder.wait_for(lambda: "lab #2" in page.locator(".widget-html").all_inner_texts()[-1], timeout,
                    "the run from the Train button to finish")
    seconds = time.monotonic() - started
    texts = page.locator(".widget-html").all_inner_texts()
    return {"unticked": unticked, "counts_after_unticking": counts, "run_seconds": round(seconds, 1),
            "status": texts[-2].strip(), "table": texts[-1].strip()}


def main() -> int:
    args = parse_args()
    from playwright.sync_api import sync_playwright

    workdir = args.workdir.resolve()
    repo_copy, venv, home = workdir / "repo", workdir / "venv", workdir / "home"
    binder.copy_checkout(binder.REPO_ROOT, repo_copy, untracked=False)
    binder.build_environment(workdir, repo_copy, args.python, False, args.pip_retries)
    if home.exists():
        shutil.rmtree(home)
    home.mkdir()
    env = binder.kernel_environment(args, venv, home)
    binder.write_user_settings(Path(env["JUPYTERLAB_SETTINGS_DIR"]))
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    with binder.jupyterlab(venv, repo_copy, env, workdir / "jupyter.log") as server, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(binder.CHROMIUM), headless=True,
                                             args=["--no-sandbox", "--disable-dev-shm-usage"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{server.url}lab/tree/{NOTEBOOK}?reset&token={server.token}")
        binder.wait_for(lambda: (s := page.evaluate(binder.JS_KERNEL_STATE)) and s["path"] == NOTEBOOK
                        and s["ready"] and s["status"] == "idle", 180, "the notebook's kernel")
        pid = binder.wait_for(lambda: binder.find_kernel_pid(binder.session_kernel_id(server, NOTEBOOK)), 30,
                              "the kernel process")
        with binder.MemorySampler(pid) as sampler:
            started = time.monotonic()
            progress = run_all(page, args.timeout)
            notebook_seconds = time.monotonic() - started
            try:
                used = use_the_lab(page, args.timeout)
            except Exception:
                page.screenshot(path=str(OUTPUT_DIR / "lab_failed.png"), full_page=True)
                print("the lab's texts when it failed:", page.locator(".widget-html").all_inner_texts())
                raise
            sampler.sample()
            kernel_hwm, children_hwm = sampler.high_water_marks_kb()
        page.locator(".jp-OutputArea-output .widget-vbox").first.screenshot(path=str(OUTPUT_DIR / "lab.png"))
        browser.close()
        server_mb = binder.status_kb(server.process.pid, "VmHWM") / 1024
    peak_mb = max(kernel_hwm + children_hwm, sampler.peak_tree_rss_kb) / 1024
    summary = {"profile": args.profile, "notebook_seconds": round(notebook_seconds, 1),
               "errors": progress["errors"], **used, "kernel_peak_memory_mb": round(peak_mb),
               "jupyterlab_server_mb": round(server_mb), "binder_limit_mb": binder.BINDER_LIMIT_MB,
               "screenshot": str((OUTPUT_DIR / "lab.png").relative_to(binder.REPO_ROOT)),
               "environment": binder.environment_facts(args, venv, env)}
    (OUTPUT_DIR / "lab_check.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    ok = not progress["errors"] and "b_q + b_m2" in used["table"] and peak_mb + server_mb <= binder.BINDER_LIMIT_MB
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
