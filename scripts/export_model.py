#!/usr/bin/python3
"""Export a checkpoint directory to a winnow model file (.wnn).

The directory holds pytorch_model.bin (a state_dict with Hugging Face's
BertForSequenceClassification names, plus winnow.combine.* when there is a
combining module), config.json (Hugging Face's keys plus winnow's) and
vocab.txt. The flags override config.json's winnow_* keys. The file format
is docs/model-format.md; the written file is read back through the
validating reader before this command reports success.

Example:
  /usr/bin/python3 scripts/export_model.py --checkpoint runs/spam \\
      --out model/weights/spam.wnn --keep-ratio 0.9 --combine-layer 3
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from winnow_ref import checkpoint, config, export, wnn  # noqa: E402


def parse_combine_layer(text: str) -> int:
    """An int, or 'none' (returned as -1: no combining module)."""
    if text.lower() in ("none", "null", "off"):
        return -1
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a layer index or 'none'") from None


def parse_args(argv=None):
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Flags left out keep config.json's values.")
    ap.add_argument("--checkpoint", required=True, metavar="DIR",
                    help="checkpoint directory: pytorch_model.bin, config.json, vocab.txt")
    ap.add_argument("--out", required=True, metavar="FILE",
                    help="the .wnn file to write (replaced if it exists)")
    ap.add_argument("--keep-ratio", type=float, metavar="P",
                    help="token preservation ratio p in (0, 1]; 1.0 = no pruning "
                         "(PAPER.md 2; config winnow_keep_ratio)")
    ap.add_argument("--combine-layer", type=parse_combine_layer, metavar="N",
                    help="0-based index P of the layer the combining module replaces, "
                         "1..L-1, or 'none' (PAPER.md 3; config winnow_combine_layer)")
    ap.add_argument("--combine-tokens", type=int, metavar="M",
                    help="number m of combination tokens (config winnow_combine_tokens); "
                         "must match the checkpoint's winnow.combine.tokens")
    fz = ap.add_mutually_exclusive_group()
    fz.add_argument("--fuzzy", dest="fuzzy", action="store_true", default=None,
                    help="use the fuzzy pruning rule, ours-PF (config winnow_fuzzy)")
    fz.add_argument("--no-fuzzy", dest="fuzzy", action="store_false",
                    help="plain ratio pruning, ours-P (config winnow_fuzzy)")
    ap.add_argument("--fuzzy-mode", choices=config.FUZZY_MODES,
                    help="how p meets the fuzzy sets: budget (reading A) or within "
                         "(reading B), PAPER.md 2 (config winnow_fuzzy_mode)")
    ap.add_argument("--pooling", choices=config.POOLINGS,
                    help="head without combining module: cls (BERT's pooler) or mean "
                         "over the kept tokens, PAPER.md 4 (config winnow_pooling)")
    ap.add_argument("--max-seq-len", type=int, metavar="N",
                    help="window length incl. [CLS]/[SEP] (default: config max_seq_len, "
                         "else min(512, max_position_embeddings))")
    ap.add_argument("--dtype", choices=sorted(wnn.DTYPES), default="f32",
                    help="storage of the weight matrices and embeddings (biases and "
                         "LayerNorms stay f32); the engine converts to f32 at load "
                         "(default f32)")
    ap.add_argument("--name", metavar="NAME",
                    help="model name in the file and in output records "
                         "(default: the checkpoint directory's name)")
    ap.add_argument("--model-version", default="1", metavar="V",
                    help="model version string in the file and output records (default 1)")
    args = ap.parse_args(argv)
    if args.combine_tokens is not None and args.combine_tokens < 1:
        ap.error("--combine-tokens must be at least 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        ckpt = checkpoint.load_checkpoint(args.checkpoint)
        cfg = ckpt.config.with_overrides(
            keep_ratio=args.keep_ratio, combine_layer=args.combine_layer,
            combine_tokens=args.combine_tokens, fuzzy=args.fuzzy,
            fuzzy_mode=args.fuzzy_mode, pooling=args.pooling,
            max_seq_len=args.max_seq_len)
        if args.combine_tokens is not None and not cfg.has_combiner:
            raise config.ConfigError("--combine-tokens needs a combining module "
                                     "(--combine-layer N)")
        if args.pooling == "cls" and cfg.has_combiner:
            export.stderr_warn("--pooling cls is ignored: with a combining module "
                               "the head is the mean of the combined tokens (PAPER.md 4)")
        ckpt.config = cfg.validate()
        name = args.name or os.path.basename(os.path.normpath(args.checkpoint))
        model = export.export_checkpoint(ckpt, args.out, name=name,
                                         version=args.model_version, dtype=args.dtype,
                                         warn=export.stderr_warn)
    except (OSError, ValueError, KeyError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"export_model: cannot export '{args.checkpoint}': {msg}", file=sys.stderr)
        return 1
    size = os.path.getsize(args.out)
    c = model.config
    combine = f"layer {c.combine_layer}, m={c.combine_tokens}" if c.has_combiner else "none"
    print(f"wrote {args.out}: '{model.name}' {model.version}, {size / 1e6:.1f} MB, "
          f"{len(model.tensors)} tensors ({args.dtype}); L={c.num_hidden_layers} "
          f"d={c.hidden_size} H={c.num_attention_heads} labels={','.join(c.labels)}; "
          f"p={c.keep_ratio} fuzzy={'on' if c.fuzzy else 'off'}/{c.fuzzy_mode} "
          f"combine={combine} head={c.head_pooling} max_seq_len={c.window_len}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
