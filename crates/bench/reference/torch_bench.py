#!/usr/bin/env python3
"""PyTorch-eager reference for `advsoup bench`: the same models and steps, the same JSON shape.

Install the reference:  pip install torch timm
Run (what `cargo xtask bench` does after the advsoup run):
    python3 crates/bench/reference/torch_bench.py --preset tiny32 --threads 2 \
        --json target/bench/torch.json

Models are timm's VisionTransformer with advsoup's preset hyper-parameters (LayerNorm eps 1e-6,
qkv bias, no dropout), normalization inside the model, and the cls-token adapter of advsoup: a
second class token φ_adv, each sample of a batch mixing w·φ_clean + (1 − w)·φ_adv, so the
co-training step is ONE forward of the 2n-row mixed batch, as in advsoup.

Steps (images/s, `batch / seconds per call`):
- forward: eval mode under torch.no_grad, clean mode;
- train_step: clean forward, cross-entropy, backward, AdamW step, loss read back;
- pgd_step: one ℓ∞ PGD step from a uniform random start, gradient w.r.t. the input only
  (torch.autograd.grad on the input), robust mode, eval mode;
- co_training_step: PGD-K against the robust mode, then α·CE(clean) + (1 − α)·CE(adv) of one
  mixed forward, backward, AdamW step; images/s counts the n clean images of a step.
Memory: one fresh child process per K runs one PGD-K attack and reports VmRSS before and VmHWM
after (Linux /proc).
"""

import argparse
import json
import os
import subprocess
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)

# name -> (model name, img, patch, chans, classes, dim, depth, heads, mean, std, cpu batch, cuda batch, train on cpu,
#          mlp ratio)
PRESETS = {
    "tiny32": ("vit_tiny_patch4_32", 32, 4, 3, 10, 192, 6, 3, CIFAR_MEAN, CIFAR_STD, 64, 64, True, 4.0),
    "vitb16": ("vit_base_patch16_224", 224, 16, 3, 1000, 768, 12, 12, (0.5,) * 3, (0.5,) * 3, 4, 64, False, 4.0),
    # the default training (configs/fmnist-cls.toml)
    "fmnist": ("vit_mini_patch7_28", 28, 7, 1, 10, 64, 4, 4, (0.2860,), (0.3530,), 128, 128, True, 2.0),
    "test": ("test_patch4_8", 8, 4, 3, 10, 16, 1, 2, (0.5,) * 3, (0.5,) * 3, 2, 2, True, 4.0),
}


class AdaptedVit(nn.Module):
    """timm ViT + normalization inside + a cls-token adapter routed per sample."""

    def __init__(self, img, patch, chans, classes, dim, depth, heads, mean, std, mlp_ratio):
        super().__init__()
        self.vit = VisionTransformer(
            img_size=img, patch_size=patch, in_chans=chans, num_classes=classes,
            embed_dim=dim, depth=depth, num_heads=heads, mlp_ratio=mlp_ratio, qkv_bias=True,
            drop_rate=0.0, drop_path_rate=0.0,
        )
        self.cls_adv = nn.Parameter(self.vit.cls_token.detach().clone())
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x, w):
        """x: [n, c, h, w] pixels in [0, 1]; w: clean weight, a float or an [n] tensor."""
        v = self.vit
        x = v.patch_embed((x - self.mean) / self.std)
        n = x.shape[0]
        if isinstance(w, float):
            cls = v.cls_token if w == 1.0 else self.cls_adv if w == 0.0 else w * v.cls_token + (1 - w) * self.cls_adv
            cls = cls.expand(n, -1, -1)
        else:
            w = w.view(n, 1, 1)
            cls = w * v.cls_token + (1 - w) * self.cls_adv
        x = torch.cat([cls, x], dim=1) + v.pos_embed
        x = v.norm_pre(v.patch_drop(v.pos_drop(x)))
        x = v.norm(v.blocks(x))
        return v.head(v.head_drop(v.fc_norm(x[:, 0])))


def pgd(model, x, y, k, eps, step, gen):
    """ℓ∞ PGD-K (Madry et al. 2018) from a uniform random start, against the robust mode."""
    xk = (x + (torch.rand(x.shape, generator=gen, device=x.device) * 2 - 1) * eps).clamp(0, 1)
    for _ in range(k):
        xk.requires_grad_(True)
        loss = F.cross_entropy(model(xk, 0.0), y)
        (g,) = torch.autograd.grad(loss, xk)
        xk = torch.min(torch.max(xk.detach() + step * g.sign(), x - eps), x + eps).clamp(0, 1)
    return xk.detach()


def status_mib(field):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def build(preset, batch, device):
    name, img, patch, chans, classes, dim, depth, heads, mean, std, *_, mlp_ratio = PRESETS[preset]
    torch.manual_seed(0)
    model = AdaptedVit(img, patch, chans, classes, dim, depth, heads, mean, std, mlp_ratio).to(device)
    x = torch.rand(batch, chans, img, img, device=device)
    y = (torch.arange(batch, device=device) % classes).long()
    gen = torch.Generator(device=device).manual_seed(7)
    return name, model, x, y, gen


