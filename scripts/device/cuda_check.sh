#!/usr/bin/env bash
# The checks advsoup's CUDA path gets on a lent GPU machine (no cargo there): run from the repo
# root with a `--features cuda` binary built elsewhere and carried along:
#
#   CUDARC_CUDA_VERSION=13000 cargo build --release -p advsoup-cli --features cuda
#   mkdir -p .gpu && cp target/release/advsoup .gpu/ && strip .gpu/advsoup
#   ADVSOUP=.gpu/advsoup OUT=target/cuda-check scripts/device/cuda_check.sh
#
# (CUDARC_CUDA_VERSION: the driver's CUDA level, 13000 for a 580-series driver.) Everything runs
# under one time budget (BUDGET seconds, default 450: the device tool's 8-minute check with room
# to start), each part with its own timeout, and the figures go to $OUT/figures.json whatever
# finished. Compiled kernels and autotune results are kept in $OUT/kernel-cache (advsoup's
# --kernel-cache): the cuda training run fills it, the bench reuses what applies, and a second
# run of this script on the same machine starts warm (its first calls say how much that saves).
#
# 1. The same tiny co-training run (synthetic Fashion-MNIST-shaped IDX data) on cpu and on cuda:
#    per-epoch loss and accuracies must agree (the PGD inner loop and the mixed batch on the GPU
#    compute what Flex computes); exits non-zero when they do not.
# 2. `advsoup bench --device cuda`, ViT-B/16 at 224, batch 64, PGD-2 co-training step, next to
#    crates/bench/reference/torch_bench.py on the same GPU; GPU memory of each process sampled
#    with nvidia-smi (peak minus the idle reading).
# 3. With BF16=1, the advsoup bench again with `--precision bf16` (mixed precision).
#
# Measured on an H200 (2026-11-26, see the issue notes): the first calls of every new shape
# compile CubeCL kernels, and that dominated everything: the tiny run did not finish in 150 s
# and the ViT-B/16 bench's forward phase (4 calls) took 67 s. Give the first calls time (or a
# kernel cache from an earlier run) before reading the per-call lines the bench prints.
set -uo pipefail
export CUBECL_AUTOTUNE_LEVEL=${CUBECL_AUTOTUNE_LEVEL:-minimal}
BIN=${ADVSOUP:-target/release/advsoup}
OUT=${OUT:-target/cuda-check}
BATCH=${BATCH:-64}
BUDGET=${BUDGET:-450}
START=$(date +%s)
mkdir -p "$OUT"
CACHE=(--kernel-cache "$OUT/kernel-cache")
# Seconds left of the budget, minus $1 kept for what follows (at least 10).
left() { local l=$((BUDGET - ($(date +%s) - START) - ${1:-0})); echo $((l < 10 ? 10 : l)); }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"

# Peak GPU memory (MiB) in use while a command runs, minus the reading before it.
gpu_mem() { nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits | head -1; }
with_memory() {
  local name=$1; shift
  local idle; idle=$(gpu_mem)
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 >"$OUT/$name.mem" &
  local smi=$!
  "$@"; local rc=$?
  kill "$smi" 2>/dev/null; wait "$smi" 2>/dev/null
  local peak; peak=$(sort -n "$OUT/$name.mem" | tail -1)
  echo "$name: exit $rc, GPU memory peak $peak MiB, idle $idle MiB, growth $((peak - idle)) MiB" \
    | tee -a "$OUT/memory.txt"
  return $rc
}

# -- 1. cpu vs cuda on one tiny run
python3 - "$OUT/data" <<'PY'
import os, sys
d = os.path.join(sys.argv[1], "fashion-mnist"); os.makedirs(d, exist_ok=True)
def images(n, salt):
    v = bytearray([0, 0, 8, 3]) + b"".join(x.to_bytes(4, "big") for x in (n, 28, 28))
    for i in range(n):
        c = i % 10
        for r in range(28):
            band = r // 2 == c + 2
            v += bytes((200 + (i*31 + r*7 + k*13 + salt) % 17) if band else ((i*31 + r*7 + k*13 + salt) % 17) * 3 for k in range(28))
    return bytes(v)
def labels(n):
    return bytes([0, 0, 8, 1]) + n.to_bytes(4, "big") + bytes(i % 10 for i in range(n))
for name, data in [("train-images-idx3-ubyte", images(1024, 0)), ("train-labels-idx1-ubyte", labels(1024)),
                   ("t10k-images-idx3-ubyte", images(256, 5)), ("t10k-labels-idx1-ubyte", labels(256))]:
    open(os.path.join(d, name), "wb").write(data)
PY
cat >"$OUT/tiny.toml" <<TOML
name = "tiny"
seed = 3
regime = "co_training"
[model]
preset = "vit_mini_patch4_28"
adapter = "cls_token"
patch_size = 7
embed_dim = 32
depth = 2
num_heads = 2
mlp_ratio = 2.0
[data]
dataset = "fashion-mnist"
data_dir = "$OUT/data"
held_out = 64
crop_padding = 0
workers = 0
[attack.train]
eps = 0.1
num_steps = 3
step_size = 0.05
[attack.eval]
eps = 0.1
num_steps = 5
step_size = 0.04
[optim]
epochs = 2
batch_size = 32
lr = 1e-3
warmup_epochs = 0.5
weight_decay = 0.05
grad_clip = 1.0
[eval]
held_out_robust = 64
test_robust = 128
test_attack = "pgd-10"
batch_size = 64
TOML
agree=0
for dev in cpu cuda; do
  limit=60; [ "$dev" = cuda ] && limit=$(left 300)   # the first CUDA calls compile their kernels
  timeout "$limit" "$BIN" "${CACHE[@]}" train --config "$OUT/tiny.toml" --runs-dir "$OUT/runs-$dev" --device "$dev" \
    >"$OUT/train-$dev.log" 2>&1 || { echo "train on $dev failed:"; tail -5 "$OUT/train-$dev.log"; agree=1; }
