"""``python -m bitfit_edu doctor``: is this machine ready for the course? One line per item, OK or FAIL
with the fix.

It checks what a lab machine needs before class: the Python and package versions against the pins of
``requirements.txt``, the data and the classroom model (the offline folder, or the Hugging Face hub),
bfloat16 kernels, free memory, and how long ``make demo`` would take here, estimated from three timed
training steps of each method scaled by the committed demo benchmark (``results/benchmarks/demo_*.json``).
"""

from __future__ import annotations

import json
import math
import os
import sys
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from .. import __version__
from ..data import locations
from ..data.locations import CHECKOUT, glue_dir, hub_cache, results_folder
from ..errors import BitFitError

TESTED_PYTHON = (3, 11)
MEMORY_NEEDED_MB = 2048  # Binder's limit, which notebook 03 (the largest) stays within
DEMO_LENGTH = 48  # tokens per padded SST-2 batch, about what dynamic padding gives the demo's batches
HUB = "https://huggingface.co"
DEMO_PATIENCE = 2  # a demo up to twice the benchmark's 5-minute target still suits a class


@dataclass(frozen=True)
class Finding:
    """One item of the check: what was found, and the fix when it is not OK."""

    item: str
    ok: bool
    found: str
    fix: str = ""

    def line(self) -> str:
        fix = "" if self.ok else f"\n      fix: {self.fix}"
        return f"{'OK  ' if self.ok else 'FAIL'}  {self.item}: {self.found}{fix}"


def python_version() -> Finding:
    found = ".".join(map(str, sys.version_info[:3]))
    return Finding("Python", sys.version_info[:2] >= (3, 10), f"{found} (the pinned stack is tested on "
                   f"{'.'.join(map(str, TESTED_PYTHON))})", "install Python 3.11 and make a fresh virtualenv from it")


def pins(requirements: Path) -> dict[str, str]:
    """``name==version`` lines of a requirements file, by lower-case name."""
    found = {}
    for line in requirements.read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" in line and not line.startswith("-"):
            name, version = line.split("==", 1)
            found[name.strip().lower()] = version.split(";")[0].strip()  # without an environment marker
    return found


def package_versions(requirements: Path = CHECKOUT / "requirements.txt") -> Finding:
    if not requirements.is_file():
        return Finding("packages", True, "not compared: no requirements.txt beside the package")
    wrong = []
    for name, pinned in pins(requirements).items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            wrong.append(f"{name} missing (pinned {pinned})")
            continue
        if installed.split("+")[0] != pinned:
            wrong.append(f"{name} {installed} (pinned {pinned})")
    found = "; ".join(wrong) or f"bitfit_edu {__version__} with all {len(pins(requirements))} pins of requirements.txt"
    return Finding("packages", not wrong, found,
                   "make install (or: python -m pip install -r requirements.txt)")


def hub_reachable(timeout: float = 5.0) -> bool:
    try:
        urllib.request.urlopen(urllib.request.Request(HUB, method="HEAD"), timeout=timeout)
        return True
    except OSError:
        return False


def data_and_model(model: str, task_folder: str, reachable: Callable[[], bool] = hub_reachable) -> list[Finding]:
    """GLUE's demo task and the classroom model, from the offline folder or else the hub."""
    glue, cache = glue_dir(), hub_cache()
    online = None if glue and cache else reachable()
    fix = ("put shared/ beside the checkout, or set BITFIT_EDU_DATA to a folder holding glue_data/ and hf-hub/; "
           "or connect to the internet")
    if glue:
        task = glue / task_folder
        found = (task / "train.tsv").is_file() and (task / "dev.tsv").is_file()
        data = Finding("GLUE data", found, f"{task} " + ("has train.tsv and dev.tsv" if found else "lacks train.tsv "
                       "or dev.tsv"), f"a classic GLUE folder has {task_folder}/train.tsv and {task_folder}/dev.tsv")
    else:
        data = Finding("GLUE data", bool(online), "from the Hugging Face hub" + ("" if online else ", not reachable"),
                       fix)
    if cache:
        from transformers import AutoConfig

        from ..data.locations import hub_options
        try:
            AutoConfig.from_pretrained(model, **hub_options())
            modelled = Finding("model", True, f"{model} in {cache}")
        except OSError:
            unset = "HF_HUB_CACHE" if os.environ.get("HF_HUB_CACHE") else locations.DATA_VARIABLE
            modelled = Finding("model", False, f"{model} not in {cache}", f"copy the hub cache of {model} there, or "
                               f"unset {unset} to download it")
    else:
        modelled = Finding("model", bool(online), f"{model} from the Hugging Face hub"
                           + ("" if online else ", not reachable"), fix)
    return [data, modelled]


