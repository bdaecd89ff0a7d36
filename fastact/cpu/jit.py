"""Compilation of the CPU kernels: shared settings, the dispatcher and its disk
cache (``KernelDispatcher``, ``kernel_jit``), and the serial/parallel pair
(``KernelPair``)."""
import contextlib
import functools
import hashlib
import os
import pathlib
import sys
import types

from llvmlite import binding as llvm
from numba import types as nbtypes
from numba.core.caching import FunctionCache, IndexDataCacheFile
from numba.core.compiler_lock import global_compiler_lock
from numba.core.registry import CPUDispatcher
from numba.extending import intrinsic

from ..mathlib import always_inline, cpu_inline

# No nnan/ninf (they would break NaN/inf semantics), no reassoc (it would
# undo the Cody-Waite splitting inside the polynomial exp/log) and no arcp
# (x / 6 -> x * (1/6) misrounds): only FMA contraction.
FASTMATH = {"contract"}
# Reductions over plain sums/maxima are compiled apart with reassoc so that
# LLVM vectorizes them; they hold no transcendental code.
REDUCE_FASTMATH = {"contract", "arcp", "reassoc", "nsz"}

JIT_OPTIONS = dict(fastmath=FASTMATH, error_model="numpy", nogil=True, cache=True)

# Whether the host CPU has 512-bit vectors (AVX-512): 32 vector registers, and
# one vector store per cache line.  Streaming (``streaming.TILED``) and the
# per-dtype interleave counts (``registry.OpSpec.interleave_for``) depend on it.
WIDE_VECTORS = "+avx512f" in llvm.get_host_cpu_features().flatten().split(",")

# Below this many elements a serial kernel beats the parallel launch
# (measured on the development machine; override with FASTACT_PARALLEL_MIN).
PARALLEL_MIN = int(os.environ.get("FASTACT_PARALLEL_MIN", "32768"))

# True in a forked child whose parent had started GNU OpenMP's thread pool:
# there every parallel kernel would abort the process ("fork() called from a
# process already using GNU OpenMP"), so ``KernelPair`` hands out serial ones.
SERIAL_ONLY = False


def fork_unsafe_pool() -> bool:
    """Whether this process runs Numba's threading layer on GNU OpenMP with
    its threads started, the one layer whose forked children cannot run a
    parallel kernel (tbb and workqueue can, and so can a child forked before
    the first parallel kernel was compiled or loaded)."""
    # (modules looked up, not imported: the hook runs in the child right after fork)
    parallel = sys.modules.get("numba.np.ufunc.parallel")
    if parallel is None or not getattr(parallel, "_is_initialized", True):
        return False
    try:
        if parallel.threading_layer() != "omp":
            return False
    except ValueError:           # no layer started
        return False
    omppool = sys.modules.get("numba.np.ufunc.omppool")
    return getattr(omppool, "openmp_vendor", "GNU") == "GNU"


def _after_fork_in_child():
    global SERIAL_ONLY
    # (True is inherited: a child's own children get the same unusable OpenMP state)
    SERIAL_ONLY = SERIAL_ONLY or fork_unsafe_pool()


os.register_at_fork(after_in_child=_after_fork_in_child)


@functools.lru_cache(maxsize=None)
def source_token() -> str:
    """A hash of fastact's own source files.

    Numba's on-disk cache checks only the file of the function it compiles, not
    the op definitions and math it inlines from other files; naming each
    kernel after this hash makes any change of fastact's code a cache miss.
    """
    h = hashlib.sha1()
    root = pathlib.Path(__file__).resolve().parent.parent
    for path in sorted(root.rglob("*.py")):
        h.update(path.relative_to(root).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:12]


_interleave_now = [0]      # the count _forced_interleave has set (0: LLVM's choice)


