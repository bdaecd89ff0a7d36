"""Non-temporal ("streaming") stores for kernels whose outputs exceed the caches.

A plain store to a line that is not in cache first reads the line from memory
(read for ownership), so writing an output array of B bytes moves 2B.  A
non-temporal store writes whole lines straight to memory: B.  A kernel that
reads one array and writes two (value and derivative) moves 5 units with plain
stores and 3 with non-temporal ones; that is what a large ``memcpy`` does.

Elementwise kernels, and the gradients of the elementwise losses, store
non-temporally in one of two ways, chosen per host (``TILED``):

* in the loop that computes the values (``store_nt``): the loop vectorizer
  makes vector stores of it when the outputs start 64-byte aligned, which
  ``empty`` and ``aligned_head`` arrange.  Where the CPU has 512-bit vectors
  (one vector store, one cache line) this is the faster way;
* tiled: the loop computes TILE elements into buffers that stay in L1 (plain
  stores), and a second loop copies them out with non-temporal stores, one
  output after the other.  On a CPU with 256-bit vectors only (AMD Zen 3),
  non-temporal stores in the loop that computes ran up to 10x slower than
  plain stores: float64 exact gelu value_and_derivative at 2**24 took
  310 ms, against 33 ms with plain stores and 36 ms tiled; relu 19.8 ms in the
  loop, 16.4 plain, 16.0 tiled.  Half-line stores of two outputs, separated
  by the arithmetic of a long loop body, keep the write-combining buffers from
  filling whole lines.

Streaming starts at outputs of STREAM_MIN bytes: below that the output is
likely read again while still in cache, which a non-temporal store would have
evicted.
"""
import math
import os

import numpy as np

from llvmlite import binding as llvm
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from .jit import WIDE_VECTORS

# Elements per block of the elementwise streamed kernels (one parallel task, one
# fence); a multiple of 16, so that blocks of aligned outputs start aligned.
BLOCK = 1 << 17
# Streamed loops store non-temporally over a multiple of NT_RUN elements from
# an aligned start: a multiple of every vector loop trip (at most 16 lanes
# times 8 interleaved vectors), so no scalar remainder runs.
NT_RUN = 256
_LINE = 64
# Elements per tile of the tiled streamed kernels: a multiple of NT_RUN that
# divides BLOCK; a float64 tile of each of two outputs takes 16 KiB of L1.
TILE = 1024

# Output bytes from which kernels stream their outputs (measured on the
# development machine: relu value_and_derivative float32 gains from 8 MiB per
# output, breaks even at 4 MiB and loses below; override with FASTACT_STREAM_MIN).
STREAM_MIN = int(os.environ.get("FASTACT_STREAM_MIN", str(8 << 20)))


def streams(nbytes: int) -> bool:
    """Whether an output of nbytes is written with non-temporal stores."""
    return nbytes >= STREAM_MIN


@intrinsic
def store_nt(typingctx, a, i, v):
    """a[i] = v with a non-temporal store, declared 64-byte aligned.

    Only for loops that the loop vectorizer turns into vector stores starting at
    64-byte aligned elements: a[0] aligned, the loop running from index 0 over a
    multiple of NT_RUN elements (``elementwise.streamed_kernel``), so that its
    scalar remainder never runs.  The declared alignment is what lets LLVM
    vectorize a non-temporal store at all.  No bounds check, no negative index."""
    def codegen(context, builder, sig, args):
        arr = context.make_array(sig.args[0])(context, builder, args[0])
        store = builder.store(args[2], builder.gep(arr.data, [args[1]]), align=_LINE)
        store.set_metadata("nontemporal", builder.module.add_metadata(
            [ir.Constant(ir.IntType(32), 1)]))
        return context.get_dummy_value()

    return types.none(a, i, v), codegen


def empty(shape, dtype):
    """``np.empty(shape, dtype)``, with its data 64-byte aligned where it is large
    enough to be streamed: the streamed kernels need every output of a pass at
    the same alignment, and NumPy's allocations below the allocator's mmap
    threshold land at any multiple of 16."""
    if math.prod(shape) * np.dtype(dtype).itemsize < STREAM_MIN:
        return np.empty(shape, dtype)
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    buf = np.empty(nbytes + _LINE, np.uint8)
    start = (-buf.ctypes.data) % _LINE
    return buf[start:start + nbytes].view(dtype).reshape(shape)


def aligned_head(arrays) -> int:
    """Elements before the first 64-byte aligned element, the same for every
    array of ``arrays``; -1 if they differ (or an address is not a multiple of
    the itemsize)."""
    heads = set()
    for a in arrays:
        addr = a.ctypes.data
        if addr % a.itemsize:
            return -1
        heads.add((-addr) % _LINE // a.itemsize)
    return heads.pop() if len(heads) == 1 else -1


# Tiled streaming (see above) unless the host has 512-bit vectors; override
# with FASTACT_STREAM_TILED=1 or 0.
TILED = (os.environ["FASTACT_STREAM_TILED"] == "1" if "FASTACT_STREAM_TILED" in os.environ
         else not WIDE_VECTORS)

_X86 = llvm.get_process_triple().split("-")[0] in ("x86_64", "i386", "i686")


@intrinsic
def store_fence(typingctx):
    """Orders earlier non-temporal stores before every later store (they are
    weakly ordered; other threads read the output after the kernel).  Costs a
    wait for the stores in flight: call it once per chunk of tiles."""
    def codegen(context, builder, sig, args):
        if _X86:
            builder.call(builder.module.declare_intrinsic(
                "llvm.x86.sse.sfence", fnty=ir.FunctionType(ir.VoidType(), [])), [])
        else:
            builder.fence("seq_cst")
        return context.get_dummy_value()

    return types.none(), codegen
