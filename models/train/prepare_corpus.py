#!/usr/bin/python3
"""prepare_corpus.py - the training corpus of the default model: the King James
Bible from Debian's `bible-kjv` package, as plain text, one verse per line.

Runs `bible -f Gen1:1-Rev22:21` (pretty-printing off: one verse per line,
"Ge1:1 In the beginning ..."), checks that it got the whole book (31,102
verses, 1,189 chapters, ASCII only), strips the "Book C:V " references and
splits by whole chapters: every 50th chapter (chapter index % 50 == 49, in
canonical order) is held out for validation (~2%), the rest is training text.

Writes, under OUT (default /tmp/ssmd-train):
  train.txt  verses of the training chapters, each followed by "\n"
  val.txt    verses of the held-out chapters, same format
  corpus.json  counts and SHA-256 of the raw dump and of both files

Deterministic: the same package version gives the same bytes (bible-kjv 4.38
gives raw SHA-256 recorded in models/train/README.md).  This script never
writes inside the repository unless OUT points there; its outputs are not
committed (the text is 4.4 MB; the package reproduces it).

Usage:  /usr/bin/python3 models/train/prepare_corpus.py [--out DIR]
Needs:  apt-get install -y bible-kjv-text bible-kjv
"""
import argparse
import hashlib
import json
import os
import re
import subprocess
import sys

N_VERSES = 31102
N_CHAPTERS = 1189
VAL_EVERY = 50
REF = re.compile(r"^([1-3]?[A-Za-z]+)(\d+):(\d+) (.+)$")


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def dump_bible():
    try:
        raw = subprocess.run(["bible", "-f", "Gen1:1-Rev22:21"], stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        sys.exit("prepare_corpus: cannot run `bible` (%s); install it with "
                 "`apt-get install -y bible-kjv-text bible-kjv`" % e)
    return raw


def parse(raw):
    """[(chapter_key, text)] in canonical order; exits on anything unexpected."""
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        sys.exit("prepare_corpus: the dump is not ASCII; unexpected bible-kjv version")
    verses = []
    for n, line in enumerate(text.splitlines(), 1):
        m = REF.match(line)
        if not m:
            sys.exit("prepare_corpus: line %d is not 'Book C:V text': %r" % (n, line[:60]))
        book, chap, _, body = m.groups()
        verses.append(((book, int(chap)), " ".join(body.split())))
    return verses


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="/tmp/ssmd-train")
    args = ap.parse_args()

    raw = dump_bible()
    verses = parse(raw)
    chapters = []
    for key, _ in verses:
        if not chapters or chapters[-1] != key:
            chapters.append(key)
    if len(verses) != N_VERSES or len(chapters) != N_CHAPTERS or len(set(chapters)) != N_CHAPTERS:
        sys.exit("prepare_corpus: got %d verses in %d chapters, expected %d in %d"
                 % (len(verses), len(chapters), N_VERSES, N_CHAPTERS))
    val_keys = {k for i, k in enumerate(chapters) if i % VAL_EVERY == VAL_EVERY - 1}

    train = "".join(body + "\n" for key, body in verses if key not in val_keys).encode("ascii")
    val = "".join(body + "\n" for key, body in verses if key in val_keys).encode("ascii")
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "train.txt"), "wb") as f:
        f.write(train)
    with open(os.path.join(args.out, "val.txt"), "wb") as f:
        f.write(val)
    info = {
        "source": "bible -f Gen1:1-Rev22:21 (Debian bible-kjv, bible-kjv-text)",
        "raw_sha256": sha256(raw), "raw_bytes": len(raw),
        "verses": len(verses), "chapters": len(chapters),
        "val_chapters": ["%s%d" % k for k in chapters if k in val_keys],
        "train_bytes": len(train), "train_sha256": sha256(train),
        "val_bytes": len(val), "val_sha256": sha256(val),
    }
    with open(os.path.join(args.out, "corpus.json"), "w") as f:
        json.dump(info, f, indent=1)
        f.write("\n")
    print("prepare_corpus: %d verses, %d chapters; train %d bytes, val %d bytes (%d chapters) -> %s"
          % (len(verses), len(chapters), len(train), len(val), len(val_keys), args.out))


if __name__ == "__main__":
    main()