@contextlib.contextmanager
def _forced_interleave(count: int):
    """LLVM's loop vectorizer interleaves count vector iterations per loop trip
    while this is active (0: its own choice, the default).  The option is
    process-wide; Numba's compiler lock keeps other compilations out.  Nested
    uses (a kernel whose compilation compiles a function it calls) restore the
    outer count on exit."""
    with global_compiler_lock:
        outer = _interleave_now[0]
        _interleave_now[0] = count
        llvm.set_option("fastact", f"-force-vector-interleave={count}")
        try:
            yield
        finally:
            _interleave_now[0] = outer
            llvm.set_option("fastact", f"-force-vector-interleave={outer}")


class _KeyedCacheFile(IndexDataCacheFile):
    """Numba's index-and-data cache files, with each data file named after a
    hash of its index key instead of the next free number.

    With numbered names, two processes that compile different signatures of
    one function at the same time (test workers, training jobs started
    together) both take the same number, and the index of one ends up naming
    the other's code, which then fails on every call ("can't unbox array").
    Keyed names cannot mix two keys' code; a lost index entry only means a
    recompilation."""

    def save(self, key, data):
        digest = hashlib.sha256(repr(key).encode()).hexdigest()[:24]
        name = self._data_name_pattern.replace("{number:d}", digest)
        overloads = self._load_index()
        if overloads.get(key) != name:
            overloads[key] = name
            self._save_index(overloads)
        self._save_data(name, data)


class _KernelCache(FunctionCache):
    def __init__(self, py_func):
        super().__init__(py_func)
        plain = self._cache_file
        self._cache_file = _KeyedCacheFile(plain._cache_path, plain._index_name[:-len(".nbi")],
                                           plain._source_stamp)


class KernelDispatcher(CPUDispatcher):
    """The CPU dispatcher of fastact's kernels: its disk cache is safe against
    concurrent compilation in several processes (``_KeyedCacheFile``), and with
    ``interleave`` its compilations interleave vectorized loops (``KernelPair``).
    Every compilation sets its own count (0 included), so a function compiled
    while a caller compiles (the row reductions) gets the same code whoever
    calls it first."""

    interleave = 0

    def enable_caching(self):
        self._cache = _KernelCache(self.py_func)

    def compile(self, sig):
        with _forced_interleave(self.interleave):
            return super().compile(sig)


def kernel_jit(pyfunc=None, *, parallel: bool = False, interleave: int = 0, **options):
    """``numba.njit`` for fastact's kernels (``KernelDispatcher``); options as
    for njit, cache=True caches on disk.  Usable as a decorator."""
    if pyfunc is None:
        return functools.partial(kernel_jit, parallel=parallel, interleave=interleave,
                                 **options)
    targetoptions = {k: v for k, v in options.items() if k != "cache"}
    disp = KernelDispatcher(py_func=pyfunc, locals={}, targetoptions={
        **targetoptions, "parallel": parallel, "nopython": True, "boundscheck": None})
    disp.interleave = interleave
    if options.get("cache"):
        disp.enable_caching()
    return disp


class KernelPair:
    """A kernel compiled lazily in two flavours: serial and parallel.

    interleave: LLVM interleaves that many vector iterations in each trip of
    the kernel's vectorized loops (0: LLVM's choice, which is 1 for large loop
    bodies).  The polynomial exp/log/erfc of the transcendental ops form one
    long dependency chain per vector; a single chain leaves the FP units idle
    while it waits on latency, and independent chains side by side fill them.
    """

    __slots__ = ("_pyfunc", "_options", "_serial", "_parallel", "_interleave")

    def __init__(self, pyfunc, interleave: int = 0, **options):
        self._pyfunc = pyfunc
        self._options = {**JIT_OPTIONS, **options}
        self._serial = None
        self._parallel = None
        self._interleave = interleave

    @property
    def interleave_count(self) -> int:
        return self._interleave

    def _compile(self, parallel: bool):
        # Numba's on-disk cache keys on the function's qualified name and
        # closure, not on the `parallel` flag: give each flavour its own name.
        f = self._pyfunc
        twin = types.FunctionType(f.__code__, f.__globals__, f.__name__,
                                  f.__defaults__, f.__closure__)
        flavour = "parallel" if parallel else "serial"
        twin.__qualname__ = (f"{f.__qualname__}.{flavour}{self._interleave or ''}"
                             f"_{source_token()}")
        return kernel_jit(twin, parallel=parallel, interleave=self._interleave,
                          **self._options)

    def get(self, size: int):
        """The kernel for size elements: parallel from PARALLEL_MIN on, serial
        below it and everywhere in a process with ``SERIAL_ONLY`` set."""
        if size >= PARALLEL_MIN and not SERIAL_ONLY:
            if self._parallel is None:
                self._parallel = self._compile(True)
            return self._parallel
        if self._serial is None:
            self._serial = self._compile(False)
        return self._serial

    @property
    def parallel(self):
        return self.get(PARALLEL_MIN)

    @property
    def serial(self):
        return self.get(0)


