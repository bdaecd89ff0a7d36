"""Property-based adversarial tests: every public call on random shapes (0-size
axes included), layouts (Fortran order, negative and step strides, broadcast
views, read-only arrays), dtypes, ``out=`` patterns (fresh, aliasing an input,
overlapping an input, wrong shape or dtype, read-only), special values, and
labels at and around their bounds.

Each call either returns exactly (bitwise, NaN for NaN) what the same call
gives on C-contiguous copies of its inputs without ``out=``, in the documented
result dtype, that result agreeing with the NumPy backend on float64 copies
wherever both are finite, or raises TypeError or ValueError (exactly when the
call on contiguous copies does, or when ``out=`` is not valid) having written
nothing to its inputs or ``out=``.

The elementwise activations share one call layer (the subject here); their
kernels, op by op, are tested in test_elementwise.py, so the elementwise test
draws from a few ops that cover each kind of parameter list (none, defaults,
required values, a choice, backward_from_output) to keep compilation short.

The examples are derandomized, so CI runs the same ones every time; set
FASTACT_HYPOTHESIS_RANDOM=1 to explore new ones.
"""
import math
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastact as fa

SETTINGS = settings(max_examples=int(os.environ.get("FASTACT_HYPOTHESIS_EXAMPLES", "60")),
                    deadline=None, database=None,
                    derandomize=os.environ.get("FASTACT_HYPOTHESIS_RANDOM") != "1",
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

DTYPES = [np.float16, np.float32, np.float64, np.int32, np.bool_]
SPECIALS = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-30]
ELEMENTWISE = [("relu", None), ("sigmoid", None), ("gelu", "tanh"), ("softplus", None),
               ("threshold", None), ("elu", None), ("hardtanh", None)]
ERRORS = (TypeError, ValueError)


def result_dtype(*dtypes):
    """fastact's documented result dtype of inputs of these dtypes."""
    out = None
    for dt in dtypes:
        dt = np.dtype(dt)
        r = dt if dt.kind == "f" else np.dtype(np.float64)
        out = r if out is None else np.promote_types(out, r)
    return out


# ------------------------------------------------------------- strategies

@st.composite
def shapes(draw, min_dims=0, max_dims=3, min_side=0, max_side=5):
    return tuple(draw(st.lists(st.integers(min_side, max_side), min_size=min_dims,
                               max_size=max_dims)))


@st.composite
def values(draw, shape, dtype, low=-3.0, high=3.0, specials=True):
    """A C-contiguous array of shape and dtype: uniform values in [low, high],
    with special values at a few places (float dtypes)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    a = rng.uniform(low, high, shape)
    if specials and a.size and np.dtype(dtype).kind == "f":
        for _ in range(draw(st.integers(0, 3))):
            a.flat[draw(st.integers(0, a.size - 1))] = draw(st.sampled_from(SPECIALS))
    if np.dtype(dtype) == np.bool_:
        return a > 0
    if np.dtype(dtype).kind == "i":
        return np.round(a).astype(dtype)
    return a.astype(dtype)


LAYOUTS = ["c", "f", "reversed", "step", "broadcast", "readonly"]


def laid_out(a, layout):
    """An array equal to a, of a's shape, in another memory layout."""
    if a.ndim == 0:
        return a.copy()
    if layout == "f":
        return np.asfortranarray(a)
    if layout == "reversed":
        return a[..., ::-1].copy()[..., ::-1]
    if layout == "step":
        big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
        big[..., ::2] = a
        return big[..., ::2]
    if layout == "broadcast" and a.shape[0] > 0:
        # every row the same: a view with stride 0 (read-only)
        return np.broadcast_to(a[:1], a.shape)
    if layout == "readonly":
        b = a.copy()
        b.flags.writeable = False
        return b
    return a.copy()


OUT_KINDS = ["none", "fresh", "fresh_strided", "alias", "overlap", "bad_shape", "bad_dtype",
             "readonly"]


