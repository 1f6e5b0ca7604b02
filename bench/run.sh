#!/usr/bin/env bash
# run.sh - `make bench`: the CPU engine benchmark on a mamba-130m-shaped
# random model (F32 and BF16), next to transformers on the same model files
# in the same run.  Python (torch + transformers) is only needed for making
# the model and for the peer numbers; it is installed here when missing.
# Each ssmd run prints the CPU and the kernel level it used: the best this
# CPU runs, or each of LEVELS (e.g. LEVELS="avx512 avx2" on an AVX-512
# machine measures the AVX2 path too, through SSMD_CPU: bench/level_env.sh),
# and OpenBLAS's kernels.  FAMILIES="mamba
# mamba2" (the default) adds a mamba2-130m-shaped model; transformers is the
# peer for Mamba-1 only (its Mamba-2 CPU path has no cache API that
# hf_bench.py drives), so Mamba-2 rows stand beside Mamba-1's in this run.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
PYTHON=${PYTHON:-/usr/bin/python3}
THREADS=${THREADS:-2}
LEVELS=${LEVELS:-best}
FAMILIES=${FAMILIES:-mamba mamba2}
out=$BUILD/bench
mkdir -p "$out"

. bench/py_deps.sh
. bench/level_env.sh

for family in $FAMILIES; do
for dtype in f32 bf16; do
    dir=$out/$family-130m-$dtype
    [ -f "$dir/model.safetensors" ] || "$PYTHON" bench/make_model.py "$dir" --dtype $dtype --family $family >&2
    for level in $LEVELS; do
        tag=$family-$dtype; [ "$level" = best ] || tag=$family-$dtype-$level
        echo "== ssmd ($family $dtype, kernel level $level) ==" >&2
        at_level "$level" "$BUILD/rel/bench/bench_engine" "$dir" --threads "$THREADS" |
            tee "$out/ssmd-$tag.json"
    done
    if [ "${SKIP_PEER:-0}" != 1 ] && [ "$family" = mamba ]; then
        echo "== transformers ($dtype weights) ==" >&2
        "$PYTHON" bench/hf_bench.py "$dir" --threads "$THREADS" | tee "$out/hf-$dtype.json" || true
    fi
done
done
# Mamba-2's two CPU prefill forms (SSMD_SSD, kernels/cpu/cpu_ssd.h) at a
# short and a long prompt, in this same run: one thread, so that tokens per
# CPU second compare the work even where other jobs share the cores.
if [[ " $FAMILIES " == *" mamba2 "* ]]; then
    for len in 64 512; do for form in scan chunk; do
        echo "== ssmd (mamba2 f32, prefill $len, SSMD_SSD=$form, 1 thread) ==" >&2
        SSMD_SSD=$form "$BUILD/rel/bench/bench_engine" "$out/mamba2-130m-f32" --threads 1 \
            --prompt-len $len --batches 1 | tee "$out/ssd-$form-$len.json"
    done; done
fi
"$PYTHON" - "$out" "$FAMILIES" $LEVELS <<'PY'
import json, sys, os
out, families, levels = sys.argv[1], sys.argv[2].split(), sys.argv[3:]
def load(name):
    p = os.path.join(out, name)
    return json.load(open(p)) if os.path.exists(p) and os.path.getsize(p) else None
print("\nsummary (tokens/s; ratio = ssmd / transformers, same run)")
for fam, dt, lv in [(f, d, l) for f in families for d in ("f32", "bf16") for l in levels]:
    s = load(f"ssmd-{fam}-{dt}.json" if lv == "best" else f"ssmd-{fam}-{dt}-{lv}.json")
    h = load(f"hf-{dt}.json") if fam == "mamba" else None
    if not s:
        continue
    print(f"{fam} {dt}: {s.get('cpu', '?')}, kernel level {s.get('level', '?')}")
    def ratio(a, b):
        return f"{a / b:5.1f}x" if a and b else "   - "
    hp = h.get("prefill_tok_s") if h else None
    print(f"{dt:5s} prefill-512 ssmd {s['prefill_tok_s']:8.1f}  hf {hp or 0:8.1f}  {ratio(s['prefill_tok_s'], hp)}")
    for b, v in s["decode_tok_s"].items():
        hv = h["decode_tok_s"].get(b) if h else None
        print(f"{dt:5s} decode b={b:>2s}   ssmd {v:8.1f}  hf {hv or 0:8.1f}  {ratio(v, hv)}")
    print(f"{dt:5s} batch-1 decode: {s['b1_weight_gbs']:.1f} GB/s of weights = "
          f"{100 * s['b1_bw_fraction']:.0f}% of measured read bandwidth {s['read_bw_gbs']:.1f} GB/s")
for n in (64, 512):
    a, b = load(f"ssd-scan-{n}.json"), load(f"ssd-chunk-{n}.json")
    if a and b:
        sa, sb = a["prefill_tok_cpu_s"], b["prefill_tok_cpu_s"]
        print(f"mamba2 f32 prefill-{n} ({b['level']}, 1 thread, tokens per CPU second): "
              f"scan {sa:.1f}  chunked {sb:.1f}  chunked/scan {sb / sa:.2f}x")
PY
