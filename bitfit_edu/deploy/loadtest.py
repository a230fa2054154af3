"""A load test of the service (``service.py``), bounded in count and time, on 127.0.0.1 only.

``start_service`` runs ``python -m bitfit_edu serve`` in a process of its own; ``load`` sends a fixed list of
requests from many tasks at a given concurrency with aiohttp's client and times each (``timed_load``:
also where the time went, from ``health``); ``check`` compares
every answer with the logits each task's own model gives (no wrong task, no lost request); ``summary``
gives throughput and latency percentiles; ``targets`` says which of the issue's targets one run met, and
``repeated`` gives each target's median and range over runs repeated on one machine (a 2-core machine's
figures move from run to run). The load generator shares the machine's cores with the service, so it must be
light (aiohttp's client, with C parsers); each load records its CPU time per request.
``benchmarks/load_test.py`` runs it on the classroom model, and
``tests/test_loadtest.py`` at a small size in CI.
"""

from __future__ import annotations

import asyncio
import os
import random
import resource
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import httpx
import numpy as np
import torch

from ..core.readout import load_tokenizer
from ..errors import BitFitError
from .serving import MultiTask


@dataclass(frozen=True)
class Sent:
    """One request of a load test and what came back."""

    task: str
    text: str
    status: int
    seconds: float
    answer: dict | None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_service(deltas: Path, *options: str, timeout: float = 180.0) -> tuple[subprocess.Popen, str]:
    """``serve`` on a free port of 127.0.0.1, once it answers ``/healthz``; returns the process and its URL."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "bitfit_edu", "serve", "--deltas", str(deltas), "--port",
                                str(port), *options], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise BitFitError(f"the service stopped while starting: {process.stderr.read()[-500:]}")
        try:
            if httpx.get(f"{url}/healthz", timeout=5).json().get("status") == "ok":
                return process, url
        except httpx.TransportError:
            time.sleep(0.3)
    process.kill()
    raise BitFitError(f"the service did not answer /healthz within {timeout:.0f} s")


def stop_service(process: subprocess.Popen) -> str:
    """SIGTERM, then what it printed."""
    process.terminate()
    out, _ = process.communicate(timeout=60)
    return out


def resident_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def requests_for(tasks: list[str], texts: list[str], count: int, seed: int = 0) -> list[tuple[str, str]]:
    """``count`` (task, text) requests drawn at random, reproducibly."""
    generator = random.Random(seed)
    return [(generator.choice(tasks), generator.choice(texts)) for _ in range(count)]


async def _load(url: str, requests: list[tuple[str, str]], concurrency: int, timeout: float) -> list[Sent]:
    queue = list(enumerate(requests))
    sent: list[Sent | None] = [None] * len(requests)

    async def worker(session: aiohttp.ClientSession) -> None:
        while queue:
            index, (task, text) = queue.pop()
            started = time.perf_counter()
            try:
                async with session.post(f"{url}/v1/predict", json={"task": task, "text": text}) as response:
                    status, answer = response.status, await response.json()
            except (aiohttp.ClientError, TimeoutError):
                status, answer = 0, None
            sent[index] = Sent(task, text, status, time.perf_counter() - started, answer)

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout)) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return sent


def load(url: str, requests: list[tuple[str, str]], concurrency: int,
         timeout: float = 60.0) -> tuple[list[Sent], float]:
    """Send ``requests`` with ``concurrency`` in flight at a time; the answers and the wall seconds. The client
    runs its own event loop in a thread, so this works in a notebook too (whose kernel runs a loop already)."""
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=1) as thread:
        sent = thread.submit(asyncio.run, _load(url, requests, concurrency, timeout)).result()
    return sent, time.perf_counter() - started


def health(url: str) -> dict:
    """The service's ``/healthz``: its tasks, requests answered, batches, model seconds and threads so far."""
    return httpx.get(f"{url}/healthz", timeout=30).json()


def cpu_seconds() -> float:
    """CPU time this process (the load generator) has used so far."""
    used = resource.getrusage(resource.RUSAGE_SELF)
    return used.ru_utime + used.ru_stime


def timed_load(url: str, requests: list[tuple[str, str]], concurrency: int) -> tuple[list[Sent], float, dict]:
    """``load``, the wall seconds, and where the time went: the share of it the model spent answering (per model
    worker; the rest went to HTTP, JSON, tokenizing, batching, on the same cores), the mean rows of a batch, and
    the load generator's own CPU milliseconds per request."""
    before, cpu = health(url), cpu_seconds()
    sent, seconds = load(url, requests, concurrency)
    cpu, after = cpu_seconds() - cpu, health(url)
    batches = after["batches"] - before["batches"]
    model_seconds = (after["model_seconds"] - before["model_seconds"]) / after["model_workers"]
    return sent, seconds, {"model share": model_seconds / seconds,
                           "rows per batch": (after["answered"] - before["answered"]) / max(batches, 1),
                           "client CPU ms per request": 1000 * cpu / len(requests)}


