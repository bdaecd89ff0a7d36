"""CPU lowerings of ``fastact.mathlib``: branch-free, vectorizable float32/float64 math.

LLVM cannot vectorize calls into libm (llvmlite ships no SVML), so every
function here is straight-line arithmetic, comparisons, selects, integer ops
and bit-casts.  Inside a ``prange`` loop LLVM turns them into packed SIMD code.

Each function has a float32 and a float64 implementation, built by
``_build(F)`` with constants of type ``F``; the ``overload`` for each
``mathlib`` name dispatches on the argument type.

They are accurate under the kernels' flags (``fastmath={"contract", "arcp"}``):
no step relies on a product being rounded (FMA contraction can only make it
more exact) and every division tolerates being turned into a multiplication
by the reciprocal.  Measured maximum relative errors (normal results) are
recorded in ``tests/test_vmath.py``; all are below 4e-7 (float32) and 5e-15
(float64).

Algorithms
----------
exp, expm1
    n = rint(x log2 e), Cody-Waite r = (x - n ln2_hi) - n ln2_lo, expm1(r) =
    r + r**2 P(r) on |r| <= ln2/2 (P fitted, degree 4 / 9), and 2**n applied
    as the product of two exact powers of two, 2**(n -+ 64) and 2**(+-64), so
    overflow gives inf and the denormal range underflows gradually with one
    rounding.  expm1 = (2**n - 1) + 2**n em.
exp_neg
    e**(-t + d), t >= 0 and d a small correction: exp_neg_abs's steps on t,
    d added to the reduced argument (its Cody-Waite parts are exact).
exp_neg_abs, expm1_neg_abs
    e**(-|x|) and e**(-|x|) - 1 with exp's reduction and polynomial, the
    clamp and scaling of normal_pdf (below): |x| clamped where e**(-|x|)
    rounds to 0, n from a shifter FMA, 2**(n + 64) by a shift, 2**-64 folded
    into the last FMA; expm1_neg_abs = (2**n - 1) + 2**n em in one FMA.  The
    two share every step before that (one reduction where a kernel takes
    both).  NaN propagates through the arithmetic.
normal_pdf
    e**(-x**2/2) / sqrt(2 pi) through the same non-positive exponential as
    exp_neg_abs, of -u/2 - e/2 with x**2 = u + e exactly (fma): full relative
    accuracy however large x**2 is.  |x| is clamped at the cutoff where the
    density rounds to 0; 1/sqrt(2 pi) is folded into the final FMA.
pow_unit
    x**y for x in [0, 1], y > 0 finite: e**-t, t = -y log x, with log x as a
    double word (the Fast2Sum error of log's last addition) and the rounding
    errors of t passed to exp_neg.
log
    musl/fdlibm: exponent and mantissa split by bit operations (mantissa in
    [sqrt2/2, sqrt2)), s = f/(2+f) and the Lg polynomials.
log1p
    log(u) + (x - (u - 1))/u with u = 1 + x (the correction is the first-order
    term of the rounding error of u).
tanh
    q = expm1_neg_abs(2x) in (-1, 0], |tanh x| = -q/(2 + q), sign copied from x.
erfc
    float32: one approximation for every x, erfc|x| = t exp(-x*x + u Q(u)),
    t = 1/(1 + |x|/2), u = 1 - t, Q a degree-9 polynomial; erfc(-x) = 2 - erfc x.
    float64: fdlibm's four rational approximations (|x| < 0.84375, < 1.25,
    < 1/0.35, beyond), all evaluated; the asymptotic ones are rewritten as
    polynomials in x**2 (not 1/x**2) so a single division serves the selected
    piece.  In both, the exponential is evaluated from an exact double-word
    argument (x split into halves by ``mathlib.chop``), which keeps full
    relative accuracy in the tail down to the underflow threshold.
log1p_unit
    log1p on [0, 1] only: 2 atanh(s) = 2 s P(s**2), s = x/(2 + x) in
    [0, 1/3], P a least-squares Chebyshev fit of degree 4 (float32) or 9
    (float64) with P(0) = 1, evaluated as v + v w R(w), v = x/(1 + x/2), w =
    v**2, P(w/4) = 1 + w R(w), so that the one rounding of the final FMA
    takes the place of those of P and of a product (max errors 1.9 and 2.3
    ulps, float32 and float64, against 3.4 and 3.6; log1p(1) = log 2
    correctly rounded): one division, no range reduction, no special cases
    (softplus, log-sigmoid and the losses built on them take log1p of
    exp(-|x|)).
log1m_unit
    log(1 - x) on [0, 1] only: log(u) + (q - x)/u, u = 1 - x rounded, q = 1 - u
    (exact); q - x is u's rounding error, nonzero only for x < 1/2, where
    1/u = 1 + q + q**2 + q**3 to far below its weight (q <= 1/2): one
    division (log's), no denormal or negative arguments, two special cases.
erfcx
    exp(x**2) erfc(x) for x >= 0, one division and no exponential.  float32:
    t R(t), t = 1/(1 + x/2), R one polynomial of degree 10 for the whole
    half-line (weighted least-squares Chebyshev fit).  float64: P(x)/Q(x), a
    rational function of degrees 10/11 for the whole half-line (degrees 9/10
    reach 2.9e-15).  Max errors with rounded coefficients 1.6e-7 and
    8.7e-16.  x < 0 uses 2 exp(x**2) - erfcx(-x), x**2 as an exact double
    word.
"""
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, overload, register_jitable

