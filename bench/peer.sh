#!/usr/bin/env bash
# peer.sh - `make bench-peer LLAMACPP_DIR=/path/to/llama.cpp`: ssmd beside
# llama.cpp on the very same GGUF files, in one run.
#
# The model is bench/make_model.py's random mamba-130m-shaped one (F32);
# `ssmd quantize` writes it as GGUF in each of TYPES (f32 f16 q8_0 q4_k
# q4_0 by default).  For every file, ROUNDS times in turn: ssmd's
# bench_engine (prefill of PP tokens, decode at batch 1 and 16, the read
# bandwidth probe of the same process) at each of LEVELS, then llama.cpp's
# llama-bench (pp PP, tg 64) and llama-batched-bench (16 sequences decoding
# together).  The best of the rounds counts for each side: the machine is
# shared, and interleaving keeps both sides under the same weather.
#
# llama.cpp is built here (CPU only, Release) into LLAMACPP_BUILD (default
# $LLAMACPP_DIR/build) when its binaries are missing: about 6 minutes on 2
# cores.  LLAMACPP_CMAKE_ARGS adds configure flags: on a VM whose CPU
# reports AMX that the guest cannot use, llama.cpp's native build dies with
# SIGILL on quantized files; there, name the ISA yourself, e.g.
#   LLAMACPP_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON
#     -DGGML_F16C=ON -DGGML_AVX512=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON"
# An AVX2 level in LEVELS (avx2, avx2-plain) runs OpenBLAS's AVX2 kernels
# as well, as an AVX2-only machine would (bench/level_env.sh); the kernels
# OpenBLAS ran at each level are printed under the table.
# Nothing is downloaded; Python (torch, transformers) only makes the
# model, as for `make bench`.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
PYTHON=${PYTHON:-/usr/bin/python3}
THREADS=${THREADS:-2}
LEVELS=${LEVELS:-best}
TYPES=${TYPES:-f32 f16 q8_0 q4_k q4_0}
ROUNDS=${ROUNDS:-2}
PP=${PP:-512}
: "${LLAMACPP_DIR:?set LLAMACPP_DIR to a llama.cpp source tree}"
LLAMACPP_BUILD=${LLAMACPP_BUILD:-$LLAMACPP_DIR/build}
out=$BUILD/bench/peer
mkdir -p "$out"

lb=$LLAMACPP_BUILD/bin/llama-bench
lbb=$LLAMACPP_BUILD/bin/llama-batched-bench
if [ ! -x "$lb" ] || [ ! -x "$lbb" ]; then
    echo "bench-peer: building llama.cpp in $LLAMACPP_BUILD (CPU, Release)" >&2
    cmake -S "$LLAMACPP_DIR" -B "$LLAMACPP_BUILD" -DGGML_CUDA=OFF -DLLAMA_CURL=OFF \
        -DLLAMA_BUILD_TESTS=OFF -DCMAKE_BUILD_TYPE=Release ${LLAMACPP_CMAKE_ARGS:-} >"$out/cmake.log"
    cmake --build "$LLAMACPP_BUILD" -j"$THREADS" --target llama-bench llama-batched-bench \
        >"$out/build.log"
fi

. bench/py_deps.sh
. bench/level_env.sh
model=$BUILD/bench/mamba-130m-f32
[ -f "$model/model.safetensors" ] || "$PYTHON" bench/make_model.py "$model" --dtype f32 >&2
for t in $TYPES; do
    [ -s "$out/mamba-130m-$t.gguf" ] ||
        "$BUILD/ssmd" quantize "$model" "$out/mamba-130m-$t.gguf" --type "$t" >&2
done