def make_out(kind, shape, dtype, inputs, pick):
    """(out array, whether it is a valid out=)."""
    if kind == "none":
        return None, True
    if kind == "fresh":
        return np.full(shape, 7, dtype), True
    if kind == "fresh_strided":
        if not shape:
            return np.full(shape, 7, dtype), True
        return laid_out(np.full(shape, 7, dtype), "step"), True
    if kind in ("alias", "overlap"):
        same = [a for a in inputs if a.shape == shape and a.dtype == dtype]
        if not same:
            return np.full(shape, 7, dtype), True
        a = same[pick % len(same)]
        if kind == "overlap" and a.ndim:
            a = a[..., ::-1]            # the input's memory in another order
        return a, bool(a.flags.writeable)
    if kind == "bad_shape":
        return np.full(tuple(shape) + (2,), 7, dtype), False
    if kind == "bad_dtype":
        return np.full(shape, 7, np.int64 if np.dtype(dtype).kind == "f" else np.float64), False
    o = np.full(shape, 7, dtype)
    o.flags.writeable = False
    return o, False


# ------------------------------------------------------------- the harness

def snapshot(arrays):
    return [np.array(a, copy=True) for a in arrays if isinstance(a, np.ndarray)]


def unchanged(arrays, before):
    now = [a for a in arrays if isinstance(a, np.ndarray)]
    return all(np.array_equal(a, b, equal_nan=True) for a, b in zip(now, before))


def tol(dtype):
    return {np.dtype(np.float16): (4e-3, 1e-3), np.dtype(np.float32): (2e-5, 1e-6),
            np.dtype(np.float64): (1e-11, 1e-13)}.get(np.dtype(dtype), (0, 0))


def assert_same(got, ref, what):
    got, ref = np.asarray(got), np.asarray(ref)
    assert got.shape == ref.shape and got.dtype == ref.dtype, (what, got.shape, ref.shape,
                                                               got.dtype, ref.dtype)
    assert np.array_equal(got, ref, equal_nan=got.dtype.kind == "f"), (what, got, ref)


def assert_near_baseline(ref, base, what):
    """ref (a result in its dtype) against the NumPy backend's float64 result
    wherever both are finite, within ref's dtype's tolerance."""
    ref = np.asarray(ref)
    if ref.dtype.kind != "f":
        assert np.array_equal(ref, base), what
        return
    r, b = ref.astype(np.float64), np.asarray(base, dtype=np.float64)
    both = np.isfinite(r) & np.isfinite(b)
    rtol, atol = tol(ref.dtype)
    scale = max(1.0, float(np.max(np.abs(b[both]), initial=0.0)))
    np.testing.assert_allclose(r[both], b[both], rtol=rtol, atol=atol * scale,
                               err_msg=f"against the NumPy backend, {what}")


def as_f64(a):
    return None if a is None else np.array(a, dtype=np.float64, order="C")


def check_call(call, inputs, out, out_valid, n_out, dtype):
    """call(inputs, out, backend) under test; see the module docstring."""
    ref_inputs = [np.array(a, order="C") for a in inputs]
    try:
        ref = call(ref_inputs, None, None)
        ref_error = None
    except ERRORS as e:
        ref, ref_error = None, e
    outs = [] if out is None else (list(out) if isinstance(out, tuple) else [out])
    watched = list(inputs) + outs
    before = snapshot(watched)
    try:
        got = call(inputs, out, None)
    except ERRORS as e:
        assert ref_error is not None or not out_valid, f"raised {e!r} on a valid call"
        assert unchanged(watched, before), f"written before raising {e!r}"
        return
    assert ref_error is None, f"returned where the contiguous call raised {ref_error!r}"
    assert out_valid, "accepted an invalid out="
    got = got if isinstance(got, tuple) else (got,)
    ref = ref if isinstance(ref, tuple) else (ref,)
    assert len(got) == len(ref) == n_out
    for k, (g, r) in enumerate(zip(got, ref)):
        if np.asarray(r).dtype.kind == "f":
            assert np.asarray(r).dtype == dtype, (k, np.asarray(r).dtype, dtype)
        assert_same(g, r, f"output {k}")
    for g, o in zip(got[len(got) - len(outs):], outs):
        assert o is None or g is o, "out= arrays are returned as given"
    base = call([as_f64(a) if np.asarray(a).dtype.kind == "f" else a for a in ref_inputs],
                None, "numpy")
    base = base if isinstance(base, tuple) else (base,)
    for k, (r, b) in enumerate(zip(ref, base)):
        assert_near_baseline(r, b, f"output {k}")


# ------------------------------------------------------------- elementwise