from .. import mathlib
from ..mathlib import chop, fma, polynomial

# ---------------------------------------------------------------- intrinsics
# Small IR helpers.  All of them are plain LLVM instructions (or the llvm.rint /
# llvm.copysign intrinsics) that the loop vectorizer widens.

_FLOAT_LAYOUT = {
    # type: (int bits, mantissa bits, exponent bias)
    types.float32: (32, 23, 127),
    types.float64: (64, 52, 1023),
}


def _llvm_intrinsic(builder, name, value_type, args):
    suffix = "f32" if value_type == ir.FloatType() else "f64"
    fnty = ir.FunctionType(value_type, [value_type] * len(args))
    fn = cgutils.get_or_insert_function(builder.module, fnty, f"llvm.{name}.{suffix}")
    return builder.call(fn, args)


@intrinsic
def _rint(typingctx, x):
    """Round to nearest integer (ties to even), as a float."""
    if x not in _FLOAT_LAYOUT:
        return None

    def codegen(context, builder, sig, args):
        return _llvm_intrinsic(builder, "rint", args[0].type, [args[0]])

    return x(x), codegen


@intrinsic
def _copysign(typingctx, mag, sgn):
    """|mag| with the sign bit of sgn."""
    if mag not in _FLOAT_LAYOUT or sgn != mag:
        return None

    def codegen(context, builder, sig, args):
        return _llvm_intrinsic(builder, "copysign", args[0].type, list(args))

    return mag(mag, sgn), codegen


@intrinsic
def _sel(typingctx, cond, a, b):
    """``a if cond else b`` as an LLVM select (no branch)."""
    if not isinstance(cond, types.Boolean) or a not in _FLOAT_LAYOUT or b != a:
        return None

    def codegen(context, builder, sig, args):
        c, x, y = args
        if c.type != ir.IntType(1):
            c = builder.trunc(c, ir.IntType(1))
        return builder.select(c, x, y)

    return a(cond, a, b), codegen


@intrinsic
def _pow2(typingctx, n):
    """2**n for a float holding an integer n in the normal exponent range."""
    if n not in _FLOAT_LAYOUT:
        return None
    bits, mbits, bias = _FLOAT_LAYOUT[n]

    def codegen(context, builder, sig, args):
        i32 = ir.IntType(32)
        k = builder.fptosi(args[0], i32)          # packed cvttps2dq / cvttpd2dq
        k = builder.add(k, ir.Constant(i32, bias))
        if bits == 64:
            k = builder.zext(k, ir.IntType(64))
        k = builder.shl(k, ir.Constant(k.type, mbits))
        return builder.bitcast(k, args[0].type)

    return n(n), codegen


@intrinsic
def _pow2_low_bits(typingctx, k):
    """2**(m - bias) for a float k holding an integer whose low bits are m, m in
    [1, 2 bias]: those bits shifted into the exponent field (k = SHIFT + m,
    SHIFT = 1.5 * 2**mantissa bits, has zeros there)."""
    if k not in _FLOAT_LAYOUT:
        return None
    bits, mbits, _ = _FLOAT_LAYOUT[k]

    def codegen(context, builder, sig, args):
        i = builder.bitcast(args[0], ir.IntType(bits))
        i = builder.shl(i, ir.Constant(i.type, mbits))
        return builder.bitcast(i, args[0].type)

    return k(k), codegen


@intrinsic
def _log_reduce(typingctx, x):
    """(k, m) with x = 2**k * m, m in [sqrt(2)/2, sqrt(2)), for positive normal x
    (musl's bit manipulation).  k is returned as a float."""
    if x not in _FLOAT_LAYOUT:
        return None
    bits = _FLOAT_LAYOUT[x][0]
    sig = types.UniTuple(x, 2)(x)

    def codegen(context, builder, sig, args):
        ft = args[0].type
        i32 = ir.IntType(32)
        if bits == 32:
            ix = builder.bitcast(args[0], i32)
            ix = builder.add(ix, ir.Constant(i32, 0x3F800000 - 0x3F3504F3))
            k = builder.sub(builder.ashr(ix, ir.Constant(i32, 23)), ir.Constant(i32, 0x7F))
            ix = builder.add(builder.and_(ix, ir.Constant(i32, 0x007FFFFF)),
                             ir.Constant(i32, 0x3F3504F3))
        else:
            i64 = ir.IntType(64)
            ix = builder.bitcast(args[0], i64)
            ix = builder.add(ix, ir.Constant(i64, (0x3FF00000 - 0x3FE6A09E) << 32))
            hx = builder.trunc(builder.lshr(ix, ir.Constant(i64, 32)), i32)
            k = builder.sub(builder.ashr(hx, ir.Constant(i32, 20)), ir.Constant(i32, 0x3FF))
            ix = builder.add(builder.and_(ix, ir.Constant(i64, 0x000FFFFFFFFFFFFF)),
                             ir.Constant(i64, 0x3FE6A09E << 32))
        m = builder.bitcast(ix, ft)
        kf = builder.sitofp(k, ft)
        return context.make_tuple(builder, sig.return_type, [kf, m])

    return sig, codegen