@intrinsic
def prefer_wide_vectors(typingctx):
    """Nothing at run time; asks LLVM to vectorize the function being compiled
    with 512-bit vectors where the CPU has them.

    LLVM's tuning for AVX-512 server CPUs prefers 256-bit vectors.  For kernels
    whose time goes into arithmetic (the polynomial exp/log/erfc of the
    transcendental ops) twice the lanes pays: gelu value_and_derivative at
    2**24 float32 takes 27 ms instead of 39 ms on the development machine.
    Memory-bound kernels (relu, hardtanh, ...) run slower with 512-bit vectors,
    so only transcendental ops ask for them.  Called inside a ``prange`` body,
    it marks the outlined loop function, which is where the loop is vectorized.
    """
    def codegen(context, builder, sig, args):
        # A string attribute; llvmlite's FunctionAttributes.add() accepts only
        # its list of keyword attributes, and the set's items are written into
        # the IR as they are.
        set.add(builder.function.attributes, '"prefer-vector-width"="512"')
        return context.get_dummy_value()

    return nbtypes.none(), codegen


def _wide_hint():
    prefer_wide_vectors()


# Adapters reach the hint through this importable function: Numba's disk cache
# keys a kernel on the pickled closure, and the intrinsic object itself pickles
# with a per-process id (the key would never match in a new process).
_wide_hint = always_inline(_wide_hint)

_ADAPTERS: dict = {}


def inline_scalar(f, nparams: int, ninputs: int = 1, wide: bool = False):
    """g(x0, ..., p) = f(x0, ..., *p) for a parameter tuple p of length nparams, inlined.

    The kernel calls a copy of the scalar registered for CPU kernels with
    LLVM's forceinline (``mathlib.cpu_inline``), so that LLVM sees one loop
    body it can vectorize however large the scalar is (gelu with its erfc,
    the log1p of a cross-entropy); the scalar itself is left as it is for the
    CUDA target and for plain calls.  Numba cannot inline a call written
    f(x, *p), hence the fixed-arity adapter (inlined at Numba IR level, as
    the kernel templates are).  Inlining the scalar at Numba IR level too gave
    the same instructions at twice the compile time (gelu float32
    value_and_derivative 2.8 against 1.1 s), and for the log_cosh loss a loop
    scheduled 24% slower.  wide: the kernel prefers 512-bit vectors
    (``prefer_wide_vectors``).
    """
    key = (f, nparams, ninputs, wide)
    if key in _ADAPTERS:
        return _ADAPTERS[key]
    fi = types.FunctionType(f.__code__, f.__globals__, f.__name__, f.__defaults__,
                            f.__closure__)
    fi.__qualname__ = f.__qualname__ + "_inline"
    fi = cpu_inline(fi)
    xs = ", ".join(f"x{k}" for k in range(ninputs))
    ps = "".join(f", p[{k}]" for k in range(nparams))
    namespace = {"fi": fi, "_wide_hint": _wide_hint}
    hint = "    _wide_hint()\n" if wide else ""
    exec(f"def {f.__name__}_adapter({xs}, p):\n{hint}    return fi({xs}{ps})\n", namespace)
    g = always_inline(namespace[f"{f.__name__}_adapter"])
    _ADAPTERS[key] = g
    return g