def measure(name, batch, warmup, iters, f, device):
    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(warmup):
        f()
    sync()
    iters = max(iters, 1)
    t0 = time.perf_counter()
    for _ in range(iters):
        f()
    sync()
    per = max((time.perf_counter() - t0) / iters, 1e-12)
    return {"name": name, "batch": batch, "iters": iters, "seconds_per_iter": per, "images_per_s": batch / per}


def bench_preset(preset, batch, args, device):
    name, model, x, y, gen = build(preset, batch, device)
    train = PRESETS[preset][12] or device.type == "cuda"
    eps, step, alpha = args.eps, args.step_size, 0.5
    records = []

    print(f"torch {preset}: forward", file=sys.stderr)
    model.eval()

    def forward():
        with torch.no_grad():
            model(x, 1.0).sum().item()

    records.append(measure("forward", batch, args.warmup, args.iters, forward, device))

    def optimizer():
        return torch.optim.AdamW(model.parameters(), lr=1e-4, eps=1e-8, weight_decay=1e-4)

    if train:
        print(f"torch {preset}: train_step", file=sys.stderr)
        opt = optimizer()

        def train_step():
            model.train()
            loss = F.cross_entropy(model(x, 1.0), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss.item()

        records.append(measure("train_step", batch, args.warmup, args.iters, train_step, device))

    print(f"torch {preset}: pgd_step", file=sys.stderr)

    def pgd_step():
        model.eval()
        pgd(model, x, y, 1, eps, step, gen).sum().item()

    records.append(measure("pgd_step", batch, args.warmup, args.iters, pgd_step, device))

    if train:
        print(f"torch {preset}: co_training_step (K = {args.steps})", file=sys.stderr)
        opt = optimizer()
        w = torch.cat([torch.ones(batch, device=device), torch.zeros(batch, device=device)])

        def co_training_step():
            model.eval()
            x_adv = pgd(model, x, y, args.steps, eps, step, gen)
            model.train()
            logits = model(torch.cat([x, x_adv]), w)
            loss = alpha * F.cross_entropy(logits[:batch], y) + (1 - alpha) * F.cross_entropy(logits[batch:], y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss.item()

        records.append(measure("co_training_step", batch, args.warmup, args.iters, co_training_step, device))

    memory = []
    if not args.no_memory and device.type == "cpu":
        for k in args.memory_steps:
            print(f"torch {preset}: PGD peak memory (K = {k}, child process)", file=sys.stderr)
            cmd = [sys.executable, os.path.abspath(__file__), "--preset", preset, "--batch", str(batch),
                   "--threads", str(args.threads), "--memory-child", str(k)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True)
            memory.append(json.loads(out.stdout.strip().splitlines()[-1]))

    return {"preset": preset, "model": name, "batch": batch, "pgd_steps": args.steps, "eps": eps,
            "step_size": step, "records": records, "memory": memory}


def memory_child(args):
    device = torch.device("cpu")
    batch = args.batch or PRESETS[args.preset][10]
    _, model, x, y, gen = build(args.preset, batch, device)
    model.eval()
    before = status_mib("VmRSS")
    pgd(model, x, y, args.memory_child, args.eps, args.step_size, gen).sum().item()
    print(json.dumps({"name": "pgd", "steps": args.memory_child, "rss_before_mib": before,
                      "peak_rss_mib": status_mib("VmHWM")}))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", choices=["tiny32", "vitb16", "fmnist", "all", "test"], default="tiny32")
    p.add_argument("--batch", type=int)
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--device", default="cpu")
    p.add_argument("--json")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--memory-steps", default="1,20")
    p.add_argument("--no-memory", action="store_true")
    p.add_argument("--memory-child", type=int)
    p.add_argument("--eps", type=float, default=8 / 255)
    p.add_argument("--step-size", type=float, default=2 / 255)
    args = p.parse_args()
    if args.quick:
        args.preset, args.iters, args.warmup, args.steps = "test", 1, 0, 2
    args.memory_steps = [int(k) for k in args.memory_steps.split(",") if k]
    torch.set_num_threads(args.threads)
    if args.memory_child is not None:
        memory_child(args)
        return
    device = torch.device(args.device)
    presets = ["tiny32", "vitb16", "fmnist"] if args.preset == "all" else [args.preset]
    report = {"tool": "torch", "device": f"torch-{torch.__version__}-{device}", "threads": args.threads,
              "presets": []}
    for preset in presets:
        batch = args.batch or PRESETS[preset][11 if device.type == "cuda" else 10]
        report["presets"].append(bench_preset(preset, batch, args, device))
    for pr in report["presets"]:
        for r in pr["records"]:
            print(f"| {pr['preset']}/{r['name']} | {r['batch']} | {r['images_per_s']:.1f} |")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
        print(f"json: {args.json}")


if __name__ == "__main__":
    main()