# ---------------------------------------------------------------- implementations

# The helpers below are small: LLVM inlines them.  The public names (bottom of
# the file) are inlined at Numba IR level; inlining the helpers there as well
# multiplies compile times without changing the code.

# fdlibm coefficients of the float64 erfc (s_erf.c).
_ERF = dict(
    erx=8.45062911510467529297e-01,
    pp=(1.28379167095512558561e-01, -3.25042107247001499370e-01, -2.84817495755985104766e-02,
        -5.77027029648944159157e-03, -2.37630166566501626084e-05),
    qq=(1.0, 3.97917223959155352819e-01, 6.50222499887672944485e-02, 5.08130628187576562776e-03,
        1.32494738004321644526e-04, -3.96022827877536812320e-06),
    pa=(-2.36211856075265944077e-03, 4.14856118683748331666e-01, -3.72207876035701323847e-01,
        3.18346619901161753674e-01, -1.10894694282396677476e-01, 3.54783043256182359371e-02,
        -2.16637559486879084300e-03),
    qa=(1.0, 1.06420880400844228286e-01, 5.40397917702171048937e-01, 7.18286544141962662868e-02,
        1.26171219808761642112e-01, 1.36370839120290507362e-02, 1.19844998467991074170e-02),
    ra=(-9.86494403484714822705e-03, -6.93858572707181764372e-01, -1.05586262253232909814e+01,
        -6.23753324503260060396e+01, -1.62396669462573470355e+02, -1.84605092906711035994e+02,
        -8.12874355063065934246e+01, -9.81432934416914548592e+00),
    sa=(1.0, 1.96512716674392571292e+01, 1.37657754143519042600e+02, 4.34565877475229228821e+02,
        6.45387271733267880336e+02, 4.29008140027567833386e+02, 1.08635005541779435134e+02,
        6.57024977031928170135e+00, -6.04244152148580987438e-02),
    rb=(-9.86494292470009928597e-03, -7.99283237680523006574e-01, -1.77579549177547519889e+01,
        -1.60636384855821916062e+02, -6.37566443368389627722e+02, -1.02509513161107724954e+03,
        -4.83519191608651397019e+02),
    sb=(1.0, 3.03380607434824582924e+01, 3.25792512996573918826e+02, 1.53672958608443695994e+03,
        3.19985821950859553908e+03, 2.55305040643316442583e+03, 4.74528541206955367215e+02,
        -2.24409524465858183362e+01),
)

# float32 erfcx(a) (1 + a/k) = R(t), t = 1/(1 + a/k) in (0, 1]: (k,
# coefficients of R, constant term first).  R(0) = 1/(k sqrt(pi)) rounded (the
# asymptote, so that results in the denormal range round right); the other
# coefficients fitted to mpmath values of (R(t) - R(0))/t on 800 Chebyshev
# nodes, the top one then moved by an ulp or two so that R(1) = erfcx(0)
# evaluates to exactly 1.
_ERFCX_F32 = (2.0, (
    0.282094806432724, 0.2820940315723419, 0.24687811732292175, 0.17538470029830933,
    0.09306424856185913, -0.05783515051007271, 0.12921468913555145, -0.4509691298007965,
    0.49039047956466675, -0.23321357369422913, 0.04289677366614342))

# float64 erfcx(a) = P(a)/Q(a), degrees 10 and 11, constant terms (1) first: a
# rational fit on the whole half-line, made in t = 3/(3 + a) as t A(t)/B(t)
# (linearized least squares with Lawson reweighting on 120 Chebyshev nodes,
# 4.9e-17 in exact arithmetic) with two constraints: A(1) = B(1), so that
# erfcx(0) = 1 exactly, and A(0)/B(0) = 1/(3 sqrt(pi)), so that P/Q has the
# asymptote 1/(sqrt(pi) a) of erfcx; then expanded in a.
_ERFCX_F64_P = (
    1.0, 2.360450731418628, 2.755697994414125, 2.0578055790993997, 1.0784188423648864,
    0.4124578725459618, 0.11637924601108493, 0.023930051153350798, 0.0034395794962760223,
    0.0003133536163908254, 1.3811816282000693e-05)
