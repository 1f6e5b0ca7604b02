#!/usr/bin/python3
"""prepare_corpus.py - the training corpus of the default model: the King James
Bible from Debian's `bible-kjv` package, as plain text, one verse per line.

Runs `bible -f Gen1:1-Rev22:21` (pretty-printing off: one verse per line,
"Ge1:1 In the beginning ..."), checks that it got the whole book (31,102
verses, 1,189 chapters, ASCII only), strips the "Book C:V " references and
splits by whole chapters: every 50th chapter (chapter index % 50 == 49, in
canonical order) is held out for validation (~2%), the rest is training text.

The training text is a mix: after each training chapter's verses come short
dialogues about some of its verses (each verse is picked with probability
DIALOG_P, seeded with --seed), rendered exactly as the model's chat template
renders them (train_tokenizer.CHAT_TEMPLATE with eos_token = END_OF_TURN):

  <|user|>\nWhat does Genesis 1:3 say?<|end|>\n<|assistant|>\nAnd God said, Let there be light: and there was light.<|end|>\n

The user asks a templated question (the verse by book, chapter and verse; or
how a verse that begins with a few given words goes on); the assistant
answers with the whole verse and ends its turn with the special token
`<|end|>`.  A quarter of the dialogues have a second exchange about the next
verse.  The held-out chapters get no dialogues in train.txt; their own
dialogues (same recipe) go to val_dialog.txt, for checking chat, while
val.txt stays the plain held-out verses.

Writes, under OUT (default /tmp/ssmd-train):
  train.txt  verses of the training chapters, each followed by "\n"
  val.txt    verses of the held-out chapters, same format
  val_dialog.txt  dialogues about the held-out chapters' verses (not trained on)
  corpus.json  counts and SHA-256 of the raw dump and of both files

Deterministic: the same package version gives the same bytes (bible-kjv 4.38
gives raw SHA-256 recorded in models/train/README.md).  This script never
writes inside the repository unless OUT points there; its outputs are not
committed (the text is 4.4 MB; the package reproduces it).

Usage:  /usr/bin/python3 models/train/prepare_corpus.py [--out DIR] [--seed N]
Needs:  apt-get install -y bible-kjv-text bible-kjv
"""
import argparse
import hashlib
import json
import os
import random
import re
import subprocess
import sys

N_VERSES = 31102
N_CHAPTERS = 1189
VAL_EVERY = 50
REF = re.compile(r"^([1-3]?[A-Za-z]+)(\d+):(\d+) (.+)$")
END_OF_TURN = "<|end|>"    # train_tokenizer.END_OF_TURN; the chat template's eos_token
DIALOG_P = 0.2             # share of verses a dialogue is made about
SECOND_TURN_P = 0.25       # share of dialogues that go on with the next verse
# The names `bible` abbreviates, in canonical order (its abbreviations, in the
# same order, are checked against the dump).
BOOKS = [
    ("Ge", "Genesis"), ("Exo", "Exodus"), ("Lev", "Leviticus"), ("Num", "Numbers"),
    ("Deu", "Deuteronomy"), ("Josh", "Joshua"), ("Jdgs", "Judges"), ("Ruth", "Ruth"),
    ("1Sm", "1 Samuel"), ("2Sm", "2 Samuel"), ("1Ki", "1 Kings"), ("2Ki", "2 Kings"),
    ("1Chr", "1 Chronicles"), ("2Chr", "2 Chronicles"), ("Ezra", "Ezra"), ("Neh", "Nehemiah"),
    ("Est", "Esther"), ("Job", "Job"), ("Psa", "Psalms"), ("Prv", "Proverbs"),
    ("Eccl", "Ecclesiastes"), ("SSol", "Song of Solomon"), ("Isa", "Isaiah"), ("Jer", "Jeremiah"),
    ("Lam", "Lamentations"), ("Eze", "Ezekiel"), ("Dan", "Daniel"), ("Hos", "Hosea"),
    ("Joel", "Joel"), ("Amos", "Amos"), ("Obad", "Obadiah"), ("Jonah", "Jonah"),
    ("Mic", "Micah"), ("Nahum", "Nahum"), ("Hab", "Habakkuk"), ("Zep", "Zephaniah"),
    ("Hag", "Haggai"), ("Zec", "Zechariah"), ("Mal", "Malachi"), ("Mat", "Matthew"),
    ("Mark", "Mark"), ("Luke", "Luke"), ("John", "John"), ("Acts", "Acts"),
    ("Rom", "Romans"), ("1Cor", "1 Corinthians"), ("2Cor", "2 Corinthians"), ("Gal", "Galatians"),
    ("Eph", "Ephesians"), ("Phi", "Philippians"), ("Col", "Colossians"),
    ("1Th", "1 Thessalonians"), ("2Th", "2 Thessalonians"), ("1Tim", "1 Timothy"),
    ("2Tim", "2 Timothy"), ("Titus", "Titus"), ("Phmn", "Philemon"), ("Heb", "Hebrews"),
    ("Jas", "James"), ("1Pet", "1 Peter"), ("2Pet", "2 Peter"), ("1Jn", "1 John"),
    ("2Jn", "2 John"), ("3Jn", "3 John"), ("Jude", "Jude"), ("Rev", "Revelation"),
]
# Questions about a verse, by reference (book, chapter, verse) or by its start.
BY_REF = [
    "What does {book} {c}:{v} say?",
    "Quote {book} {c}:{v}.",
    "What is written in {book} chapter {c}, verse {v}?",
    "Recite {book} {c}:{v} for me.",
]
BY_START = [
    "How does the verse that begins \"{start}\" go on?",
    "Finish this verse: {start}",
    "Which verse begins with \"{start}\"?",
]
NEXT = [
    "And the next verse?",
    "What comes after that?",
    "Go on.",
]


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
    """[(chapter_key, verse, text)] in canonical order; exits on anything unexpected."""
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        sys.exit("prepare_corpus: the dump is not ASCII; unexpected bible-kjv version")
    verses = []
    for n, line in enumerate(text.splitlines(), 1):
        m = REF.match(line)
        if not m:
            sys.exit("prepare_corpus: line %d is not 'Book C:V text': %r" % (n, line[:60]))
        book, chap, verse, body = m.groups()
        verses.append(((book, int(chap)), int(verse), " ".join(body.split())))
    return verses


