#!/usr/bin/python3
"""Write a checkpoint directory with random weights, for tests.

The directory gets pytorch_model.bin (a state_dict with Hugging Face's
BertForSequenceClassification names plus winnow.combine.* when a combining
module is configured), config.json and vocab.txt, the same layout
export_model.py reads. Weights are BERT-like (normal, std 0.02) but biases
are small noise and LayerNorm weights 1 + noise, so that every parameter
changes the logits.

Example:
  /usr/bin/python3 scripts/make_random_checkpoint.py --out /tmp/ck \\
      --layers 2 --hidden 64 --heads 2 --labels 3 --seed 1
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from winnow_ref import checkpoint, config, random_checkpoint  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_VOCAB = os.path.join(REPO, "model", "weights", "vocab.txt")


def parse_combine_layer(text: str):
    if text.lower() in ("none", "null", "off"):
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a layer index or 'none'") from None


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, metavar="DIR",
                    help="checkpoint directory to write (created if needed)")
    ap.add_argument("--layers", type=int, required=True, metavar="L",
                    help="number of encoder layers")
    ap.add_argument("--hidden", type=int, required=True, metavar="D",
                    help="hidden size d (a multiple of --heads)")
    ap.add_argument("--heads", type=int, required=True, metavar="H",
                    help="number of attention heads")
    ap.add_argument("--intermediate", type=int, metavar="I",
                    help="feed-forward size (default 4 * D)")
    lab = ap.add_mutually_exclusive_group()
    lab.add_argument("--labels", type=int, metavar="N",
                     help="number of labels, named LABEL_0.. (default 2)")
    lab.add_argument("--label-names", metavar="A,B,...",
                     help="comma-separated label names, in class-index order")
    voc = ap.add_mutually_exclusive_group()
    voc.add_argument("--vocab", metavar="FILE",
                     help=f"vocab.txt to copy; must contain [CLS], [SEP], [UNK], [PAD], "
                          f"[MASK] (default {os.path.relpath(DEFAULT_VOCAB)})")
    voc.add_argument("--synthetic-vocab", type=int, metavar="SIZE",
                     help="write a made-up vocabulary of SIZE entries with BERT's "
                          "special ids instead (for tests without the real vocabulary)")
    ap.add_argument("--max-position", type=int, default=512, metavar="N",
                    help="position embeddings (default 512)")
    ap.add_argument("--max-seq-len", type=int, metavar="N",
                    help="window length incl. [CLS]/[SEP] (default min(512, --max-position))")
    ap.add_argument("--seed", type=int, default=0, metavar="S",
                    help="random seed; the same seed and shape give the same weights (default 0)")
    ap.add_argument("--std", type=float, default=0.02, metavar="X",
                    help="standard deviation of matrices and embeddings (default 0.02, BERT's)")
    ap.add_argument("--keep-ratio", type=float, default=1.0, metavar="P",
                    help="winnow_keep_ratio, p in (0, 1] (default 1.0: no pruning)")
    ap.add_argument("--combine-layer", type=parse_combine_layer, metavar="N",
                    help="winnow_combine_layer: 0-based layer the combining module "
                         "replaces, or 'none' (default none)")
    ap.add_argument("--combine-tokens", type=int, default=8, metavar="M",
                    help="winnow_combine_tokens, m (default 8)")
    ap.add_argument("--pooling", choices=config.POOLINGS, default="cls",
                    help="winnow_pooling (default cls)")
    fz = ap.add_mutually_exclusive_group()
    fz.add_argument("--fuzzy", dest="fuzzy", action="store_true", default=True,
                    help="winnow_fuzzy true (the default)")
    fz.add_argument("--no-fuzzy", dest="fuzzy", action="store_false",
                    help="winnow_fuzzy false")
    ap.add_argument("--fuzzy-mode", choices=config.FUZZY_MODES, default="budget",
                    help="winnow_fuzzy_mode (default budget)")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        if args.synthetic_vocab is not None:
            vocab = checkpoint.synthetic_vocab(args.synthetic_vocab)
        else:
            vocab = checkpoint.read_vocab(args.vocab or DEFAULT_VOCAB)
        if args.label_names:
            labels = [x.strip() for x in args.label_names.split(",")]
        else:
            labels = [f"LABEL_{i}" for i in range(args.labels or 2)]
        cfg = config.WinnowConfig(
            vocab_size=len(vocab), hidden_size=args.hidden,
            num_hidden_layers=args.layers, num_attention_heads=args.heads,
            intermediate_size=args.intermediate or 4 * args.hidden,
            max_position_embeddings=args.max_position, labels=labels,
            keep_ratio=args.keep_ratio, fuzzy=args.fuzzy, fuzzy_mode=args.fuzzy_mode,
            combine_layer=args.combine_layer, combine_tokens=args.combine_tokens,
            pooling=args.pooling, max_seq_len=args.max_seq_len).normalised().validate()
        state = random_checkpoint.random_state(cfg, seed=args.seed, std=args.std)
        checkpoint.save_checkpoint(args.out, cfg, state, vocab)
    except (OSError, ValueError) as e:
        print(f"make_random_checkpoint: cannot write '{args.out}': {e}", file=sys.stderr)
        return 1
    print(f"wrote {args.out}: {args.layers} x {args.hidden} ({args.heads} heads), "
          f"{len(labels)} labels, vocab {len(vocab)}, seed {args.seed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
