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
# caches (CubeCL's and the driver's) except the "warm" rows, which reuse what "spirv-cache-cold"
# kept, and the "shape-*" rows, which reuse those caches too: each runs the evaluation attack's
# step (pgd_step) at one batch size, so its kernel count is what that batch shape compiles beyond
# what the cache already holds (a fixed evaluation batch shape against a ragged one). The
# "spirv-plain-*" and "plain-shape-*" rows repeat them without fusion and autotune.
#
#   ROWS="base shape-128 ..."   runs only the named rows (default: all), adding them to the last
#                               results; the caches a row reuses are not emptied
set -euo pipefail
cd "$(dirname "$0")/../.."
preset="${1:-fmnist}"
step="${2:-co_training_step}"
iters="${ITERS:-3}"
# Mesa's loader wants a runtime dir; without one it prints an error line per process.
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
out=target/cubecl-settings
# A run of only some rows (ROWS) adds to the last results; a whole run starts afresh.
[[ -z "${ROWS:-}" ]] && rm -rf "$out"
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

# measure NAME BINARY CACHE_DIR|- STEP BATCH|- [ENV=VAL ...]: one bench process.
measure() {
  local name="$1" bin cache="$3" step="$4" batch="$5"
  if [[ -n "${ROWS:-}" && " $ROWS " != *" $name "* ]]; then
    return
  fi
  bin=$(realpath "$2")
  shift 5
  local log json cwd
  log=$(realpath -m "$out/$name.kernels.log")
  json=$(realpath -m "$out/$name.bench.json")
  # Each process runs in its own directory: CubeCL keeps autotune results under the nearest
  # Cargo.toml's target/ (here the row's own, empty one) unless --kernel-cache says where, and
  # the repository's cubecl.toml (which turns the kernel cache on) is not found from there.
  cwd="$out/$name.cwd"
  # A row measured again starts from nothing of its own (the caches it names are kept).
  rm -rf "$log" "$json" "$cwd" "$out/$name.mesa"
  mkdir -p "$cwd" && touch "$cwd/Cargo.toml"
  local args=(--kernel-log "$log")
  [[ "$cache" != "-" ]] && args+=(--kernel-cache "$(realpath -m "$cache")")
  # Mesa keeps its own on-disk cache of the driver's compiled shaders (~/.cache/mesa_shader_cache,
  # like CUDA's ~/.nv/ComputeCache for PTX): every row gets an empty one unless it names one.
  [[ " $* " == *" MESA_SHADER_CACHE_DIR="* ]] || set -- "$@" MESA_SHADER_CACHE_DIR="$(realpath -m "$out/$name.mesa")"
  local bench=(bench --device wgpu --preset "$preset" --only "$step" --iters "$iters" --warmup 2
    --no-memory --json "$json")
  [[ "$batch" != "-" ]] && bench+=(--batch "$batch")
  local t0 t1
  t0=$(date +%s.%N)
  (cd "$cwd" && env "$@" "$bin" "${args[@]}" "${bench[@]}") >"$out/$name.stdout" 2>&1
  t1=$(date +%s.%N)
  python3 - "$name" "$json" "$log" "$t0" "$t1" "$*" "$step" >>"$out/rows.jsonl" <<'PY'
import json, sys
name, path, log, t0, t1, env, step = sys.argv[1:]
report = json.load(open(path))
[rec] = report["presets"][0]["records"]
lines = open(log).read().splitlines() if __import__("os").path.exists(log) else []
print(json.dumps({
    "setting": name,
    "env": env,
    "step": step,
    "batch": rec["batch"],
    "kernels_compiled": sum(l.startswith("[Compiling kernel]") for l in lines),
    "autotune_lines": sum("autotune" in l.lower() or "fastest" in l.lower() for l in lines),
    "first_call_s": rec["first_call_seconds"],
    "steady_s": rec["seconds_per_iter"],
    "images_per_s": rec["images_per_s"],
    "process_s": float(t1) - float(t0),
}))
PY
}

# shapes PREFIX BINARY CACHE_DIR DRIVER_ENV: the evaluation's step at each of SHAPES.
shapes() {
  for b in ${SHAPES:-128 120 37}; do
    measure "$1shape-$b" "$2" "$3" pgd_step "$b" "$4"
  done
}

base=$(bin_for wgpu)
measure base "$base" - "$step" -
at=$(bin_for wgpu,autotune)
measure autotune-balanced "$at" - "$step" -
measure autotune-minimal "$at" - "$step" - CUBECL_AUTOTUNE_LEVEL=minimal
measure fusion-autotune "$(bin_for wgpu,fusion,autotune)" - "$step" -
# SPIR-V (the path with CubeCL's compiled-kernel cache): a cold run, a second run with CubeCL's
# cache but an empty driver cache, and one with both (a second run on the same machine); then
# the evaluation's step at the preset's batch and at ragged ones, with both caches warm.
vk=$(bin_for vulkan,fusion,autotune)
driver="MESA_SHADER_CACHE_DIR=$(realpath -m "$out/spirv-cache-cold.mesa")"
measure spirv-cache-cold "$vk" "$out/kernel-cache" "$step" -
measure spirv-cache-warm-driver-cold "$vk" "$out/kernel-cache" "$step" -
measure spirv-cache-warm "$vk" "$out/kernel-cache" "$step" - "$driver"
shapes "" "$vk" "$out/kernel-cache" "$driver"
# The same without fusion and autotune (what `--features cuda` builds), on its own caches.
vd=$(bin_for vulkan)
driver="MESA_SHADER_CACHE_DIR=$(realpath -m "$out/spirv-plain-cold.mesa")"
measure spirv-plain-cold "$vd" "$out/kernel-cache-plain" "$step" -
measure spirv-plain-warm "$vd" "$out/kernel-cache-plain" "$step" - "$driver"
shapes plain- "$vd" "$out/kernel-cache-plain" "$driver"

python3 - "$out" "$preset" "$step" "$(cat /proc/loadavg)" <<'PY'
import json, sys
out, preset, step, load = sys.argv[1:]
rows = [json.loads(l) for l in open(f"{out}/rows.jsonl")]
json.dump({"preset": preset, "step": step, "load_avg": load, "rows": rows},
          open(f"{out}/results.json", "w"), indent=2)
print(f"{preset} {step}, load average {load}")
print("| setting | step, batch | kernels compiled | first call s | steady call s | process s |")
print("|---|---|---|---|---|---|")
for r in rows:
    print(f"| {r['setting']} | {r['step']}, {r['batch']} | {r['kernels_compiled']} | "
          f"{r['first_call_s']:.2f} | {r['steady_s']:.3f} | {r['process_s']:.1f} |")
PY