for round in $(seq "$ROUNDS"); do
    for t in $TYPES; do
        f=$out/mamba-130m-$t.gguf
        for level in $LEVELS; do
            echo "== round $round: ssmd $t, kernel level $level ==" >&2
            at_level "$level" "$BUILD/rel/bench/bench_engine" "$f" --threads "$THREADS" \
                --prompt-len "$PP" --batches 1,16 >"$out/ssmd-$t-$level-$round.json"
        done
        echo "== round $round: llama.cpp $t ==" >&2
        "$lb" -m "$f" -t "$THREADS" -p "$PP" -n 64 -r 3 -o json >"$out/llama-$t-$round.json" \
            2>>"$out/llama.log" || echo "[]" >"$out/llama-$t-$round.json"
        "$lbb" -m "$f" -t "$THREADS" -c 4096 -npp 32 -ntg 32 -npl 1,16 --output-format jsonl \
            2>&1 | grep '^{' >"$out/llama-batched-$t-$round.jsonl" || true
    done
done

"$PYTHON" - "$out" "$ROUNDS" "$PP" "$TYPES" $LEVELS <<'PY'
import glob, json, os, sys
out, rounds, pp, types, levels = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4].split(), sys.argv[5:]

def best(values):
    values = [v for v in values if v]
    return max(values) if values else None

def ssmd(t, level):
    runs = [json.load(open(p)) for p in glob.glob(f"{out}/ssmd-{t}-{level}-[0-9]*.json") if os.path.getsize(p)]
    if not runs:
        return None
    r = dict(runs[0])
    r["prefill"] = best(x["prefill_tok_s"] for x in runs)
    r["b1"] = best(x["decode_tok_s"].get("1") for x in runs)
    r["b16"] = best(x["decode_tok_s"].get("16") for x in runs)
    r["bw"] = best(x["read_bw_gbs"] for x in runs)
    r["b1_gbs"] = best(x["b1_weight_gbs"] for x in runs)
    return r

def llama(t):
    pp_ts, tg_ts, b1, b16 = [], [], [], []
    for p in glob.glob(f"{out}/llama-{t}-*.json"):
        for row in json.load(open(p)):
            (pp_ts if row.get("n_prompt") else tg_ts).append(row.get("avg_ts"))
    for p in glob.glob(f"{out}/llama-batched-{t}-*.jsonl"):
        for line in open(p):
            row = json.loads(line)
            (b1 if row["pl"] == 1 else b16).append(row["speed_tg"])
    return {"prefill": best(pp_ts), "b1": best(tg_ts), "b1_batched": best(b1), "b16": best(b16)}

def ratio(a, b):
    return f"{a / b:5.2f}x" if a and b else "   - "

def num(v):
    return f"{v:9.1f}" if v else "        -"

cpu = None
print(f"\nbench-peer: mamba-130m-shaped random model, same GGUF files, best of {rounds} interleaved rounds")
print("tokens/s; ratio = ssmd / llama.cpp (same run)")
print(f"{'type':6s} {'level':12s} | {'prefill ' + str(pp):>22s} | {'decode B=1':>22s} | {'decode B=16 (total)':>22s} | B=1 GB/s of weights")
for t in types:
    l = llama(t)
    for level in levels:
        s = ssmd(t, level)
        if not s:
            continue
        cpu = cpu or s["cpu"]
        frac = f"{s['b1_gbs']:.1f} = {100 * s['b1_gbs'] / s['bw']:.0f}% of {s['bw']:.1f}" if s["bw"] else "-"
        label = level if level.endswith("-plain") else s["level"]  # "avx2" either way
        print(f"{t:6s} {label:12s} | ssmd {num(s['prefill'])} {ratio(s['prefill'], l['prefill'])} | "
              f"ssmd {num(s['b1'])} {ratio(s['b1'], l['b1'])} | ssmd {num(s['b16'])} {ratio(s['b16'], l['b16'])} | {frac}")
    print(f"{t:6s} {'llama.cpp':12s} | llama{num(l['prefill'])}        | llama{num(l['b1'])}        | llama{num(l['b16'])}        |"
          f" batched-bench B=1: {num(l['b1_batched'])}")
print(f"cpu: {cpu}")
for level in levels:
    blas = next((s.get("blas") for t in types for s in [ssmd(t, level)] if s), None)
    print(f"ssmd {level}: OpenBLAS's {blas or '?'} kernels (prefill's sgemm)")
PY