PASS_ARITY = {"forward": (1, 1), "value_and_derivative": (1, 2), "backward": (2, 1),
              "forward_backward": (2, 2), "backward_from_output": (2, 1)}


@SETTINGS
@given(data=st.data())
def test_elementwise_calls(data):
    name, choice = data.draw(st.sampled_from(ELEMENTWISE), label="op")
    spec = fa.REGISTRY[name]
    op = getattr(fa, name)
    kw = {p.name: p.default for p in spec.params if p.choices is None and p.kernel}
    if name == "threshold":
        kw = {"threshold": 0.5, "value": -2.0}
    if choice is not None:
        kw[spec.choice.name] = choice
    passes = [p for p in PASS_ARITY
              if p != "backward_from_output" or spec.scalars_for(choice).derivative_from_output]
    pass_name = data.draw(st.sampled_from(passes), label="pass")
    n_in, n_out = PASS_ARITY[pass_name]
    shape = data.draw(shapes(), label="shape")
    dtypes = [data.draw(st.sampled_from(DTYPES), label=f"dtype{k}") for k in range(n_in)]
    if data.draw(st.booleans(), label="same dtype"):
        dtypes = [dtypes[0]] * n_in
    inputs = [laid_out(data.draw(values(shape, dt), label=f"input{k}"),
                       data.draw(st.sampled_from(LAYOUTS), label=f"layout{k}"))
              for k, dt in enumerate(dtypes)]
    dtype = result_dtype(*dtypes)
    kinds = [data.draw(st.sampled_from(OUT_KINDS), label=f"out{k}") for k in range(n_out)]
    outs, valid = [], True
    for k, kind in enumerate(kinds):
        o, ok = make_out(kind, shape, dtype, inputs, data.draw(st.integers(0, 1)))
        outs.append(o)
        valid &= ok
    # (None in a tuple: that output is allocated)
    out = None if all(o is None for o in outs) else outs[0] if n_out == 1 else tuple(outs)
    # two outputs in one memory is never a valid out=
    if n_out == 2 and outs[0] is not None and outs[1] is not None \
            and np.may_share_memory(outs[0], outs[1]):
        valid = False
    meth = op if pass_name == "forward" else getattr(op, pass_name)
    check_call(lambda ins, o, b: meth(*ins, out=o, backend=b, **kw), inputs, out, valid,
               n_out, dtype)


# ------------------------------------------------------------- axis ops

AXIS_OPS = ["softmax", "log_softmax", "softmin", "glu", "swiglu", "geglu", "maxout",
            "prelu", "argmax"]


