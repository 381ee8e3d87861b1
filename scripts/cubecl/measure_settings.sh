#!/usr/bin/env bash
# CubeCL's compile/autotune/fusion machinery, measured on burn's wgpu backend: for each setting,
# how many kernels one benchmark step compiles, the first call's seconds and the steady call's.
# burn's CUDA backend shares this machinery (CubeCL), so the table says what a lent GPU's first
# minutes are spent on before any GPU is lent. Needs a Vulkan driver: on a machine without a
# GPU, Mesa's software one (apt-get install mesa-vulkan-drivers).
#
#   scripts/cubecl/measure_settings.sh [preset] [step]     (default: fmnist co_training_step)
#
# Writes target/cubecl-settings/results.json (one object per setting) and prints a markdown
# table. Each setting is one build of advsoup (features) and one process of `advsoup bench`:
# two untimed calls (the first compiles, the second still meets a few new kernels, e.g. the
# optimizer's), then ITERS timed ones (the steady figure). Every process starts with empty
# caches except "spirv-cache-warm", which reuses what "spirv-cache-cold" kept.
set -euo pipefail
cd "$(dirname "$0")/../.."
preset="${1:-fmnist}"
step="${2:-co_training_step}"
iters="${ITERS:-3}"
# Mesa's loader wants a runtime dir; without one it prints an error line per process.
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
out=target/cubecl-settings
rm -rf "$out"
mkdir -p "$out"
export CARGO_TERM_COLOR=never

# Build one advsoup per feature set; cargo keeps each variant's artifacts apart. The dev profile
# by default: it builds every dependency at opt-level 3 (Cargo.toml), and on a GPU backend the
# work is all in burn and CubeCL (advsoup's own fused kernels are the CPU backend's); PROFILE=
# release for a release build.
profile="${PROFILE:-dev}"
target="${CARGO_TARGET_DIR:-target}"
bin_for() {
  local features="$1"
  # BIN_DIR: binaries built beforehand, named advsoup-<features with - for ,>.
  if [[ -n "${BIN_DIR:-}" ]]; then
    echo "$BIN_DIR/advsoup-${features//,/-}"
    return
  fi
  cargo build --profile "$profile" -q -p advsoup-cli --no-default-features --features "$features" >&2
  local dest="$out/advsoup-${features//,/-}"
  local dir=$([[ "$profile" == dev ]] && echo debug || echo "$profile")
  cp "$target/$dir/advsoup" "$dest"
  echo "$dest"
}

# measure NAME BINARY CACHE_DIR|- [ENV=VAL ...]: one bench process.
measure() {
  local name="$1" bin cache="$3"
  bin=$(realpath "$2")
  shift 3
  local log json cwd
  log=$(realpath -m "$out/$name.kernels.log")
  json=$(realpath -m "$out/$name.bench.json")
  # Each process runs in its own directory: CubeCL keeps autotune results under the nearest
  # Cargo.toml's target/ (here the row's own, empty one) unless --kernel-cache says where, and
  # the repository's cubecl.toml (which turns the kernel cache on) is not found from there.
  cwd="$out/$name.cwd"
  mkdir -p "$cwd" && touch "$cwd/Cargo.toml"
  local args=(--kernel-log "$log")
  [[ "$cache" != "-" ]] && args+=(--kernel-cache "$(realpath -m "$cache")")
  local t0 t1
  t0=$(date +%s.%N)
  (cd "$cwd" && env "$@" "$bin" "${args[@]}" bench --device wgpu --preset "$preset" --only "$step" \
    --iters "$iters" --warmup 2 --no-memory --json "$json") >"$out/$name.stdout" 2>&1
  t1=$(date +%s.%N)
  python3 - "$name" "$json" "$log" "$t0" "$t1" "$*" >>"$out/rows.jsonl" <<'PY'
import json, sys
name, path, log, t0, t1, env = sys.argv[1:]
report = json.load(open(path))
[rec] = report["presets"][0]["records"]
lines = open(log).read().splitlines() if __import__("os").path.exists(log) else []
print(json.dumps({
    "setting": name,
    "env": env,
    "kernels_compiled": sum(l.startswith("[Compiling kernel]") for l in lines),
    "autotune_lines": sum("autotune" in l.lower() or "fastest" in l.lower() for l in lines),
    "first_call_s": rec["first_call_seconds"],
    "steady_s": rec["seconds_per_iter"],
    "images_per_s": rec["images_per_s"],
    "process_s": float(t1) - float(t0),
}))
PY
}

base=$(bin_for wgpu)
measure base "$base" -
measure autotune-balanced "$(bin_for wgpu,autotune)" -
measure autotune-minimal "$(bin_for wgpu,autotune)" - CUBECL_AUTOTUNE_LEVEL=minimal
measure fusion-autotune "$(bin_for wgpu,fusion,autotune)" -
vk=$(bin_for vulkan,fusion,autotune)
measure spirv-fusion-autotune "$vk" -
measure spirv-cache-cold "$vk" "$out/kernel-cache"
measure spirv-cache-warm "$vk" "$out/kernel-cache"

python3 - "$out" "$preset" "$step" "$(cat /proc/loadavg)" <<'PY'
import json, sys
out, preset, step, load = sys.argv[1:]
rows = [json.loads(l) for l in open(f"{out}/rows.jsonl")]
json.dump({"preset": preset, "step": step, "load_avg": load, "rows": rows},
          open(f"{out}/results.json", "w"), indent=2)
print(f"{preset} {step}, load average {load}")
print("| setting | kernels compiled | first call s | steady call s | process s |")
print("|---|---|---|---|---|")
for r in rows:
    print(f"| {r['setting']} | {r['kernels_compiled']} | {r['first_call_s']:.2f} | "
          f"{r['steady_s']:.3f} | {r['process_s']:.1f} |")
PY