def turn(role, content):
    """One message as the chat template renders it."""
    return "<|%s|>\n%s%s\n" % (role, content, END_OF_TURN)


def question(rng, ref, body):
    """A templated user question whose answer is the verse body."""
    book, c, v = ref
    words = body.split()
    if len(words) >= 8 and rng.random() < 0.5:
        start = " ".join(words[:rng.randint(3, 6)])
        return rng.choice(BY_START).format(start=start)
    return rng.choice(BY_REF).format(book=book, c=c, v=v)


def dialogues(rng, chapter):
    """Dialogues about some of chapter's verses: [(ref, body)] -> [text]."""
    out = []
    for i, (ref, body) in enumerate(chapter):
        if rng.random() >= DIALOG_P:
            continue
        text = turn("user", question(rng, ref, body)) + turn("assistant", body)
        if i + 1 < len(chapter) and rng.random() < SECOND_TURN_P:
            text += turn("user", rng.choice(NEXT)) + turn("assistant", chapter[i + 1][1])
        out.append(text)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="/tmp/ssmd-train")
    ap.add_argument("--seed", type=int, default=1234, help="which verses get dialogues, and how")
    args = ap.parse_args()

    raw = dump_bible()
    verses = parse(raw)
    chapters = []
    for key, _, _ in verses:
        if not chapters or chapters[-1] != key:
            chapters.append(key)
    if len(verses) != N_VERSES or len(chapters) != N_CHAPTERS or len(set(chapters)) != N_CHAPTERS:
        sys.exit("prepare_corpus: got %d verses in %d chapters, expected %d in %d"
                 % (len(verses), len(chapters), N_VERSES, N_CHAPTERS))
    abbrevs = []
    for book, _ in chapters:
        if not abbrevs or abbrevs[-1] != book:
            abbrevs.append(book)
    if abbrevs != [a for a, _ in BOOKS]:
        sys.exit("prepare_corpus: unexpected book abbreviations %r" % abbrevs)
    names = dict(BOOKS)
    val_keys = {k for i, k in enumerate(chapters) if i % VAL_EVERY == VAL_EVERY - 1}

    by_chapter = {}
    for key, v, body in verses:
        by_chapter.setdefault(key, []).append(((names[key[0]], key[1], v), body))
    rng = random.Random(args.seed)
    train_parts, val_parts, val_dialog_parts = [], [], []
    n_dialogs = [0, 0]    # train, held out
    for key in chapters:
        chapter = by_chapter[key]
        plain = "".join(body + "\n" for _, body in chapter)
        chat = dialogues(rng, chapter)
        n_dialogs[key in val_keys] += len(chat)
        chat = "".join(chat)
        if key in val_keys:
            val_parts.append(plain)
            val_dialog_parts.append(chat)
        else:
            train_parts.append(plain + chat)
    train = "".join(train_parts).encode("ascii")
    plain_train_bytes = sum(len(body) + 1 for key, _, body in verses if key not in val_keys)
    val = "".join(val_parts).encode("ascii")
    val_dialog = "".join(val_dialog_parts).encode("ascii")
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "train.txt"), "wb") as f:
        f.write(train)
    with open(os.path.join(args.out, "val.txt"), "wb") as f:
        f.write(val)
    with open(os.path.join(args.out, "val_dialog.txt"), "wb") as f:
        f.write(val_dialog)
    info = {
        "source": "bible -f Gen1:1-Rev22:21 (Debian bible-kjv, bible-kjv-text)",
        "raw_sha256": sha256(raw), "raw_bytes": len(raw),
        "verses": len(verses), "chapters": len(chapters),
        "val_chapters": ["%s%d" % k for k in chapters if k in val_keys],
        "train_bytes": len(train), "train_sha256": sha256(train),
        "val_bytes": len(val), "val_sha256": sha256(val),
        "dialog_seed": args.seed, "dialog_p": DIALOG_P, "second_turn_p": SECOND_TURN_P,
        "train_dialogs": n_dialogs[0], "train_dialog_bytes": len(train) - plain_train_bytes,
        "val_dialogs": n_dialogs[1], "val_dialog_bytes": len(val_dialog),
        "val_dialog_sha256": sha256(val_dialog),
    }
    with open(os.path.join(args.out, "corpus.json"), "w") as f:
        json.dump(info, f, indent=1)
        f.write("\n")
    print("prepare_corpus: %d verses, %d chapters; train %d bytes (%d dialogues, %d bytes), "
          "val %d bytes (%d chapters; %d dialogues in val_dialog.txt) -> %s"
          % (len(verses), len(chapters), len(train), n_dialogs[0], info["train_dialog_bytes"],
             len(val), len(val_keys), n_dialogs[1], args.out))


if __name__ == "__main__":
    main()
