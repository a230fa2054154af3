"""The shared backbone's number format: its matrix products in fp32, bf16 or int8, every bias and head in fp32.

A BitFit task is bias vectors and a head. A server keeps one backbone for all its tasks, so the backbone is
where speed and memory can be won: its weight matrices do nearly all of the work (``W x`` costs about
2 x 384 x 384 multiply-adds per token for each 384-wide projection; adding ``b`` costs 384). We change how
``W x`` is computed and leave ``+ b`` alone:

- **fp32**: ``nn.Linear``'s own kernel, the product and the bias in fp32.
- **bf16**: W is stored in bfloat16 (half the bytes) and x is rounded to bfloat16. The CPU's bf16 kernels
  (oneDNN on AVX-512 BF16 or AMX) multiply exactly and sum in fp32; the product is rounded to bf16.
- **int8**: W is stored in int8 with one scale per output row; x is quantized with one scale per call (the
  dynamic quantization of PyTorch and ONNX Runtime); fbgemm sums in int32 and hands back fp32. Because x's
  scale is the batch's, a row's answer can move a little with the rows it is batched with.

Either way the bias is then added in fp32: ``y = (W x)_low + b``. So a delta means the same on every backbone
format, in one-task and mixed batches alike: its biases and head are never rounded. (A sum that goes straight
into another bf16 product is rounded after the addition, as that product would round it anyway:
``ROUNDED_SUMS``.) Attention, LayerNorm and the heads stay in fp32.
The reference logits a delta carries were computed in fp32, so the check that a loaded delta reproduces them
allows, per format, the gap that format itself makes (``REFERENCE_TOLERANCES``, set from
``benchmarks/precision.py``'s measurements on the five committed deltas).
"""

from __future__ import annotations

import threading
import time
import warnings
from pathlib import Path

import torch
from torch import nn

from ..core.precision import native_bf16
from ..errors import BitFitError, unknown_choice
from .deltas import REFERENCE_TOLERANCE

PRECISIONS = ("fp32", "bf16", "int8")
CHOICES = (*PRECISIONS, "auto")
# Largest |logit difference| a loaded delta may show on its reference inputs, per backbone format. fp32: the
# reference rows are recomputed exactly but for the order of sums (deltas.REFERENCE_TOLERANCE). bf16 and int8:
# a few times the largest change either format made to any logit of the five committed tasks' full dev sets
# (results/benchmarks/precision.json): loose enough for rounding, while a delta of another backbone misses by
# whole units. An altered delta is the digest's to catch (deltas).
REFERENCE_TOLERANCES = {"fp32": REFERENCE_TOLERANCE, "bf16": 0.1, "int8": 1.0}


def resolve(precision: str) -> str:
    """The format ``precision`` names; 'auto' is bf16 where the machine has bf16 kernels, else fp32."""
    if precision == "auto":
        return "bf16" if native_bf16() else "fp32"
    if precision not in PRECISIONS:
        raise unknown_choice("precision", precision, CHOICES)
    if precision == "int8" and "x86" not in torch.backends.quantized.supported_engines:
        raise BitFitError("int8 products need PyTorch's x86 (fbgemm) kernels, which this build lacks: "
                          "use --precision fp32 or bf16")
    return precision