_ERFCX_F64_Q = (
    1.0, 3.4888298985141324, 5.692420969437859, 5.74443769089242, 3.9923836734286198,
    2.01156839554578, 0.751992298093509, 0.20931285030883218, 0.04269261373125792,
    0.006108736327147903, 0.0005554048240670901, 2.4480806957031635e-05)


# log1p_unit: coefficients of P(q) = atanh(sqrt q)/sqrt q on q in [0, 1/9],
# constant term (1) first.
_ATANH = {
    np.float32: (1.0, 0.3333320617675781, 0.2001080960035324, 0.1400042325258255,
                 0.14007562398910522),
    np.float64: (1.0, 0.3333333333333892, 0.19999999998015183, 0.1428571452943293,
                 0.11111096463121689, 0.09091405617212489, 0.07682191554965105,
                 0.06792537630859874, 0.04955593113337988, 0.08858976587349249),
}


# expm1(r) = r + r**2 P(r) on |r| <= ln2/2: coefficients of P, constant term
# (~1/2) first; least-squares Chebyshev fits of (expm1(r) - r)/r**2 weighted
# for the relative error of expm1, 1.4e-8 (degree 4, float32) and 3.6e-16
# (degree 9, float64) in exact arithmetic.
_EXPM1 = {
    np.float32: (0.49999996748252973, 0.16666541990495407, 0.04166759642924704,
                 0.008366673466121457, 0.0013858160110118121),
    np.float64: (0.5000000000000009, 0.16666666666666358, 0.0416666666665661,
                 0.00833333333383281, 0.0013888888927493085, 0.00019841268294924866,
                 2.4801516474591635e-05, 2.7558966293940847e-06, 2.7620096433915093e-07,
                 2.4494727613843342e-08),
}


_erfcx_poly = polynomial("erfcx_poly", {np.float32: _ERFCX_F32[1]})
_erfcx_num = polynomial("erfcx_num", {np.float64: _ERFCX_F64_P})
_erfcx_den = polynomial("erfcx_den", {np.float64: _ERFCX_F64_Q})
# log1p_unit evaluates P(v**2/4) = 1 + w R(w), w = v**2, its tail R's
# coefficients P's from the linear one on, divided by powers of 4 (exactly).
_atanh_tail4 = polynomial("atanh_tail4", {
    t: tuple(a * 0.25 ** k for k, a in enumerate(cs))[1:] for t, cs in _ATANH.items()})
_expm1_poly = polynomial("expm1_poly", _EXPM1)


# float32 erfc: Q(u) coefficients, constant term first (see _build).
_ERFC_F32_Q = (-1.2567583277554752, -0.3032393488197415, 0.16152890068531692,
               0.19160824842152896, 0.0708689714191555, -0.14044403811028142,
               0.17239222010192676, -0.49726785357268655, 0.4872737796624681,
               -0.15154367716508482)
_erfc_q = polynomial("erfc_q", {np.float32: _ERFC_F32_Q})