@torch.no_grad()
def expected_logits(server: MultiTask, pairs: set[tuple[str, str]]) -> dict[tuple[str, str], torch.Tensor]:
    """Each (task, text)'s logits from its own task switched in, one text at a time (no padding)."""
    tokenizer = load_tokenizer(next(iter(server.tasks.values())).manifest.model)
    found = {}
    for task, text in sorted(pairs):
        server.switch(task)
        found[(task, text)] = server.logits(dict(tokenizer(text, return_tensors="pt")))[0]
    return found


def check(sent: list[Sent], expected: dict[tuple[str, str], torch.Tensor], tolerance: float = 1e-4) -> dict:
    """Lost requests (no 200 answer), answers for another task, and answers whose logits differ from the own
    task's model by more than ``tolerance``."""
    lost = [s for s in sent if s.status != 200 or s.answer is None]
    answered = [s for s in sent if s not in lost]
    wrong_task = [s for s in answered if s.answer["task"] != s.task]
    wrong_logits = [s for s in answered if float((torch.tensor(s.answer["logits"])
                                                   - expected[(s.task, s.text)]).abs().max()) > tolerance]
    return {"requests": len(sent), "lost": len(lost), "wrong_task": len(wrong_task), "wrong_logits": len(wrong_logits)}


def summary(sent: list[Sent], seconds: float) -> dict:
    """Throughput and latency percentiles (milliseconds) of one load."""
    latencies = np.array([s.seconds for s in sent]) * 1000
    return {"requests_per_second": len(sent) / seconds, "p50_ms": float(np.percentile(latencies, 50)),
            "p95_ms": float(np.percentile(latencies, 95)), "p99_ms": float(np.percentile(latencies, 99)),
            "seconds": seconds, "cpu_count": os.cpu_count()}


SPEEDUP = "throughput at concurrency 32 / one at a time"
GROWTH = "RSS growth over the soak"
ERRORS = "lost or wrong answers"


def targets(loads: list[dict], soak: dict) -> dict[str, dict]:
    """One run's targets: mixed batches at concurrency 32 at least twice as fast as one request at a time
    with a task switch, the resident memory grown by at most 5% over the soak, and no lost or wrong answer."""
    at = {(row["service"], row["concurrency"]): row["requests_per_second"] for row in loads}
    speedup = at[("mixed batches", 32)] / at[("one at a time, task switch", 32)]
    errors = sum(row["lost"] + row["wrong_task"] + row["wrong_logits"] for row in [*loads, soak])
    return {SPEEDUP: {"measured": speedup, "target": ">= 2", "met": speedup >= 2},
            GROWTH: {"measured": soak["growth"], "target": "<= 0.05", "met": soak["growth"] <= 0.05},
            ERRORS: {"measured": errors, "target": "0", "met": errors == 0}}


def mixed_service(precision: str) -> str:
    """The name of the mixed-batch service on a backbone format in a load test's rows."""
    return "mixed batches" if precision == "fp32" else f"mixed batches, {precision} backbone"


PRECISION_SPEEDUP = 1.6  # the least throughput at concurrency 32 a bf16 or int8 backbone must reach, times fp32's


def precision_targets(loads: list[dict], soaks: dict[str, dict]) -> dict[str, dict]:
    """Each bf16 or int8 service's targets: at concurrency 32 at least ``PRECISION_SPEEDUP`` times the fp32 mixed
    service's throughput, its resident memory grown by at most 5% over its soak, and no lost or wrong answer
    there (its loads' answers count in ``targets``)."""
    at = {(row["service"], row["concurrency"]): row["requests_per_second"] for row in loads}
    found = {}
    for precision, soak in soaks.items():
        if precision == "fp32":
            continue
        speedup = at[(mixed_service(precision), 32)] / at[(mixed_service("fp32"), 32)]
        found[f"{precision} / fp32 throughput at concurrency 32"] = {
            "measured": speedup, "target": f">= {PRECISION_SPEEDUP:g}", "met": speedup >= PRECISION_SPEEDUP}
        found[f"{GROWTH}, {precision}"] = {"measured": soak["growth"], "target": "<= 0.05",
                                           "met": soak["growth"] <= 0.05}
        errors = soak["lost"] + soak["wrong_task"] + soak["wrong_logits"]
        found[f"{ERRORS} over the soak, {precision}"] = {"measured": errors, "target": "0", "met": errors == 0}
    return found


