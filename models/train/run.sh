#!/usr/bin/env bash
# run.sh - rebuilds models/default from nothing: corpus (Debian bible-kjv),
# tokenizer, training (CPU, one thread, ~25-30 min), export and checks.
# The steps and their settings are documented in models/train/README.md.
#
# Environment: WORK (scratch directory, default /tmp/ssmd-train), PYTHON
# (default /usr/bin/python3: torch 1.13, transformers 4.44.2, tokenizers
# 0.19.1), SSMD (an ssmd binary for the engine checks; skipped when unset),
# TRAIN_ARGS (extra train_mamba.py flags, e.g. "--stop-after 1000").
# Never touches anything in the repository but models/default.
set -eu
cd "$(dirname "$0")/../.."
WORK=${WORK:-/tmp/ssmd-train}
PY=${PYTHON:-/usr/bin/python3}
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1

command -v bible >/dev/null || {
    echo "run.sh: no 'bible' program; install it: apt-get install -y bible-kjv-text bible-kjv" >&2
    exit 1
}
"$PY" models/train/prepare_corpus.py --out "$WORK"
"$PY" models/train/train_tokenizer.py --data "$WORK" --out models/default
# shellcheck disable=SC2086
"$PY" models/train/train_mamba.py --data "$WORK" --tokenizer models/default/tokenizer.json \
    --out "$WORK/run" ${TRAIN_ARGS:-}
"$PY" models/train/export.py --run "$WORK/run" --data "$WORK" --out models/default \
    ${SSMD:+--ssmd "$SSMD"}
