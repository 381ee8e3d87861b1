#!/usr/bin/env python3
"""Generate the timm parity fixture for advsoup-vit.

Needs: pip install torch timm safetensors
Run from the repository root:
    python3 scripts/reference/timm_vit.py crates/vit/tests/fixtures

Writes:
  timm_vit_small.safetensors  - a random timm VisionTransformer (img 16, patch 4, 3 channels,
                                dim 32, depth 2, heads 2, 5 classes), timm keys and layouts
  timm_vit_io.safetensors     - `input` [3, 3, 16, 16] pixels in [0, 1] and `logits` [3, 5]
                                computed by timm on (input - 0.5) / 0.5 (advsoup normalizes
                                inside the model with mean = std = 0.5)
"""
import os
import sys

import torch
import timm
from safetensors.torch import save_file


def main(out_dir: str) -> None:
    torch.manual_seed(0)
    model = timm.models.vision_transformer.VisionTransformer(
        img_size=16, patch_size=4, in_chans=3, num_classes=5, embed_dim=32, depth=2,
        num_heads=2, mlp_ratio=4.0, qkv_bias=True, class_token=True, global_pool="token",
    ).eval()
    # timm initializes the class token near zero and biases at zero: randomize everything so
    # that every parameter matters for the logits.
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.2)
    x = torch.rand(3, 3, 16, 16)
    with torch.no_grad():
        logits = model((x - 0.5) / 0.5)
    os.makedirs(out_dir, exist_ok=True)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, os.path.join(out_dir, "timm_vit_small.safetensors"))
    save_file({"input": x.contiguous(), "logits": logits.contiguous()},
              os.path.join(out_dir, "timm_vit_io.safetensors"))
    print("parameters:", sum(p.numel() for p in model.parameters()))
    print("logits[0]:", logits[0].tolist())


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "crates/vit/tests/fixtures")