def bf16_kernels() -> Finding:
    from ..core.precision import hardware_name, native_bf16

    if native_bf16():
        return Finding("bfloat16 kernels", True, f"yes ({hardware_name()}): live runs train in bf16")
    return Finding("bfloat16 kernels", True, f"none ({hardware_name()}): live runs train in fp32, which is slower but "
                   "gives the same lessons; grids emulate bf16 products")


def available_memory_mb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (ValueError, OSError, AttributeError):
        return None


def free_memory() -> Finding:
    available = available_memory_mb()
    if available is None:
        return Finding("free memory", True, "unknown on this system")
    return Finding("free memory", available >= MEMORY_NEEDED_MB, f"{available:,.0f} MB available (the largest "
                   f"notebook needs about {MEMORY_NEEDED_MB:,} MB)", "close other programs, or use a larger machine")


def demo_estimate(steps: int = 3) -> Finding:
    """``make demo``'s time here: three timed steps per method, times the demo's steps, scaled by the committed
    demo benchmark's ratio of wall time to training time (loading, tokenizing, evaluating)."""
    import torch

    from ..core.precision import native_bf16
    from ..core.readout import load_classifier
    from ..deploy.costs import step_seconds, token_batch
    from ..experiments.profiles import get_profile

    profile = get_profile("classroom")
    number_format = "bf16" if profile.bf16 and native_bf16() else "fp32"
    benchmark = results_folder("benchmarks") / f"demo_{number_format}.json"
    if not benchmark.is_file():
        return Finding("demo time", True, f"not estimated: {benchmark.name} is not in this checkout")
    reference = json.loads(benchmark.read_text())
    demo_steps = math.ceil(profile.demo_train_size / profile.batch_size) * profile.demo_epochs
    torch.manual_seed(0)
    total = reference["wall_seconds"] - sum(run["wall_seconds"] for run in reference["runs"].values())
    for method, run in reference["runs"].items():
        model = load_classifier(profile.model, num_labels=2, readout=profile.readout)
        seconds = sum(step_seconds(model, method, [token_batch(profile.batch_size, DEMO_LENGTH)], steps,
                                   "bf16-pytorch" if number_format == "bf16" else "fp32")) / steps
        total += demo_steps * seconds * run["wall_seconds"] / run["train_seconds"]
    return Finding("demo time", total <= DEMO_PATIENCE * reference["target_seconds"],
                   f"about {total / 60:.1f} min for `make demo` in {number_format} with {torch.get_num_threads()} "
                   f"threads ({steps} timed steps per method; {reference['wall_seconds']:.0f} s on the benchmark's "
                   f"machine, {reference['device']})",
                   "this machine is slow for live runs: run the demo before class, or use Binder or Colab")


def torch_works() -> Finding:
    """Whether PyTorch imports: every other check, and the course, needs it."""
    try:
        import torch
    except Exception as error:  # missing, or broken in any way: the line says which
        return Finding("torch", False, f"does not import ({type(error).__name__}: {error})"[:200],
                       "make install (or: python -m pip install -r requirements.txt)")
    return Finding("torch", True, torch.__version__)


def findings() -> list[Finding]:
    """Every item, cheapest first."""
    found = [python_version(), package_versions(), torch_works()]
    if not found[-1].ok:
        return found + [Finding("the rest", False, "not checked without torch", "fix the torch line above first")]
    from ..console import quiet_outputs
    from ..data.glue import get_task
    from ..experiments.profiles import get_profile

    quiet_outputs()  # one line per item: no loading bars
    profile = get_profile("classroom")
    try:
        located = data_and_model(profile.model, get_task(profile.demo_task).folder)
    except BitFitError as error:  # a setting that names no folder
        located = [Finding("GLUE data and model", False, str(error), "the line above says what to set")]
    found += [*located, bf16_kernels(), free_memory()]
    model_ok = any(f.item == "model" and f.ok for f in found)
    return found + ([demo_estimate()] if model_ok else [Finding("demo time", False, "not estimated without the model",
                                                                "fix the model line above first")])


def run() -> int:
    """Print one line per item; 0 when every item is OK, 1 otherwise."""
    results = []
    for finding in findings():
        print(finding.line(), flush=True)
        results.append(finding.ok)
    print("Ready for the course." if all(results) else "Fix the FAIL lines above, then run doctor again.")
    return 0 if all(results) else 1
