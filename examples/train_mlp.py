"""A two-layer classifier trained with plain NumPy and fastact's fused kernels.

The hidden activation's forward and derivative come from one pass
(value_and_derivative), and the loss with its gradient from another
(sparse_softmax_cross_entropy.value_and_grad).  Run: python examples/train_mlp.py
"""
import numpy as np

import fastact as fa

rng = np.random.default_rng(0)
n, d, h, classes = 4096, 64, 256, 10
x = rng.standard_normal((n, d)).astype(np.float32)
true_w = rng.standard_normal((d, classes)).astype(np.float32)
labels = np.argmax(x @ true_w, axis=1)

w1 = (rng.standard_normal((d, h)) / np.sqrt(d)).astype(np.float32)
w2 = (rng.standard_normal((h, classes)) / np.sqrt(h)).astype(np.float32)
lr = 0.5

for step in range(201):
    z = x @ w1
    a, da_dz = fa.gelu.value_and_derivative(z, approximate="tanh")   # one pass
    logits = a @ w2
    loss, dlogits = fa.sparse_softmax_cross_entropy.value_and_grad(logits, labels)
    grad_w2 = a.T @ dlogits
    dz = (dlogits @ w2.T) * da_dz
    grad_w1 = x.T @ dz
    w1 -= lr * grad_w1
    w2 -= lr * grad_w2
    if step % 50 == 0:
        accuracy = np.mean(fa.argmax(logits) == labels)
        print(f"step {step:3d}  loss {float(loss):.4f}  accuracy {accuracy:.3f}")
