"""Non-temporal ("streaming") stores for kernels whose outputs exceed the caches.

A plain store to a line that is not in cache first reads the line from memory
(read for ownership), so writing an output array of B bytes moves 2B.  A
non-temporal store writes whole lines straight to memory: B.  A kernel that
reads one array and writes two (value and derivative) moves 5 units with plain
stores and 3 with non-temporal ones; that is what a large ``memcpy`` does.

Elementwise kernels store non-temporally in the loop that computes the values
(``store_nt``): the loop vectorizer makes 64-byte vector stores of it when the
outputs start 64-byte aligned, which ``empty`` and ``aligned_head`` arrange.
The loss kernels compute each tile of at most TILE elements into small
buffers that stay in the L1/L2 cache, then ``stream_out`` copies each buffer
to its output with 64-byte non-temporal vector stores (plain stores for the
unaligned head and tail of the tile).  Both are used for outputs of at least
STREAM_MIN bytes: below that the output is likely read again while still in
cache, which a non-temporal store would have evicted.
"""
import math
import os

import numpy as np

from llvmlite import binding as llvm
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from ..mathlib import helper

# Elements per tile: two float64 buffers of TILE elements (64 KiB) stay in L2.
TILE = 4096
# Tiles per parallel task; one store fence per task.
CHUNK_TILES = 32
# Elements per block of the elementwise streamed kernels (one parallel task, one
# fence); a multiple of 16, so that blocks of aligned outputs start aligned.
BLOCK = TILE * CHUNK_TILES
# The elementwise streamed kernels store non-temporally over a multiple of
# NT_RUN elements from an aligned start: a multiple of every vector loop trip
# (at most 16 lanes times 8 interleaved vectors), so no scalar remainder runs.
NT_RUN = 256
_LINE = 64

# Output bytes from which kernels stream their outputs (measured on the
# development machine: relu value_and_derivative float32 gains from 8 MiB per
# output, breaks even at 4 MiB and loses below; override with FASTACT_STREAM_MIN).
STREAM_MIN = int(os.environ.get("FASTACT_STREAM_MIN", str(8 << 20)))


def streams(nbytes: int) -> bool:
    """Whether an output of nbytes is written with non-temporal stores."""
    return nbytes >= STREAM_MIN


@intrinsic
def _address(typingctx, a, i):
    """The address of a[i] as a signed integer (a: contiguous 1-d array)."""
    def codegen(context, builder, sig, args):
        arr = context.make_array(sig.args[0])(context, builder, args[0])
        return builder.ptrtoint(builder.gep(arr.data, [args[1]]),
                                context.get_value_type(types.intp))

    return types.intp(a, i), codegen


@intrinsic
def _store_line(typingctx, dst, i, src, j):
    """dst[i:i + L] = src[j:j + L] as one non-temporal 64-byte store
    (L = 64 / itemsize; the address of dst[i] must be a multiple of 64)."""
    def codegen(context, builder, sig, args):
        dty, _, sty, _ = sig.args
        d = context.make_array(dty)(context, builder, args[0])
        s = context.make_array(sty)(context, builder, args[2])
        elt = context.get_data_type(dty.dtype)
        size = context.get_abi_sizeof(elt)
        vec = ir.VectorType(elt, _LINE // size)
        src_ptr = builder.bitcast(builder.gep(s.data, [args[3]]), vec.as_pointer())
        dst_ptr = builder.bitcast(builder.gep(d.data, [args[1]]), vec.as_pointer())
        store = builder.store(builder.load(src_ptr, align=size), dst_ptr, align=_LINE)
        store.set_metadata("nontemporal", builder.module.add_metadata(
            [ir.Constant(ir.IntType(32), 1)]))
        return context.get_dummy_value()

    return types.none(dst, i, src, j), codegen


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


def stream_out(dst, start, buf, n):
    """dst[start:start + n] = buf[:n], whole aligned lines with non-temporal stores."""
    size = buf.itemsize
    line = _LINE // size
    addr = _address(dst, start)
    head = n
    if addr % size == 0:
        head = min(n, (_LINE - addr % _LINE) % _LINE // size)
    for k in range(head):
        dst[start + k] = buf[k]
    k = head
    while k + line <= n:
        _store_line(dst, start + k, buf, k)
        k += line
    for j in range(k, n):
        dst[start + j] = buf[j]


stream_out = helper(stream_out)