@SETTINGS
@given(data=st.data())
def test_axis_op_calls(data):
    name = data.draw(st.sampled_from(AXIS_OPS), label="op")
    op = getattr(fa, name)
    shape = data.draw(shapes(min_dims=1), label="shape")
    axis = data.draw(st.integers(-len(shape) - 1, len(shape)), label="axis")
    dt = data.draw(st.sampled_from([np.float32, np.float64, np.float16]), label="dtype")
    x = laid_out(data.draw(values(shape, dt), label="x"),
                 data.draw(st.sampled_from(LAYOUTS), label="layout"))
    dtype = result_dtype(dt)
    inside = -len(shape) <= axis < len(shape)
    n = shape[axis] if inside else 0
    extra = {}
    if name in ("glu", "swiglu", "geglu", "maxout"):
        pieces = 2 if name != "maxout" else data.draw(st.integers(1, 3), label="pieces")
        yshape = list(shape)
        if inside:
            yshape[axis] = n // pieces
        yshape = tuple(yshape)
        args = () if name != "maxout" else (pieces,)
    elif name == "prelu":
        yshape = shape
        c = shape[1 % len(shape)] if data.draw(st.booleans(), label="per channel") else 1
        w = data.draw(values((c,), np.float64, 0.0, 1.0, specials=False), label="w")
        args = ()
    elif name == "argmax":
        yshape = tuple(s for k, s in enumerate(shape) if k != axis % len(shape)) if inside \
            else shape
        args = ()
    else:
        yshape = shape
        args = ()
    pass_name = "forward" if name == "argmax" else data.draw(
        st.sampled_from(["forward", "backward", "forward_backward"]), label="pass")
    inputs = [x]
    if pass_name != "forward":
        dy = laid_out(data.draw(values(yshape, dt), label="dy"),
                      data.draw(st.sampled_from(LAYOUTS), label="dy layout"))
        inputs.append(dy)
    if name == "prelu":
        inputs.append(w)
        extra["axis"] = 1
    else:
        extra["axis"] = axis
    out_shapes = {"forward": [yshape], "backward": [shape],
                  "forward_backward": [yshape, shape]}[pass_name]
    if name in ("softmax", "log_softmax", "softmin"):
        out_shapes = [shape] * len(out_shapes)
    if name == "prelu" and pass_name != "forward":
        out_shapes = out_shapes + [w.shape]
    out_dtype = np.dtype(np.int64) if name == "argmax" else dtype
    outs, valid = [], True
    for k, s in enumerate(out_shapes):
        kind = data.draw(st.sampled_from(OUT_KINDS), label=f"out{k}")
        # dweight is float64 (w's dtype) when x is; otherwise its own dtype
        o_dtype = result_dtype(dt, w.dtype) if name == "prelu" else out_dtype
        o, ok = make_out(kind, s, o_dtype, inputs, data.draw(st.integers(0, 1)))
        outs.append(o)
        valid &= ok
    out = None if all(o is None for o in outs) else (outs[0] if len(outs) == 1
                                                      else tuple(outs))
    given = [o for o in outs if o is not None]
    if any(np.may_share_memory(a, b) for i, a in enumerate(given) for b in given[i + 1:]):
        valid = False
    meth = op if pass_name == "forward" else getattr(op, pass_name)
    if name == "prelu":
        dtype = result_dtype(dt, w.dtype)
    check_call(lambda ins, o, b: meth(*ins, *args, out=o, backend=b, **extra), inputs, out,
               valid, len(out_shapes), dtype)


# ------------------------------------------------------------- losses

ELEMENTWISE_LOSSES = [n for n, s in fa.REGISTRY.items()
                      if s.kind == "loss" and s.extra["family"] == "elementwise"]
# targets the losses take: probabilities, {-1, 1} labels, anything
TARGET_RANGE = {"binary_cross_entropy": (0.0, 1.0), "sigmoid_binary_cross_entropy": (0.0, 1.0),
                "sigmoid_focal_loss": (0.0, 1.0), "kl_divergence": (0.0, 1.0)}


@SETTINGS
@given(data=st.data())
def test_elementwise_loss_calls(data):
    name = data.draw(st.sampled_from(ELEMENTWISE_LOSSES), label="loss")
    f = getattr(fa, name)
    shape = data.draw(shapes(), label="shape")
    dts = [data.draw(st.sampled_from([np.float32, np.float64, np.float16]), label=f"dt{k}")
           for k in range(2)]
    lo, hi = (0.02, 0.98) if name == "binary_cross_entropy" else (-3.0, 3.0)
    p = laid_out(data.draw(values(shape, dts[0], lo, hi), label="pred"),
                 data.draw(st.sampled_from(LAYOUTS), label="pred layout"))
    tlo, thi = TARGET_RANGE.get(name, (-3.0, 3.0))
    if data.draw(st.booleans(), label="target out of range"):
        tlo, thi = tlo - 1.0, thi + 1.0
    t = data.draw(values(shape, dts[1], tlo, thi, specials=False), label="target")
    if name in ("hinge", "squared_hinge"):
        t = np.where(t > 0, 1, -1).astype(t.dtype)
    t = laid_out(t, data.draw(st.sampled_from(LAYOUTS), label="target layout"))
    reduction = data.draw(st.sampled_from(["mean", "sum", "none"] +
                                          (["batchmean"] if name == "kl_divergence" else [])),
                          label="reduction")
    dtype = result_dtype(*dts)
    want_grad = data.draw(st.booleans(), label="value_and_grad")
    out, valid = None, True
    if want_grad:
        out, valid = make_out(data.draw(st.sampled_from(OUT_KINDS), label="out"), shape, dtype,
                              [p, t], data.draw(st.integers(0, 1)))

    def call(ins, o, b):
        if want_grad:
            return f.value_and_grad(*ins, reduction=reduction, out=o, backend=b)
        return f(*ins, reduction=reduction, backend=b)
    check_call(call, [p, t], out, valid, 2 if want_grad else 1, dtype)