done
python3 - "$OUT" <<'PY' || agree=1
import json, sys
out = sys.argv[1]
summary = {"agreement": None}
def save():
    json.dump(summary, open(f"{out}/agreement.json", "w"), indent=2)
try:
    open(f"{out}/runs-cuda/tiny/final.json")
except OSError:
    summary["agreement"] = "cuda run did not finish within its time"
    save()
    sys.exit(1)
rows = {d: [json.loads(l) for l in open(f"{out}/runs-{d}/tiny/metrics.jsonl")] for d in ("cpu", "cuda")}
fin = {d: json.load(open(f"{out}/runs-{d}/tiny/final.json")) for d in ("cpu", "cuda")}
worst = 0.0
for a, b in zip(rows["cpu"], rows["cuda"]):
    rel = abs(a["loss"] - b["loss"]) / abs(a["loss"])
    worst = max(worst, rel)
    print(f"epoch {a['epoch']}: loss cpu {a['loss']:.6f} cuda {b['loss']:.6f} (rel {rel:.2e}); "
          f"held-out clean {a['clean_acc']:.3f}/{b['clean_acc']:.3f} robust {a['robust_acc']:.3f}/{b['robust_acc']:.3f}")
for k in ("clean_mode_clean_acc", "robust_mode_robust_acc"):
    print(f"final {k}: cpu {fin['cpu'][k]:.4f} cuda {fin['cuda'][k]:.4f}")
ok = len(rows["cpu"]) == len(rows["cuda"]) == 2 and worst < 1e-2 and all(
    abs(fin["cpu"][k] - fin["cuda"][k]) <= 0.05 for k in ("clean_mode_clean_acc", "robust_mode_robust_acc"))
print("cpu/cuda agreement:", "ok" if ok else "FAILED", f"(worst epoch-loss relative difference {worst:.2e})")
summary = {"agreement": "ok" if ok else "FAILED", "worst_epoch_loss_rel_diff": worst,
           "final": {d: {k: fin[d][k] for k in ("clean_mode_clean_acc", "robust_mode_robust_acc")}
                     for d in fin}}
save()
sys.exit(0 if ok else 1)
PY

# -- 2. ViT-B/16 at 224 on the GPU: advsoup vs PyTorch eager
with_memory advsoup timeout "$(left 60)" "$BIN" "${CACHE[@]}" bench --device cuda --preset vitb16 --batch "$BATCH" \
  --steps 2 --warmup 2 --iters 5 --json "$OUT/advsoup-bench.json"
with_memory torch timeout "$(left 0)" python3 crates/bench/reference/torch_bench.py --device cuda \
  --preset vitb16 --batch "$BATCH" --steps 2 --warmup 2 --iters 5 --no-memory --json "$OUT/torch-bench.json"
python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
def rates(p):
    try:
        r = json.load(open(p))
    except Exception as e:
        return {}
    return {(x["name"] if "name" in x else x["step"]): x["images_per_s"] for pr in r["presets"] for x in pr["records"]}
ours, theirs = rates(f"{out}/advsoup-bench.json"), rates(f"{out}/torch-bench.json")
def first_calls(p):
    try:
        return {x["name"]: x.get("first_call_seconds") for pr in json.load(open(p))["presets"]
                for x in pr["records"]}
    except Exception:
        return {}
try:
    agreement = json.load(open(f"{out}/agreement.json"))
except Exception:
    agreement = None
memory = {}
for line in open(f"{out}/memory.txt") if __import__("os").path.exists(f"{out}/memory.txt") else []:
    name, rest = line.split(":", 1)
    memory[name] = rest.strip()
json.dump({"gpu": open(f"{out}/gpu.txt").read().strip(), "agreement": agreement,
           "vitb16_batch": int(__import__("os").environ.get("BATCH", "64")),
           "advsoup_images_per_s": ours, "torch_images_per_s": theirs,
           "advsoup_first_call_s": first_calls(f"{out}/advsoup-bench.json"),
           "ratio": {k: ours[k] / theirs[k] for k in ours if k in theirs and theirs[k]},
           "memory": memory}, open(f"{out}/figures.json", "w"), indent=2)
print(f"figures: {out}/figures.json")
print("| step (vitb16, batch 64, K = 2) | advsoup img/s | torch img/s | advsoup/torch |\n|---|---|---|---|")
for k in ours.keys() | theirs.keys():
    a, t = ours.get(k), theirs.get(k)
    ratio = f"{a / t:.2f}x" if a and t else "-"
    print(f"| {k} | {a or '-'} | {t or '-'} | {ratio} |")
PY

# -- 3. the same bench with mixed precision (bf16 compute, f32 master weights), if asked:
#    BF16=1 (its kernels compile anew: give it the time of a first run)
if [ "${BF16:-0}" = 1 ]; then
  with_memory advsoup-bf16 timeout "$(left 0)" "$BIN" "${CACHE[@]}" bench --device cuda --preset vitb16 \
    --batch "$BATCH" --steps 2 --warmup 2 --iters 5 --precision bf16 --json "$OUT/advsoup-bench-bf16.json"
fi
exit $agree