def setting(run: dict) -> str:
    """A run's service setting: its ``--memory-release``, and its ``--workers`` where the load test gave one."""
    workers = run.get("workers")
    return run["memory_release"] + (f", {workers} worker{'s' * (workers > 1)}" if workers else "")


def repeated(runs: list[dict]) -> dict[str, dict[str, dict]]:
    """Each setting's targets over its repeated runs: the median, the smallest and the largest measured, and in
    how many runs the target was met."""
    by_setting: dict[str, list[dict]] = {}
    for found in runs:
        by_setting.setdefault(setting(found), []).append(found["targets"])
    return {setting: {name: {"median": statistics.median(t[name]["measured"] for t in found),
                             "min": min(t[name]["measured"] for t in found),
                             "max": max(t[name]["measured"] for t in found),
                             "target": found[0][name]["target"],
                             "met_in": sum(t[name]["met"] for t in found), "runs": len(found)}
                      for name in found[0]}
            for setting, found in by_setting.items()}


def served_rates(runs: list[dict], concurrency: int = 32) -> dict[str, dict]:
    """Each service's requests per second at ``concurrency`` over repeated runs: the median, smallest and
    largest, with its backbone format, model workers and their threads."""
    found: dict[str, list[dict]] = {}
    for run in runs:
        for row in run["loads"]:
            if row["concurrency"] == concurrency:
                found.setdefault(row["service"], []).append(row)
    return {service: {"format": rows[0]["precision"], "model workers": rows[0].get("model workers", 1),
                      "model threads": rows[0]["model threads"],
                      "median": statistics.median(row["requests_per_second"] for row in rows),
                      "smallest": min(row["requests_per_second"] for row in rows),
                      "largest": max(row["requests_per_second"] for row in rows), "runs": len(rows)}
            for service, rows in found.items()}


KEPT = "memory and answers kept in every run"
SPEED = "median requests/s at concurrency 32 (geometric mean over formats)"


def memory_release_choice(runs: list[dict]) -> dict:
    """Which ``--memory-release`` to serve with, by a rule fixed before the repeated runs that decide it: of the
    settings whose memory-growth and no-wrong-answer targets were met in every run, at every backbone format,
    the one whose mixed services answered most at concurrency 32 (the median over runs of the geometric mean
    over formats of requests per second)."""
    by_setting: dict[str, list[dict]] = {}
    for found in runs:
        by_setting.setdefault(found["memory_release"], []).append(found)
    found = {}
    for setting, its_runs in by_setting.items():
        kept = all(t["met"] for run in its_runs for name, t in run["targets"].items()
                   if name.startswith((GROWTH, ERRORS)))
        speeds = [statistics.geometric_mean(row["requests_per_second"] for row in run["loads"]
                                            if row["concurrency"] == 32 and row["service"].startswith("mixed"))
                  for run in its_runs]
        found[setting] = {KEPT: kept, SPEED: statistics.median(speeds)}
    kept = [setting for setting, f in found.items() if f[KEPT]]
    return {"settings": found, "chosen": max(kept, key=lambda setting: found[setting][SPEED]) if kept else None}


LONE_CLIENT_KEPT = 0.9  # the least share of one worker's throughput for a lone client that two workers must keep


def workers_choice(runs: list[dict]) -> dict[str, dict]:
    """For each backbone format, whether ``serve`` should answer with two model workers of one thread each rather
    than one, by a rule fixed before the repeated runs that decide it: two workers if their median requests per
    second at concurrency 32 is higher than one worker's, and their median at concurrency 1 is at least
    ``LONE_CLIENT_KEPT`` of it (a lone client's requests go through one worker, with fewer threads). ``runs``
    holds the load test's runs with ``--workers 1`` and with ``--workers 2``."""
    def medians(runs: list[dict], concurrency: int) -> dict[str, float]:
        return {row["format"]: row["median"] for service, row in served_rates(runs, concurrency).items()
                if service.startswith("mixed")}

    one_worker, two_workers = ([run for run in runs if run["workers"] == count] for count in (1, 2))
    one = {concurrency: medians(one_worker, concurrency) for concurrency in (1, 32)}
    two = {concurrency: medians(two_workers, concurrency) for concurrency in (1, 32)}
    return {precision: {"one worker at 32": one[32][precision], "two workers at 32": two[32][precision],
                        "one worker at 1": one[1][precision], "two workers at 1": two[1][precision],
                        "two workers": two[32][precision] > one[32][precision]
                        and two[1][precision] >= LONE_CLIENT_KEPT * one[1][precision]}
            for precision in one[32]}
