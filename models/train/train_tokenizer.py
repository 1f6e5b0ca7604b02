#!/usr/bin/python3
"""train_tokenizer.py - the default model's tokenizer: a byte-level BPE shaped
like GPT-NeoX's (the one Mamba checkpoints use), trained with Hugging Face
`tokenizers` on the training split written by prepare_corpus.py.

Shape: NFC normalizer; ByteLevel pre-tokenizer (GPT-2 regex,
add_prefix_space=false); ByteLevel decoder and post-processor; BPE over the
256 byte symbols; `<|endoftext|>` is id 0 (special; bos = unk = pad) and
`<|end|>` is id 1 (special; the end-of-turn token, eos_token, which the
chat template puts after every message and config.json's eos_token_id names,
so ssmd stops a reply there).  The BPE merges are learnt with `<|end|>` cut
out of the text, so it never leaks into other tokens.
Vocabulary: VOCAB_SIZE ids in all.  The held-out split is never seen.

Writes OUT/tokenizer.json and OUT/tokenizer_config.json (eos/bos tokens and a
role/content chat template that renders what server/parse.c's
srv_chat_render builds with the model's eos token:
"<|role|>\\ncontent<|end|>\\n" per message, then "<|assistant|>\\n";
prepare_corpus.py renders the training dialogues the same way).

Deterministic for a given corpus and `tokenizers` version (0.19.1 here).
Usage:  /usr/bin/python3 models/train/train_tokenizer.py --data DIR --out DIR
"""
import argparse
import json
import os

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

VOCAB_SIZE = 4096
EOS = "<|endoftext|>"       # id 0: document end; bos, unk, pad
END_OF_TURN = "<|end|>"     # id 1: end of a chat turn; the eos token
CHAT_TEMPLATE = ("{% for message in messages %}<|{{ message['role'] }}|>\n"
                 "{{ message['content'] }}{{ eos_token }}\n{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")


def lines(path):
    with open(path, encoding="ascii") as f:
        for line in f:
            yield line.replace(END_OF_TURN, "")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="/tmp/ssmd-train")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True,
                                                 use_regex=True)
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    tok.post_processor = processors.ByteLevel(trim_offsets=True)
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, min_frequency=2, special_tokens=[EOS, END_OF_TURN],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(lines(os.path.join(args.data, "train.txt")), trainer)
    assert tok.token_to_id(EOS) == 0 and tok.token_to_id(END_OF_TURN) == 1
    probe = tok.encode("<|user|>\nHi" + END_OF_TURN + "\n", add_special_tokens=False).ids
    assert probe.count(1) == 1 and probe[-2] == 1, probe
    assert tok.get_vocab_size() == VOCAB_SIZE, tok.get_vocab_size()

    os.makedirs(args.out, exist_ok=True)
    tok.save(os.path.join(args.out, "tokenizer.json"))
    cfg = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": EOS,
        "eos_token": END_OF_TURN,
        "unk_token": EOS,
        "pad_token": EOS,
        "add_bos_token": False,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": 1000000000,
        "chat_template": CHAT_TEMPLATE,
    }
    with open(os.path.join(args.out, "tokenizer_config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    print("train_tokenizer: %d ids -> %s" % (tok.get_vocab_size(), args.out))


if __name__ == "__main__":
    main()
