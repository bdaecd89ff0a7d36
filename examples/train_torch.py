"""A small MLP classifier trained with a torch optimizer, on pure PyTorch ops
or on fastact's (``--fastact``): the same model, with its activation modules
swapped for fastact's (``ft.swap_modules``) and fastact's fused
cross-entropy with label smoothing.

    python examples/train_torch.py            # pure PyTorch
    python examples/train_torch.py --fastact  # fastact.torch
"""
import argparse
import time

import torch

import fastact.torch as ft


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fastact", action="store_true", help="use fastact.torch ops")
    ap.add_argument("--steps", type=int, default=200)
    args = ap.parse_args()

    torch.manual_seed(0)
    n, d, h, classes = 4096, 64, 512, 10
    x = torch.randn(n, d)
    labels = (x @ torch.randn(d, classes)).argmax(-1)
    model = torch.nn.Sequential(torch.nn.Linear(d, h), torch.nn.GELU(approximate="tanh"),
                                torch.nn.Linear(h, h), torch.nn.SiLU(),
                                torch.nn.Linear(h, classes))
    if args.fastact:
        print("swapped", ft.swap_modules(model), "activation modules for fastact's")
        loss_fn = ft.nn.CrossEntropyLoss(label_smoothing=0.1)
    else:
        loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    opt = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.9)
    start = time.perf_counter()
    for step in range(args.steps + 1):
        opt.zero_grad()
        loss = loss_fn(model(x), labels)
        loss.backward()
        opt.step()
        if step % 50 == 0:
            acc = (model(x).argmax(-1) == labels).float().mean().item()
            print(f"step {step:4d}  loss {loss.item():.4f}  accuracy {acc:.3f}")
    print(f"{args.steps} steps in {time.perf_counter() - start:.2f} s")


if __name__ == "__main__":
    main()