def vnni() -> bool:
    """Whether the CPU has VNNI (int8 dot products into int32), so that int8 needs no reduced range."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_vnni" in flags or "avx_vnni" in flags or "amx_int8" in flags


class SharedBf16Input(threading.local):
    """The last input of a bf16 product, rounded to bf16 once for every product that reads it (W_q, W_k and W_v
    read the same hidden states: one rounding, not three). Each model thread keeps its own."""

    def __init__(self):
        self.source: torch.Tensor | None = None
        self.version, self.rounded = -1, None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x is not self.source or x._version != self.version:  # another tensor, or this one changed in place
            self.source, self.version, self.rounded = x, x._version, x.to(torch.bfloat16)
        return self.rounded


CHUNK_ROWS = 1024  # token rows per bf16 product: its output is widened and added to while it is in the cache


def bucket(rows: int) -> int:
    """``rows`` rounded up to a multiple of 8 up to 64, then to one of eight sizes per doubling (an eighth more
    rows at most). oneDNN builds a kernel for each shape of product it meets and keeps it in
    memory; a server meets a new shape with nearly every batch, so its products are padded to these few."""
    step = max(8, 1 << max(0, rows.bit_length() - 4))
    return -(-rows // step) * step


class Bf16Products:
    """``x, b -> W x + b`` with W and x in bfloat16 (exact products summed in fp32, rounded to bf16) and b added
    in fp32. With ``round_sum`` the sum is rounded to bf16, for a next operation that would round it anyway.

    The product is taken a chunk of sequences at a time (about ``CHUNK_ROWS`` token rows, padded to a
    ``bucket``), so that widening it and adding b happen while it is in the cache."""

    def __init__(self, weight: torch.Tensor, rounding: SharedBf16Input, round_sum: bool):
        # stored (in, out): x @ W^T from this layout was faster here than F.linear's (out, in), and kept less memory
        self.weight_t = weight.detach().t().contiguous().to(torch.bfloat16)
        self.rounding, self.round_sum = rounding, round_sum
        self.nbytes = self.weight_t.numel() * self.weight_t.element_size()

    def __call__(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        width = self.weight_t.shape[1]
        rounded = self.rounding(x)
        sequences = rounded.reshape(x.shape[0], -1, x.shape[-1])  # (sequences, tokens, in)
        tokens = sequences.shape[1]
        out = x.new_empty(*x.shape[:-1], width, dtype=torch.bfloat16 if self.round_sum else torch.float32)
        sums = out.view(x.shape[0], tokens, width)
        biases = bias.view(x.shape[0], 1, width) if bias.dim() > 1 else bias  # one per sequence, or shared
        step = max(1, CHUNK_ROWS // tokens)
        for start in range(0, x.shape[0], step):
            rows = sequences[start:start + step].reshape(-1, x.shape[-1])
            product = torch.mm(padded(rows), self.weight_t)[:len(rows)].view(-1, tokens, width)
            chunk_bias = biases[start:start + step] if bias.dim() > 1 else biases
            # widened, then added in place: PyTorch's adds that mix bf16 and fp32 (in the inputs or the output)
            # take a slow path, up to 25 times slower here
            target = sums[start:start + step]
            if self.round_sum:
                target.copy_(product.float().add_(chunk_bias))
            else:
                target.copy_(product).add_(chunk_bias)
        return out


def padded(rows: torch.Tensor) -> torch.Tensor:
    """``rows`` with zero rows below, to ``bucket(len(rows))`` rows."""
    size = bucket(len(rows))
    if size == len(rows):
        return rows
    filled = rows.new_zeros(size, rows.shape[1])
    filled[:len(rows)] = rows
    return filled


class Int8Products:
    """``x, b -> W x + b`` with W in int8 (a scale per output row), x quantized per call, the products summed in
    int32 and scaled back to fp32, and b added in fp32."""

    def __init__(self, weight: torch.Tensor):
        weight = weight.detach().float()
        scales = (weight.abs().amax(dim=1) / 127).clamp_min(1e-12).double()
        with warnings.catch_warnings():  # PyTorch has deprecated quantized tensors; fbgemm's kernels still take them
            warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*")
            quantized = torch.quantize_per_channel(weight, scales, torch.zeros(len(scales), dtype=torch.long), 0,
                                                   torch.qint8)
        self.packed = torch.ops.quantized.linear_prepack(quantized, None)
        self.reduce_range = not vnni()  # without VNNI, fbgemm's 16-bit sums would saturate on 8-bit activations
        self.nbytes = weight.numel() + 8 * len(scales)

    def __call__(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return torch.ops.quantized.linear_dynamic(x.float().contiguous(), self.packed, self.reduce_range).add_(bias)


# The sum that goes through GELU straight into W_m3's bf16 product (b_m2's) is rounded to bf16 after the fp32
# addition: that product would round it anyway, and GELU is cheaper on half the bytes. Every other sum stays fp32:
# attention reads Q, K and V in fp32 (its bf16 kernel was slower here), and the residual stream, LayerNorm and
# the pooler read fp32.
ROUNDED_SUMS = ("b_m2",)


def put_in_precision(linears: list[tuple[str, nn.Linear]], precision: str) -> None:
    """From now on compute ``W x + b`` of each of ``linears`` (with its bias's paper group) in ``precision``, as
    ``linear.products``; the fp32 weight is given up, its memory freed."""
    if precision == "fp32":
        return
    rounding = SharedBf16Input()
    for group, linear in linears:
        linear.products = (Bf16Products(linear.weight, rounding, group in ROUNDED_SUMS) if precision == "bf16"
                           else Int8Products(linear.weight))
        linear.weight = nn.Parameter(torch.empty_like(linear.weight, device="meta"), requires_grad=False)


def backbone_bytes(model: nn.Module) -> int:
    """Bytes the model's weights hold in their serving format: parameters, and the low-precision copies of the
    Linears' matrices (their fp32 originals, on the meta device, hold none)."""
    held = sum(p.numel() * p.element_size() for p in model.parameters() if p.device.type != "meta")
    return held + sum(module.products.nbytes for module in model.modules()
                      if getattr(module, "products", None) is not None)


def peak_gflops(precision: str, repeats: int = 5) -> float:
    """This machine's peak in ``precision``, measured: the best rate of a large product, (4,096 x 1,024) by
    (1,024 x 1,024), with the kernels the backbone uses in that format and torch's threads. The ratio of the bf16
    peak to the fp32 peak differs between CPUs of the same name by generation, and bounds bf16's gain."""
    x, weight = torch.randn(4096, 1024), torch.randn(1024, 1024)
    if precision == "int8":
        int8, no_bias = Int8Products(weight), torch.zeros(1024)

        def product() -> torch.Tensor:
            return int8(x, no_bias)
    else:
        dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        x, weight = x.to(dtype), weight.to(dtype)

        def product() -> torch.Tensor:
            return x @ weight.t()
    product()
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        product()
        best = min(best, time.perf_counter() - started)
    return 2 * 4096 * 1024 * 1024 / best / 1e9
