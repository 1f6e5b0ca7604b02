#!/usr/bin/python3
"""tokenizer_vs_hf.py - encode speed of ssmd's tokenizer next to Hugging Face
`tokenizers` (single-threaded, RAYON_NUM_THREADS=1 and one call on the whole
text), in the same run, on the same text and tokenizer files.

    make build/rel/bench/bench_tokenizer
    python3 bench/tokenizer_vs_hf.py TEXT [TOKENIZER.json ...]

TEXT is ~1 MB of UTF-8 (e.g. `bible -f Gen1:1-Rev22:21 | head -c 1000000`).
Without tokenizer files it uses every tests/fixtures/tokenizer*/tokenizer.json.
Needs `pip install tokenizers==0.19.1` for the peer; prints one line per
tokenizer with both best-of-5 times and the ratio.  Never run by make test.
"""
import glob
import json
import os
import subprocess
import sys
import tempfile
import time

os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
from tokenizers import Tokenizer  # noqa: E402

BUILD = os.environ.get("BUILD", "build")


def main():
    text_path = sys.argv[1]
    paths = sys.argv[2:] or sorted(glob.glob("tests/fixtures/tokenizer*/tokenizer.json"))
    text = open(text_path, encoding="utf-8", newline="").read()  # bytes as C reads them
    ids_file = tempfile.NamedTemporaryFile(suffix=".ids")
    for p in paths:
        ours = json.loads(subprocess.run([os.path.join(BUILD, "rel/bench/bench_tokenizer"), p,
                                          text_path, "5", ids_file.name], capture_output=True,
                                         text=True, check=True).stdout)
        our_ids = [int(x) for x in open(ids_file.name)]
        tok = Tokenizer.from_file(p)
        best, ids = 1e30, []
        for _ in range(5):
            t0 = time.perf_counter()
            ids = tok.encode(text, add_special_tokens=False).ids
            best = min(best, time.perf_counter() - t0)
        same = "same ids" if ids == our_ids else "IDS DIFFER: %d vs %d ids" % (len(our_ids), len(ids))
        print("%-50s ssmd %.3f s (%.1f MB/s)  tokenizers %.3f s  ratio %.2fx  (%s)"
              % (p, ours["best_s"], ours["mb_per_s"], best, best / ours["best_s"], same))


if __name__ == "__main__":
    main()