def _build(F):
    """Scalar implementations for float type F (np.float32 or np.float64)."""
    f32 = F is np.float32
    c = F  # constant in this type

    ONE, TWO, HALF, ZERO = c(1.0), c(2.0), c(0.5), c(0.0)
    INF, NAN = c(np.inf), c(np.nan)
    NEG_ZERO = c(-0.0)

    # ---- exp core
    if f32:
        EXP_LO, EXP_HI = c(-104.0), c(89.0)
        LN2_HI, LN2_LO = c(6.9314575195e-01), c(1.4286067653e-06)   # musl expf
        NBIG = c(120.0)
    else:
        EXP_LO, EXP_HI = c(-746.0), c(710.0)
        LN2_HI, LN2_LO = c(6.93147180369123816490e-01), c(1.90821492927058770002e-10)
        NBIG = c(1000.0)
    LOG2E = c(1.4426950408889634)
    SCALE_K, SCALE_UP, SCALE_DOWN = c(64.0), c(2.0 ** 64), c(2.0 ** -64)

    @register_jitable
    def _em_poly(r):
        return r + (r * r) * _expm1_poly(r)

    @register_jitable
    def exp_core(x, lo):
        """(em, s1, s2, n): exp(x + lo) = s1 * (s2 * (1 + em)), 2**n = s1 * s2,
        em = expm1 of the reduced argument.  |lo| must be tiny against 1."""
        xc = _sel(x < EXP_LO, EXP_LO, x)
        xc = _sel(xc > EXP_HI, EXP_HI, xc)
        n = _rint(xc * LOG2E)
        r = (xc - n * LN2_HI) - n * LN2_LO
        r = r + lo
        em = _em_poly(r)
        # 2**n = 2**(n -+ 64) 2**(+-64): n - off is in the normal exponent range
        # for every clamped n (float32 [-150, 128], float64 [-1076, 1025])
        below = n < ZERO
        s1 = _pow2(n - _sel(below, -SCALE_K, SCALE_K))
        s2 = _sel(below, SCALE_DOWN, SCALE_UP)
        return em, s1, s2, n

    @register_jitable
    def exp_(x):
        em, s1, s2, _ = exp_core(x, NEG_ZERO)
        y = s1 * (s2 * (ONE + em))
        return _sel(x != x, x, y)

    # Exponentials of arguments that are never positive: k = SHIFT + n holds
    # n = rint(argument log2 e) in its low bits (at SHIFT the float spacing is
    # 1), and 2**(n + 64) comes from them by a shift (_pow2_low_bits of
    # k + POW2_BIAS); the clamps of the argument keep n + bias + 64 >= 1.
    _, MBITS, BIAS = _FLOAT_LAYOUT[types.float32 if f32 else types.float64]
    SHIFT = c(1.5 * 2.0 ** MBITS)
    POW2_BIAS = c(BIAS + 64)
    NEG_LOG2E = c(-1.4426950408889634)
    SCALE_DOWN_C = c(2.0 ** -64)

    # exp_neg_abs: beyond ENA_T the result rounds to 0 (float32 e**-104 and
    # float64 e**-746, against half the least denormal, e**-103.97 / e**-745.13).
    ENA_T = c(104.0) if f32 else c(746.0)

    @register_jitable
    def _exp_nonpos(t, a, b):
        """(2**(n + 64), em): e**(-t + a b) = 2**(n + 64) 2**-64 (1 + em), for t
        in [0, 748.8] (float32 [0, 105.1]) and |a b| tiny against 1 (a = -0,
        b = 1: none, and no instruction).  NaN passes."""
        k = fma(t, NEG_LOG2E, SHIFT)             # SHIFT + rint(-t log2 e)
        n = k - SHIFT
        r = fma(n, -LN2_HI, -t)                  # exact (Cody-Waite)
        r = fma(n, -LN2_LO, r)
        return _pow2_low_bits(k + POW2_BIAS), _em_poly(fma(a, b, r))

    @register_jitable
    def _exp_neg_core(t, d):
        t = _sel(t > ENA_T, ENA_T, t)            # (NaN passes, and gives NaN)
        return _exp_nonpos(t, d, ONE)

    @register_jitable
    def _neg_abs_core(x):
        return _exp_neg_core(abs(x), NEG_ZERO)

    @register_jitable
    def exp_neg_(a, b):                          # e**(-a + b)
        p, em = _exp_neg_core(a, b)
        return p * fma(SCALE_DOWN_C, em, SCALE_DOWN_C)

    @register_jitable
    def exp_neg_abs_(x):
        return exp_neg_(abs(x), NEG_ZERO)

    @register_jitable
    def expm1_neg_abs_(x):
        p, em = _neg_abs_core(x)
        s = p * SCALE_DOWN_C                     # 2**n exactly (0 below the least denormal)
        return fma(s, em, s - ONE)               # s - 1 is exact

    # normal_pdf: beyond PDF_T the density rounds to 0 (float32 e**-105.1,
    # float64 e**-748.8, against half the least denormal e**-103.3 / e**-745.1).
    PDF_T = c(mathlib.PDF_CUTOFF_F32 if f32 else mathlib.PDF_CUTOFF_F64)
    PDF_C = c(2.0 ** -64 / np.sqrt(2.0 * np.pi))

    @register_jitable
    def normal_pdf_(x):
        ax = abs(x)
        t = _sel(ax > PDF_T, PDF_T, ax)          # (NaN passes, and gives NaN)
        u = t * t
        e = fma(t, t, -u)                        # t**2 = u + e exactly
        p, em = _exp_nonpos(u * HALF, e, -HALF)    # -u/2 - e/2 (halving is exact)
        return p * fma(PDF_C, em, PDF_C)

    @register_jitable
    def exp_minus_square(ax, b):
        """exp_core of -ax**2 + b (ax >= 0 moderate, |b| below ax**2 or small),
        -ax**2 taken as an exact hi + lo pair: full relative accuracy however
        large ax**2 is."""
        xh = chop(ax)
        xl = ax - xh
        sq_lo = (xh + xh) * xl + xl * xl       # ax^2 = xh^2 + sq_lo, xh^2 exact
        a = -(xh * xh)
        hi = a + b                             # TwoSum(a, b)
        bv = hi - a
        av = hi - bv
        lo = (a - av) + (b - bv)
        return exp_core(hi, lo - sq_lo)

    @register_jitable
    def expm1_(x):
        em, s1, s2, n = exp_core(x, NEG_ZERO)
        s = s1 * s2
        small = (s - ONE) + s * em           # exact s - 1 and s*em for moderate n
        big = s1 * (s2 * (ONE + em)) - ONE   # near overflow (-1 is negligible)
        y = _sel(n > NBIG, big, small)
        y = _sel(x == ZERO, x, y)            # keeps -0.0
        return _sel(x != x, x, y)

    # ---- log
    if f32:
        TINY_NORMAL, DEN_SCALE, DEN_K = c(1.1754943508222875e-38), c(2.0 ** 25), c(25.0)
        LOG_LN2_HI, LOG_LN2_LO = c(6.9313812256e-01), c(9.0580006145e-06)   # musl logf
        Lg1, Lg2, Lg3, Lg4 = (c(0xaaaaaa * 2.0 ** -24), c(0xccce13 * 2.0 ** -25),
                              c(0x91e9ee * 2.0 ** -25), c(0xf89e26 * 2.0 ** -26))

        @register_jitable
        def _log_r(z, w):
            t1 = w * (Lg2 + w * Lg4)
            t2 = z * (Lg1 + w * Lg3)
            return t2 + t1
    else:
        TINY_NORMAL, DEN_SCALE, DEN_K = c(2.2250738585072014e-308), c(2.0 ** 54), c(54.0)
        LOG_LN2_HI, LOG_LN2_LO = c(6.93147180369123816490e-01), c(1.90821492927058770002e-10)
        L = tuple(c(v) for v in (
            6.666666666666735130e-01, 3.999999999940941908e-01, 2.857142874366239149e-01,
            2.222219843214978396e-01, 1.818357216161805012e-01, 1.531383769920937332e-01,
            1.479819860511658591e-01))

        @register_jitable
        def _log_r(z, w):
            t1 = w * (L[1] + w * (L[3] + w * L[5]))
            t2 = z * (L[0] + w * (L[2] + w * (L[4] + w * L[6])))
            return t2 + t1

    @register_jitable
    def _log_km2(k, m):
        """log(2**k m) = hi + lo, m in [sqrt(2)/2, sqrt(2)) (``_log_reduce``):
        hi the rounded log, lo the rounding error of its last sum (exact,
        Fast2Sum: |k ln2_hi| > |log m| unless k = 0, where lo = 0)."""
        f = m - ONE
        hfsq = HALF * f * f
        s = f / (TWO + f)
        z = s * s
        R = _log_r(z, z * z)
        r = s * (hfsq + R) + k * LOG_LN2_LO - hfsq + f
        a = k * LOG_LN2_HI                       # exact
        hi = r + a
        return hi, (a - hi) + r

    @register_jitable
    def _log_km(k, m):
        """log(2**k m), m in [sqrt(2)/2, sqrt(2)) (``_log_reduce``)."""
        return _log_km2(k, m)[0]

    @register_jitable
    def _log_finite2(x):
        """log(x) = hi + lo (``_log_km2``) for x > 0 finite (garbage elsewhere)."""
        den = x < TINY_NORMAL
        xs = _sel(den, x * DEN_SCALE, x)
        k, m = _log_reduce(xs)
        return _log_km2(k - _sel(den, DEN_K, ZERO), m)

    @register_jitable
    def log_finite(x):
        """log(x) for x > 0 finite (garbage elsewhere)."""
        return _log_finite2(x)[0]

    @register_jitable
    def log_(x):
        y = log_finite(x)
        y = _sel(x == INF, x, y)
        y = _sel(x == ZERO, -INF, y)
        y = _sel(x < ZERO, NAN, y)
        return _sel(x != x, x, y)

    @register_jitable
    def log1p_(x):
        u = ONE + x
        # log(u) + d/u, d = x - (u - 1) the rounding error of u (u - 1 is exact).
        y = log_finite(u) + (x - (u - ONE)) / u
        y = _sel(u == ONE, x, y)             # tiny x, and -0.0
        y = _sel(x == INF, x, y)
        y = _sel(u == ZERO, -INF, y)
        y = _sel(u < ZERO, NAN, y)
        return _sel(x != x, x, y)

    @register_jitable
    def _log1m_correction(d, q):
        """d/u for u = 1 - x rounded, q = 1 - u (exact) and d = q - x its
        rounding error: log(1 - x) = log(u + d) ~ log(u) + d/u.  d is 0 unless
        x < 1/2, where 1/u = 1 + q + q**2 + q**3 to far below d's weight."""
        return d * (ONE + q * (ONE + q * (ONE + q)))

    @register_jitable
    def log1m_unit_(x):
        u = ONE - x                          # in [0, 1]: 0 or a normal number
        q = ONE - u                          # exact
        k, m = _log_reduce(u)
        y = _log_km(k, m) + _log1m_correction(q - x, q)
        y = _sel(u == ZERO, -INF, y)
        return _sel(x != x, x, y)

    @register_jitable
    def bernoulli_log_(a, b):                    # log p (t = 1) or log(1 - p)
        p, t = a, b
        u = ONE - p
        q = ONE - u
        pos = t == ONE
        # the log of p or of u, and u's correction; d selected before the
        # product, so that it contracts to one FMA as in log1m_unit
        d = _sel(pos, ZERO, q - p)
        return log_(_sel(pos, p, u)) + _log1m_correction(d, q)

    @register_jitable
    def pow_unit_(a, b):                         # a**b
        x, y = a, b
        # x**y = e**-t, t = -y log x >= 0: t's rounding error and y times that
        # of log x go to exp_neg as its correction, so that the result keeps
        # full relative accuracy however large t is
        hi, lo = _log_finite2(x)
        yh = y * hi
        d = fma(y, lo, fma(y, hi, -yh))          # y (hi + lo) - yh
        r = exp_neg_(-yh, d)
        r = _sel(x == ZERO, ZERO, r)
        return _sel(x != x, x, r)

    @register_jitable
    def log1p_unit_(x):
        # v = 2x/(2 + x) as x/(1 + x/2) (the same two roundings, one
        # instruction fewer) and v + v w R(w) rounded once at the end:
        # log1p(1) = log 2 correctly rounded
        v = x / fma(x, HALF, ONE)
        w = v * v
        return fma(v * w, _atanh_tail4(w), v)

    # ---- tanh
    @register_jitable
    def tanh_(x):
        q = expm1_neg_abs_(TWO * x)              # in (-1, 0]: no overflow, no cancellation
        return _copysign(-q / (TWO + q), x)      # (NaN propagates)

    # ---- erfc
    # erfc underflows to 0 beyond this (erfc(10.1) < 2**-150, erfc(27.3) < 2**-1075);
    # clamping keeps the polynomials below finite.
    X_MAX = c(10.5) if f32 else c(28.0)

    if f32:
        # One approximation for all |x| (a third of the work of fdlibm's four):
        # erfc(a) = t exp(-a^2 + u Q(u)), t = 1/(1 + a/2), u = 1 - t = a t/2.
        # Q is a least-squares Chebyshev fit of (log(erfc(a)/t) + a^2)/u on
        # 0 <= a <= 10.5 (error 5e-9 in exact arithmetic); u Q(u) -> 0 as
        # a -> 0, so erfc stays accurate near 1.
        @register_jitable
        def erfc_(x):
            axc = abs(x)
            axc = _sel(axc > X_MAX, X_MAX, axc)
            t = ONE / (ONE + HALF * axc)
            u = HALF * axc * t
            q = _erfc_q(u)
            em, s1, s2, _ = exp_minus_square(axc, u * q)
            e = s1 * ((s2 * (ONE + em)) * t)    # one rounding in the denormal range
            res = _sel(x < ZERO, TWO - e, e)
            return _sel(x != x, x, res)
    else:
        # fdlibm's four rational approximations
        erx = c(_ERF["erx"])
        one_m_erx = c(1.0 - _ERF["erx"])
        pp = tuple(c(v) for v in _ERF["pp"])
        qq = tuple(c(v) for v in _ERF["qq"])
        pa = tuple(c(v) for v in _ERF["pa"])
        qa = tuple(c(v) for v in _ERF["qa"])
        ra = tuple(c(v) for v in _ERF["ra"])
        sa = tuple(c(v) for v in _ERF["sa"])
        rb = tuple(c(v) for v in _ERF["rb"])
        sb = tuple(c(v) for v in _ERF["sb"])
        T_A, T_B, T_C = c(0.84375), c(1.25), c(1.0 / 0.35)
        QUARTER, C5625 = c(0.25), c(0.5625)

        @register_jitable
        def erfc_(x):
            ax = abs(x)
            axc = _sel(ax > X_MAX, X_MAX, ax)

            # |x| < 0.84375: erf(x) = x + x*P(z)/Q(z), z = x^2
            z = x * x
            nA = pp[0] + z * (pp[1] + z * (pp[2] + z * (pp[3] + z * pp[4])))
            dA = qq[0] + z * (qq[1] + z * (qq[2] + z * (qq[3] + z * (qq[4] + z * qq[5]))))
            # 0.84375 <= |x| < 1.25: erf(1 + s) - erx = P(s)/Q(s)
            s = ax - ONE
            nB = pa[0] + s * (pa[1] + s * (pa[2] + s * (pa[3] + s * (pa[4] + s * (pa[5] + s * pa[6])))))
            dB = qa[0] + s * (qa[1] + s * (qa[2] + s * (qa[3] + s * (qa[4] + s * (qa[5] + s * qa[6])))))
            # |x| >= 1.25: log(x erfc x) + x^2 + 0.5625 = R(1/y)/S(1/y), y = x^2;
            # multiplied through by y^8 (y^7) to get polynomials in y.
            y = axc * axc
            nC = y * (ra[7] + y * (ra[6] + y * (ra[5] + y * (ra[4] + y * (
                ra[3] + y * (ra[2] + y * (ra[1] + y * ra[0])))))))
            dC = sa[8] + y * (sa[7] + y * (sa[6] + y * (sa[5] + y * (sa[4] + y * (
                sa[3] + y * (sa[2] + y * (sa[1] + y)))))))
            nD = y * (rb[6] + y * (rb[5] + y * (rb[4] + y * (rb[3] + y * (
                rb[2] + y * (rb[1] + y * rb[0]))))))
            dD = sb[7] + y * (sb[6] + y * (sb[5] + y * (sb[4] + y * (
                sb[3] + y * (sb[2] + y * (sb[1] + y))))))

            inA = ax < T_A
            inB = ax < T_B
            inC = ax < T_C
            num = _sel(inA, nA, _sel(inB, nB, _sel(inC, nC, nD)))
            den = _sel(inA, dA, _sel(inB, dB, _sel(inC, dC, dD)))
            q = num / den

            resA = _sel(x < QUARTER, ONE - (x + x * q), HALF - (x * q + (x - HALF)))
            resB = _sel(x > ZERO, one_m_erx - q, ONE + (erx + q))

            # exp(-x^2 - 0.5625 + q) / |x|, divided before the last scaling by a
            # power of two so that a result in the denormal range is rounded once
            em, s1, s2, _ = exp_minus_square(axc, q - C5625)
            e = s1 * ((s2 * (ONE + em)) / axc)
            resCD = _sel(x > ZERO, e, TWO - e)

            res = _sel(inA, resA, _sel(inB, resB, resCD))
            return _sel(x != x, x, res)

    # ---- erfcx
    if f32:
        INV_K = c(1.0 / _ERFCX_F32[0])

        @register_jitable
        def _erfcx_nonneg(a):
            t = ONE / (ONE + a * INV_K)          # 0 at a = inf
            return t * _erfcx_poly(t)
    else:
        # Beyond A_BIG, erfcx(a) = 1/(sqrt(pi) a) to double precision (and P, Q
        # would overflow): the one division takes that numerator and denominator.
        A_BIG, INV_SQRT_PI = c(2.0 ** 27), c(1.0 / np.sqrt(np.pi))

        @register_jitable
        def _erfcx_nonneg(a):
            big = a > A_BIG
            ac = _sel(big, A_BIG, a)
            return (_sel(big, INV_SQRT_PI, _erfcx_num(ac))
                    / _sel(big, a, _erfcx_den(ac)))
    # erfcx(x) ~ 2 exp(x**2) overflows below this (and 2**n is still finite above)
    ERFCX_NEG_OVF = c(-np.sqrt(np.log(np.finfo(F).max / 2.0)))

    @register_jitable
    def erfcx_(x):
        a = abs(x)
        y = _erfcx_nonneg(a)
        # x < 0 (LLVM drops this when x is known to be >= 0, e.g. a fabs)
        # 2 expm1(x**2) + (2 - y): no cancellation near 0
        xh = chop(a)
        xl = a - xh
        em, s1, s2, _ = exp_core(xh * xh, (xh + xh) * xl + xl * xl)
        s = s1 * s2
        neg = TWO * ((s - ONE) + s * em) + (TWO - y)
        neg = _sel(x < ERFCX_NEG_OVF, INF, neg)
        # (NaN: y is NaN, and x < 0 is false)
        return _sel(x < ZERO, neg, y)

    return dict(exp=exp_, exp_neg=exp_neg_, exp_neg_abs=exp_neg_abs_, expm1_neg_abs=expm1_neg_abs_,
                normal_pdf=normal_pdf_, expm1=expm1_, log=log_, log1p=log1p_, log1p_unit=log1p_unit_,
                log1m_unit=log1m_unit_, pow_unit=pow_unit_, bernoulli_log=bernoulli_log_,
                tanh=tanh_, erfc=erfc_, erfcx=erfcx_)


_IMPLS = {types.float32: _build(np.float32), types.float64: _build(np.float64)}


def _register(name):
    # LLVM-level inlining (forceinline), not Numba-IR inlining: an IR-inlined
    # overload of a function that CUDA kernels call too would be inlined into
    # them (fastact.mathlib, "Targets").
    @overload(getattr(mathlib, name), target="cpu", jit_options={"forceinline": True})
    def _ov(x):
        impls = _IMPLS.get(x)
        if impls is None:
            return None
        return impls[name]
    return _ov


def _register_2(name):
    # (the implementations take (a, b), the names this overload declares)
    @overload(getattr(mathlib, name), target="cpu", jit_options={"forceinline": True})
    def _ov(a, b):
        impls = _IMPLS.get(a)
        if impls is None or b != a:
            return None
        return impls[name]
    return _ov


for _name in mathlib.MATH_FUNCTIONS:
    _register(_name)
for _name in mathlib.MATH_FUNCTIONS_2:
    _register_2(_name)