@SETTINGS
@given(data=st.data())
def test_classification_loss_calls(data):
    name = data.draw(st.sampled_from(["sparse_softmax_cross_entropy", "nll_loss",
                                      "softmax_cross_entropy"]), label="loss")
    f = getattr(fa, name)
    batch = data.draw(shapes(max_dims=2), label="batch")
    c = data.draw(st.integers(1, 5), label="classes")
    shape = batch + (c,)
    dt = data.draw(st.sampled_from([np.float32, np.float64, np.float16]), label="dtype")
    x = laid_out(data.draw(values(shape, dt), label="logits"),
                 data.draw(st.sampled_from(LAYOUTS), label="layout"))
    reduction = data.draw(st.sampled_from(["mean", "sum", "none"]), label="reduction")
    opts = {"reduction": reduction}
    if name == "softmax_cross_entropy":
        tdt = data.draw(st.sampled_from([np.float32, np.float64]), label="target dtype")
        t = data.draw(values(shape, np.float64, 0.0, 1.0, specials=False), label="target")
        target = (t / np.maximum(t.sum(-1, keepdims=True), 1e-3)).astype(tdt)
        opts["label_smoothing"] = data.draw(st.sampled_from([0.0, 0.1]), label="smoothing")
    else:
        ign = data.draw(st.sampled_from([-100, 0, c - 1]), label="ignore_index")
        opts["ignore_index"] = ign
        near = [-2**40, -101, -100, -1, 0, c - 1, c, c + 1, 2**40]
        rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
        target = rng.integers(0, c, batch)
        for _ in range(data.draw(st.integers(0, 2), label="odd labels")):
            if target.size:
                target.flat[data.draw(st.integers(0, target.size - 1))] = data.draw(
                    st.sampled_from(near))
        target = target.astype(data.draw(st.sampled_from([np.int64, np.int32]), label="ltype")) \
            if target.min(initial=0) >= -2**31 and target.max(initial=0) < 2**31 else target
        if data.draw(st.booleans(), label="weighted"):
            opts["weight"] = data.draw(values((c,), np.float64, 0.1, 2.0, specials=False))
        if name == "sparse_softmax_cross_entropy":
            opts["label_smoothing"] = data.draw(st.sampled_from([0.0, 0.1]), label="smoothing")
            opts["z_loss"] = data.draw(st.sampled_from([0.0, 1e-3]), label="z_loss")
            opts["softcap"] = data.draw(st.sampled_from([None, 5.0]), label="softcap")
    if name == "nll_loss":
        x = laid_out(np.asarray(fa.log_softmax(np.array(x, np.float64))).astype(dt),
                     data.draw(st.sampled_from(LAYOUTS), label="layout"))
    dtype = result_dtype(dt, target.dtype) if name == "softmax_cross_entropy" else \
        result_dtype(dt)
    out, valid = make_out(data.draw(st.sampled_from(OUT_KINDS), label="out"), shape, dtype,
                          [x], data.draw(st.integers(0, 1)))

    def call(ins, o, b):
        return f.value_and_grad(ins[0], target, out=o, backend=b, **opts)
    check_call(call, [x], out, valid, 2, dtype)


def test_adversarial_strategies_reach_every_case():
    """The strategies above can produce what the module docstring names: a
    0-size axis, each layout, each out= kind (a property test that never
    drew them would pass for the wrong reason)."""
    a = np.arange(6.0).reshape(2, 3)
    for layout in LAYOUTS:
        b = laid_out(a, layout)
        assert b.shape == a.shape and np.array_equal(b, a if layout != "broadcast"
                                                      else np.broadcast_to(a[:1], a.shape))
    assert not laid_out(a, "step").flags.c_contiguous
    assert laid_out(a, "reversed").strides[-1] < 0
    assert laid_out(a, "broadcast").strides[0] == 0
    assert not laid_out(a, "readonly").flags.writeable
    x = a.copy()
    assert make_out("alias", a.shape, a.dtype, [x], 0)[0] is x
    o, ok = make_out("overlap", a.shape, a.dtype, [x], 0)
    assert np.may_share_memory(o, x) and o is not x and ok
    assert not make_out("bad_dtype", a.shape, a.dtype, [x], 0)[1]
