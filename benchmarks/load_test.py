r"""The service under load: 64 tasks, concurrency 1, 8 and 32, against one request at a time with a task switch.

    python benchmarks/load_test.py          # a few minutes on 2 cores; run it on a quiet machine

The classroom model's committed SST-2 delta and 63 tasks derived from it by small perturbations
(``deltas.derived_delta``), served by ``python -m bitfit_edu serve`` on 127.0.0.1. Requests draw a task and
one of ``--texts`` real SST-2 dev sentences at random. For each concurrency, the mixed-batch service and the
same service answering one request at a time with a task switch (``--switching``) get the same requests;
every answer is checked against its own task's model (no wrong task, no lost request), and the share of the
time the model spent answering is recorded (near 100%: the model is what limits the service). Then ``--soak``
requests at concurrency 32 check that the server's resident memory grows by at most 5%, read every 1,000
requests (a leak climbs all along; an allocator or a cache that fills levels off). It writes
``results/benchmarks/load_test.json``, with each target met or missed.

With ``--precisions fp32,bf16,int8`` the mixed service runs on each backbone format in turn
(``serve --precision``, with serve's model workers and threads unless ``--workers`` or ``--threads`` is
given); each format's answers are checked against the fp32 answers at its tolerance
(``backbone_precision.REFERENCE_TOLERANCES``), and its throughput at concurrency 32 is set against fp32's.
The committed run, repeated four times (about 25 minutes on 2 cores: 5 to 6 a run)::

    python benchmarks/load_test.py --precisions fp32,bf16,int8 --repeats 4 \
        --output results/benchmarks/load_test_precision_repeats.json

With ``--workers 1 2`` each run measures the mixed services with one model worker and with two (each answering
a batch of its own, the cores shared among them), interleaved; ``loadtest.workers_choice`` says, per format,
which ``serve`` should use (about 25 minutes on 2 cores)::

    python benchmarks/load_test.py --precisions fp32,bf16,int8 --workers 1 2 --repeats 2 \
        --output results/benchmarks/load_test_workers.json

How the service hands freed activations back to the system (``serve --memory-release``) trades memory against
speed, and a 2-core machine's figures move from run to run. To compare the choices on one quiet machine, each
run three times, interleaved, with each target's median and range (``results/benchmarks/load_test_repeats.json``)::

    python benchmarks/load_test.py --memory-release glibc periodic mmap --repeats 3   # 30-50 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from bitfit_edu.console import quiet_outputs
from bitfit_edu.core.precision import cpu_name, hardware_name
from bitfit_edu.core.readout import load_classifier
from bitfit_edu.data import glue
from bitfit_edu.data.locations import results_folder
from bitfit_edu.deploy import loadtest
from bitfit_edu.deploy.backbone_precision import REFERENCE_TOLERANCES, peak_gflops
from bitfit_edu.deploy.deltas import derived_delta
from bitfit_edu.deploy.memory import DEFAULT_MEMORY_RELEASE, MEMORY_RELEASE
from bitfit_edu.deploy.serving import MultiTask
from bitfit_edu.experiments.profiles import get_profile

DELTAS = results_folder("deployment", "classroom", "deltas")
OUTPUT = results_folder("benchmarks", "load_test.json")
REPEATS = results_folder("benchmarks", "load_test_repeats.json")
CONCURRENCY = (1, 8, 32)
SOAK_STEP = 1000  # requests between two readings of the memory check


def http_stack() -> str:
    """What uvicorn serves with here: uvloop and httptools where installed (``uvicorn[standard]``), else
    asyncio and h11, pure Python."""
    fast = [name for name in ("uvloop", "httptools") if importlib.util.find_spec(name)]
    return " + ".join(fast) if len(fast) == 2 else "asyncio + h11"


def measure(deltas: Path, memory_release: str, threads: int | None, workers: int | None, requests: list,
            soak: list, expected: dict, precisions: list[str]) -> dict:
    """One run: the mixed service on each backbone format and the switching one (fp32) at each concurrency, each
    mixed service's memory over the soak. Answers are checked against fp32 at each format's tolerance."""
    rows, soaks = [], {}
    services = [(loadtest.mixed_service(precision), precision, ()) for precision in precisions]
    services.append(("one at a time, task switch", "fp32", ("--switching",)))
    for mode, precision, options in services:
        threads_option = ("--threads", str(threads)) if threads else ()
        if workers and "--switching" not in options:
            threads_option += ("--workers", str(workers))
        tolerance = REFERENCE_TOLERANCES[precision]
        process, url = loadtest.start_service(deltas, "--max-wait-ms", "5", "--memory-release", memory_release,
                                              "--precision", precision, *threads_option, *options)
        try:
            for concurrency in CONCURRENCY:
                loadtest.load(url, requests[:50], concurrency)  # warm-up
                sent, seconds, spent = loadtest.timed_load(url, requests, concurrency)
                found = loadtest.health(url)
                row = {"service": mode, "precision": precision, "model workers": found["model_workers"],
                       "model threads": found["model_threads"],
                       "concurrency": concurrency, **loadtest.summary(sent, seconds), **spent,
                       **loadtest.check(sent, expected, tolerance)}
                rows.append(row)
                print(f"  {mode}, {row['model workers']} x {row['model threads']} model thread(s), concurrency "
                      f"{concurrency}: "
                      f"{row['requests_per_second']:.0f} req/s ({spent['model share']:.0%} of the time in the model, "
                      f"{spent['rows per batch']:.1f} rows a batch, client {spent['client CPU ms per request']:.2f} "
                      f"ms CPU a request), p50 "
                      f"{row['p50_ms']:.0f} ms, p95 {row['p95_ms']:.0f} ms, p99 {row['p99_ms']:.0f} ms; lost "
                      f"{row['lost']}, wrong task {row['wrong_task']}, wrong logits {row['wrong_logits']} "
                      f"(tolerance {tolerance:g})", flush=True)
            if "--switching" not in options:
                sent, curve = [], [loadtest.resident_mb(process.pid)]
                for start in range(0, len(soak), SOAK_STEP):  # RSS after each step: a leak climbs, a cache levels
                    sent += loadtest.load(url, soak[start:start + SOAK_STEP], 32)[0]
                    curve.append(loadtest.resident_mb(process.pid))
                before, after = curve[0], curve[-1]
                soaks[precision] = {"requests": len(soak), "rss_before_mb": before, "rss_after_mb": after,
                                    "growth": after / before - 1, "rss_every_mb": curve, "rss_step": SOAK_STEP,
                                    **loadtest.check(sent, expected, tolerance)}
                print(f"  soak, {precision}: {len(soak):,} requests, RSS {before:.0f} -> {after:.0f} MB (every "
                      f"{SOAK_STEP:,}: {', '.join(f'{mb:.0f}' for mb in curve)})", flush=True)
        finally:
            loadtest.stop_service(process)
    targets = {**loadtest.targets(rows, soaks["fp32"]), **loadtest.precision_targets(rows, soaks)}
    for name, found in targets.items():
        print(f"  {name}: {found['measured']:.4g} (target {found['target']}): {'met' if found['met'] else 'MISSED'}")
    return {"loads": rows, "soak": soaks["fp32"], "soaks": soaks, "targets": targets,
            "memory_release": memory_release, "tolerances": {p: REFERENCE_TOLERANCES[p] for p in precisions},
            "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=64)
    parser.add_argument("--texts", type=int, default=32, help="distinct SST-2 sentences drawn from")
    parser.add_argument("--requests", type=int, default=1000, help="requests per concurrency and service")
    parser.add_argument("--soak", type=int, default=10000, help="requests of the memory check")
    parser.add_argument("--threads", type=int, help="each model worker's threads, every service (default: serve's: "
                                                    "the cores shared among the workers)")
    parser.add_argument("--workers", type=int, nargs="+", default=[None],
                        help="the mixed services' model workers (default: serve's); several are measured in turn")
    parser.add_argument("--memory-release", choices=MEMORY_RELEASE, nargs="+", default=[DEFAULT_MEMORY_RELEASE],
                        help="the services' --memory-release, both modes (default: serve's); "
                             "several are measured in turn")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each --memory-release, interleaved")
    parser.add_argument("--precisions", default="fp32",
                        help="backbone formats of the mixed service, comma separated (default fp32; the switching "
                             "baseline is fp32), e.g. fp32,bf16,int8")
    parser.add_argument("--output", type=Path, help=f"where the JSON goes (default {OUTPUT.name}, or "
                                                    f"{REPEATS.name} for more than one run)")
    args = parser.parse_args()
    precisions = ["fp32", *(p for p in args.precisions.split(",") if p != "fp32")]
    quiet_outputs()
    peaks = {precision: peak_gflops(precision) for precision in precisions}  # what bounds each format's gain here
    print(f"{cpu_name()}: peak of a large product (GFLOP/s, torch's threads): "
          + ", ".join(f"{precision} {peak:.0f}" for precision, peak in peaks.items()), flush=True)
    profile = get_profile("classroom")
    source = sorted(DELTAS.glob("sst2_*.safetensors"))[0]
    texts = list(glue.load_split(glue.get_task("sst2"), "validation")["sentence"][:args.texts])
    with tempfile.TemporaryDirectory() as folder:
        model = load_classifier(profile.model, 2, profile.readout)
        paths = [derived_delta(model, source, Path(folder) / f"task{k:04d}.safetensors", seed=k)
                 for k in range(args.tasks)]
        server = MultiTask(load_classifier(profile.model, 2, profile.readout))
        names = server.add_many(paths, [path.stem for path in paths])
        requests = loadtest.requests_for(names, texts, args.requests)
        soak = loadtest.requests_for(names, texts, args.soak, seed=1)
        print(f"{args.tasks} tasks, {len(texts)} sentences; computing each task's own answers ...", flush=True)
        expected = loadtest.expected_logits(server, set(requests) | set(soak))
        runs = []
        # interleaved: glibc, mmap, glibc, mmap, ... (each with every --workers in turn)
        settings = [(memory_release, workers) for _ in range(args.repeats) for memory_release in args.memory_release
                    for workers in args.workers]
        for memory_release, workers in settings:
            print(f"run {len(runs) + 1} of {len(settings)}: --memory-release {memory_release}"
                  + (f", --workers {workers}" if workers else ""), flush=True)
            runs.append({**measure(Path(folder), memory_release, args.threads, workers, requests, soak, expected,
                                   precisions), "workers": workers})
    machine = {"tasks": args.tasks, "derived_from": source.name, "http": http_stack(), "device": hardware_name(),
               "cpu": cpu_name(), "peak_gflops": peaks,
               "cpu_cores": os.cpu_count()}
    if len(runs) == 1:
        found, output = {**runs[0], **machine}, args.output or OUTPUT
    else:
        found = {"summary": loadtest.repeated(runs), "runs": runs, **machine, "measured_at": runs[-1]["measured_at"]}
        output = args.output or REPEATS
        for setting, targets in found["summary"].items():
            print(f"{setting}, {args.repeats} run{'s' * (args.repeats > 1)}:")
            for name, t in targets.items():
                print(f"  {name}: median {t['median']:.4g} [{t['min']:.4g}, {t['max']:.4g}] (target {t['target']}): "
                      f"met in {t['met_in']} of {t['runs']}")
    if len(args.memory_release) > 1 and len(runs) > 1:
        found["memory_release_choice"] = choice = loadtest.memory_release_choice(runs)
        for setting, f in choice["settings"].items():
            print(f"--memory-release {setting}: " + ", ".join(f"{name} {value:.4g}" for name, value in f.items()))
        print(f"to serve with (loadtest.memory_release_choice): {choice['chosen']}")
    if {1, 2} <= set(args.workers):
        found["workers_choice"] = loadtest.workers_choice(runs)
        for precision, f in found["workers_choice"].items():
            print(f"{precision}: " + ", ".join(f"{name} {value:.4g}" for name, value in f.items()))
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(found, indent=1) + "\n")
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
