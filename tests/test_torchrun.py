"""The multi-process path: ``torchrun`` with two CPU processes (gloo) on a smoke grid of real data.

Each run trains once, split between the processes (each takes half of every batch), and the first process
writes its record, exactly once. The scores match one process's within a stated tolerance, not exactly:
two processes see the training examples in another order (``DistributedSampler``'s shuffle, not the
single process's), so the runs are the same recipe on differently ordered batches.
"""

import os
import subprocess
import sys

import pytest

from bitfit_edu.experiments.results import ResultStore

GRID = ["grid", "--experiment", "main", "--tasks", "rte", "--profile", "smoke"]
TOLERANCE = {"dev score": 2 / 32, "training loss": 0.02}  # 2 of RTE's 32 smoke dev pairs; loss at 0.69


def grid(tmp_path, name: str, launcher: list[str]) -> ResultStore:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([*launcher, "-m", "bitfit_edu", *GRID, "--results", str(tmp_path / name)],
                          env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("trained 3 runs") == 1, done.stdout  # the other process prints nothing
    return ResultStore(tmp_path / name / "smoke")


@pytest.mark.usefixtures("shared_glue_dir")
def test_torchrun_trains_each_run_once_and_matches_one_process(tmp_path):
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    two, one = grid(tmp_path, "two", torchrun), grid(tmp_path, "one", [sys.executable])
    files = sorted(p.name for p in two.root.rglob("*") if p.is_file())
    assert files == sorted(p.name for p in one.root.rglob("*.json")) and len(files) == 3  # no locks, no .tmp
    for record in one.records():
        twin = two.read(two.root / record.task / f"{record.run_id}.json")
        assert (twin.train_size, twin.evaluated) == (record.train_size, record.evaluated)
        for ours, theirs in zip(twin.epochs, record.epochs, strict=True):
            assert abs(ours.dev.score - theirs.dev.score) <= TOLERANCE["dev score"]
            assert abs(ours.train_loss - theirs.train_loss) <= TOLERANCE["training loss"]
