"""Time training steps of the classroom model: Full-FT vs BitFit, fp32 vs bf16 autocast.

Prints seconds per optimizer step (forward, backward, AdamW) for a batch of ``--batch`` sequences of
``--length`` tokens, plus tokens per second and peak memory. Used to budget experiment grids:

    python benchmarks/step_time.py --batch 32 --length 128 --steps 5

Whether two 1-thread grid workers beat one 2-thread worker on a 2-core machine: run it once with
``OMP_NUM_THREADS=2``, then twice at the same time with ``OMP_NUM_THREADS=1``, and compare steps per
second (one worker: 1/s; two workers: 2/s each).

It also says whether this machine has bfloat16 kernels (``bitfit_edu.core.precision``). Without them a bf16
row times what a run does there (products computed in fp32 from bf16 inputs); ``--precisions bf16-pytorch``
times PyTorch's own fallback instead, which is what the emulation avoids.
"""

from __future__ import annotations

import argparse
import resource

import torch

from bitfit_edu.console import set_progress_bars
from bitfit_edu.core.precision import hardware_name, matrix_products, native_bf16
from bitfit_edu.core.readout import default_readout, load_classifier
from bitfit_edu.deploy.costs import step_seconds, token_batch
from bitfit_edu.experiments.profiles import CLASSROOM_MODEL


def seconds_per_step(model_name: str, method: str, batch: int, length: int, steps: int, number_format: str) -> float:
    model = load_classifier(model_name, num_labels=2, readout=default_readout(model_name))
    return sum(step_seconds(model, method, [token_batch(batch, length)], steps, number_format)) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=CLASSROOM_MODEL)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--methods", nargs="+", default=["full", "bitfit", "frozen"])
    parser.add_argument("--precisions", nargs="+", choices=["fp32", "bf16", "bf16-pytorch"],
                        default=["fp32", "bf16"])
    args = parser.parse_args()
    set_progress_bars(False)
    print(f"{args.model}, batch {args.batch} x {args.length} tokens, {torch.get_num_threads()} threads")
    print(f"{hardware_name()}: bfloat16 kernels {'yes' if native_bf16() else 'no'}; a bf16 run's products: "
          f"{matrix_products(True)}")
    for method in args.methods:
        for precision in args.precisions:
            seconds = seconds_per_step(args.model, method, args.batch, args.length, args.steps, precision)
            print(f"{method:>7} {precision}: {seconds:.2f} s/step, "
                  f"{args.batch * args.length / seconds:,.0f} tokens/s")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB")


if __name__ == "__main__":
    main()
