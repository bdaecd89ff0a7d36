"""PyTorch's version of each activation, for the special-value comparisons.

Each entry maps an op name (and choice) to a function of a float tensor and the
op's keyword parameters.  Ops PyTorch lacks are absent.
"""

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # torch is optional
    torch = None

if torch is not None:
    ELEMENTWISE = {
        ("identity", None): lambda t: t * 1,
        ("threshold", None): lambda t, threshold, value: F.threshold(t, threshold, value),
        ("relu", None): F.relu,
        ("relu6", None): F.relu6,
        ("leaky_relu", None): lambda t, negative_slope: F.leaky_relu(t, negative_slope),
        ("elu", None): lambda t, alpha: F.elu(t, alpha),
        ("selu", None): F.selu,
        ("celu", None): lambda t, alpha: F.celu(t, alpha),
        ("gelu", "none"): lambda t: F.gelu(t, approximate="none"),
        ("gelu", "tanh"): lambda t: F.gelu(t, approximate="tanh"),
        ("silu", None): F.silu,
        ("swish", None): lambda t, beta: t * torch.sigmoid(beta * t),
        ("mish", None): F.mish,
        ("softplus", None): lambda t, beta, threshold: F.softplus(t, beta, threshold),
        ("softsign", None): F.softsign,
        ("sigmoid", None): torch.sigmoid,
        ("hard_sigmoid", None): F.hardsigmoid,
        ("hard_swish", None): F.hardswish,
        ("hardtanh", None): lambda t, min_val, max_val: F.hardtanh(t, min_val, max_val),
        ("tanh", None): torch.tanh,
        ("log_sigmoid", None): F.logsigmoid,
        ("softshrink", None): lambda t, lambd: F.softshrink(t, lambd),
        ("hardshrink", None): lambda t, lambd: F.hardshrink(t, lambd),
        ("tanhshrink", None): F.tanhshrink,
    }
else:
    ELEMENTWISE = {}


def torch_value_and_derivative(key, x, params):
    """(f(x), f'(x)) from PyTorch autograd, as NumPy arrays of x's dtype."""
    t = torch.tensor(x, requires_grad=True)
    y = ELEMENTWISE[key](t, **params)
    (g,) = torch.autograd.grad(y.sum(), t)
    return y.detach().numpy(), g.numpy()
