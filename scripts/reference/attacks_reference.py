#!/usr/bin/env python3
"""Reference fixture for advsoup-attacks (crates/attacks/src/tests.rs).

Trains a tiny MLP (1x6x6 inputs, 32 hidden units, 10 classes, normalization inside the model)
on a synthetic 10-class task, then writes its weights, a test batch and PyTorch FGSM / PGD
(no random start, last iterate) adversarial examples for l-inf and l2 to
crates/attacks/tests/fixtures/attacks_mlp.safetensors.

Regenerate (CPU, a few seconds):
    python3 scripts/reference/attacks_reference.py
Requires torch and safetensors.
"""
import os

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

torch.manual_seed(0)
torch.set_default_dtype(torch.float32)

IMG, HIDDEN, CLASSES, N_TEST = 6, 32, 10, 16
MEAN, STD = 0.4, 0.3
D = IMG * IMG

# The attack settings the Rust test replays (keep in sync with tests.rs).
LINF_EPS, LINF_STEP, LINF_STEPS = 0.1, 0.025, 10
L2_EPS, L2_STEP, L2_STEPS = 0.5, 0.1, 10
TINY = 1e-12


class Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(D, HIDDEN)
        self.fc2 = nn.Linear(HIDDEN, CLASSES)

    def forward(self, x):
        x = ((x - MEAN) / STD).reshape(x.shape[0], D)
        return self.fc2(F.relu(self.fc1(x)))


def data(n, protos, gen):
    y = torch.randint(0, CLASSES, (n,), generator=gen)
    x = (protos[y] + 0.25 * torch.randn(n, D, generator=gen)).clamp(0, 1)
    return x.reshape(n, 1, IMG, IMG), y


def project(x0, x, eps, norm):
    if norm == "linf":
        x = torch.min(torch.max(x, x0 - eps), x0 + eps)
    else:
        d = x - x0
        n = d.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        x = x0 + d * torch.clamp(eps / (n + TINY), max=1.0)
    return x.clamp(0, 1)


def normalize(g, norm):
    if norm == "linf":
        return g.sign()
    return g / (g.flatten(1).norm(dim=1).view(-1, 1, 1, 1) + TINY)


def pgd(model, x0, y, eps, step, steps, norm):
    """Madry et al. PGD without random start, returning the last iterate."""
    x = x0.clone()
    min_abs_grad = float("inf")
    for _ in range(steps):
        x = x.detach().requires_grad_(True)
        loss = F.cross_entropy(model(x), y, reduction="sum")
        (g,) = torch.autograd.grad(loss, [x])
        min_abs_grad = min(min_abs_grad, g.abs().min().item())
        x = project(x0, x.detach() + step * normalize(g, norm), eps, norm)
    return x.detach(), min_abs_grad


def main():
    gen = torch.Generator().manual_seed(1)
    protos = torch.rand(CLASSES, D, generator=gen)
    model = Mlp()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(300):
        x, y = data(128, protos, gen)
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()
    x, y = data(N_TEST, protos, gen)
    with torch.no_grad():
        logits = model(x)
    acc = (logits.argmax(1) == y).float().mean().item()

    fgsm_linf, g1 = pgd(model, x, y, LINF_EPS, LINF_EPS, 1, "linf")
    pgd_linf, g2 = pgd(model, x, y, LINF_EPS, LINF_STEP, LINF_STEPS, "linf")
    fgsm_l2, _ = pgd(model, x, y, L2_EPS, L2_EPS, 1, "l2")
    pgd_l2, _ = pgd(model, x, y, L2_EPS, L2_STEP, L2_STEPS, "l2")
    with torch.no_grad():
        rob = (model(pgd_linf).argmax(1) == y).float().mean().item()
    print(f"clean acc {acc:.3f}, pgd-{LINF_STEPS} linf robust acc {rob:.3f}, "
          f"min |grad| fgsm {g1:.2e} pgd {g2:.2e}")

    out = {
        "fc1.weight": model.fc1.weight.detach(),
        "fc1.bias": model.fc1.bias.detach(),
        "fc2.weight": model.fc2.weight.detach(),
        "fc2.bias": model.fc2.bias.detach(),
        "x": x,
        "y": y.to(torch.float32),
        "logits": logits,
        "fgsm_linf": fgsm_linf,
        "pgd_linf": pgd_linf,
        "fgsm_l2": fgsm_l2,
        "pgd_l2": pgd_l2,
    }
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.join(here, "..", "..", "crates", "attacks", "tests", "fixtures", "attacks_mlp.safetensors")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    save_file({k: v.contiguous() for k, v in out.items()}, os.path.normpath(path))
    print("wrote", os.path.normpath(path))


if __name__ == "__main__":
    main()
