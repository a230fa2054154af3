"""How a long-running service gives the memory its batches freed back to the system (glibc only).

A service that answers batches of ever new shapes frees and allocates activations of ever new sizes. glibc's
allocator keeps freed blocks for reuse, and the process grows although it holds no more. ``serve
--memory-release`` chooses what to do about it (``MEMORY_RELEASE``); the load test measures each choice.
"""

from __future__ import annotations

import ctypes

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter (malloc.h)


LARGE_BLOCK_BYTES = 1 << 20


TRIM_PERIOD_BATCHES = 16  # "periodic": batches between two trims


MEMORY_RELEASE = {
    "glibc": "leave glibc's allocator as it is: it keeps freed activations for the next batches, and the process "
             "grows slowly as batches of ever new shapes fragment its heap",
    "trim": "after each batch, hand the memory its activations freed back to the system (malloc_trim): the "
            "process stays flat, but each batch page-faults its activations anew",
    "mmap": "give every block of 1 MB or more pages of its own, returned when freed (each batch page-faults anew)",
    "periodic": f"as glibc, but after every {TRIM_PERIOD_BATCHES}th batch hand what the activations freed back to "
                "the system (malloc_trim): the growth is bounded, and one batch in "
                f"{TRIM_PERIOD_BATCHES} page-faults anew",
}


# Repeated load tests (benchmarks/load_test.py, two quiet machines, 6 runs each): "mmap" kept the growth under 5% in
# every run, "glibc" in 2 of 6; their speed ratios differed by less than they move from run to run
DEFAULT_MEMORY_RELEASE = "mmap"


def give_large_blocks_own_pages(threshold_bytes: int = LARGE_BLOCK_BYTES) -> None:
    """Have glibc allocate each block of ``threshold_bytes`` or more in pages of its own (mmap), handed back to
    the system when it is freed, from now on. Left alone, glibc raises this threshold each time such a block
    is freed, up to 32 MB, and a service that answers batches of ever new shapes then keeps freed activations in
    its heap, so the process grows although it holds no more. Nothing elsewhere than glibc."""
    try:
        ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, threshold_bytes)
    except (OSError, AttributeError):
        pass


def return_freed_memory() -> None:
    """Hand the free pages of every glibc arena back to the system (``malloc_trim``), so that the process's size
    shows what it holds: after a batch, what its activations freed; after loading deltas, the files' tensors
    freed in many small pieces. A fraction of a millisecond; nothing elsewhere than glibc."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def trims_after(batches: int, memory_release: str) -> bool:
    """Whether a service under ``memory_release`` hands freed memory back (``return_freed_memory``) once it has
    answered ``batches`` batches: after each one under "trim", once every ``TRIM_PERIOD_BATCHES`` batches under
    "periodic", never under "glibc" or "mmap"."""
    if memory_release == "periodic":
        return batches % TRIM_PERIOD_BATCHES == 0
    return memory_release == "trim"
