#!/usr/bin/python3
"""Time PyTorch's forward pass of a checkpoint, the counterpart of
`winnow bench`.

The input is what `winnow bench --seq-len N --batch B` feeds the engine:
B windows of N ids, [CLS] first, [SEP] last, random ids >= 1000 between
them, drawn with the same generator and seed as daemon/cli_bench.c, so both
sides run on the very same ids; the attention mask is all ones (no padding).
The model runs in eval mode under torch.inference_mode(); W warm-up calls,
then R timed calls (time.perf_counter); median and p90 are nearest-rank, as
winnow bench reports them.

Two forward paths (--forward):
  plain      embeddings, the L BERT layers with the attention mask, pooler
             and classifier, run through the reference's own modules: the
             work of Hugging Face's BertForSequenceClassification in eval
             mode, and the work the C engine does on a model without pruning
             or combining. The default.
  reference  the reference model's forward(), which on top of that computes
             every layer's token importance in float64 (PAPER.md 2) even
             when nothing is pruned: what scripts/ref_logits.py costs, not
             what PyTorch costs.
Before timing, both paths are checked to give the same logits on a short
slice of the input, so "plain" cannot drift from the reference.

The model is a checkpoint directory (--checkpoint) or a .wnn file (--model:
the very file `winnow bench` runs, read through the validating reader, so
both sides run the same variant of the method). --variant overrides the
method's settings of either (the config's winnow_* keys), e.g.
  --variant keep_ratio=0.9,fuzzy=false
  --variant keep_ratio=0.9,fuzzy_mode=within
  --variant keep_ratio=0.9,combine_layer=6,combine_tokens=8
  --variant combine_layer=none,pooling=mean
A pruned or combining variant needs --forward reference: the reference masks
pruned tokens (they stay in every tensor) where the engine drops them. In
that mode the JSON also carries kept_mean, the mean over the windows of
|K_0|..|K_P| (PAPER.md 2) in the last timed call.

Examples:
  /usr/bin/python3 scripts/bench_torch.py --checkpoint /tmp/ck \\
      --seq-len 128 --batch 8 --repeat 10 --warmup 2 --threads 2 --json
  /usr/bin/python3 scripts/bench_torch.py --model /tmp/pfc6.wnn \\
      --forward reference --seq-len 512 --batch 1 --repeat 3 --json
"""

import argparse
import ctypes
import json
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

from winnow_ref import checkpoint, config, wnn  # noqa: E402

CLS_ID = 101  # BERT's, used when the vocabulary lacks the token
SEP_ID = 102
FIRST_WORD_ID = 1000  # below: [PAD], [unusedN], specials, single characters

FORWARDS = ("plain", "reference")

# --variant keys: WinnowConfig fields, each with its parser.
VARIANT_KEYS = ("keep_ratio", "fuzzy", "fuzzy_mode", "combine_layer",
                "combine_tokens", "pooling")


def parse_variant(spec: str) -> dict:
    """"key=value,..." -> WinnowConfig.with_overrides keywords; raises
    ValueError naming the bad item."""
    out = {}
    for item in filter(None, (x.strip() for x in spec.split(","))):
        key, sep, value = item.partition("=")
        key, value = key.strip().replace("-", "_"), value.strip()
        if not sep or key not in VARIANT_KEYS:
            raise ValueError(f"'{item}' is not KEY=VALUE with KEY one of "
                             f"{', '.join(VARIANT_KEYS)}")
        try:
            if key == "keep_ratio":
                out[key] = float(value)
            elif key == "fuzzy":
                if value.lower() not in ("true", "on", "1", "false", "off", "0"):
                    raise ValueError
                out[key] = value.lower() in ("true", "on", "1")
            elif key == "combine_layer":
                # -1: with_overrides' spelling of "no combining module"
                out[key] = -1 if value.lower() in ("none", "null", "off") else int(value)
            elif key == "combine_tokens":
                out[key] = int(value)
            else:
                choices = config.FUZZY_MODES if key == "fuzzy_mode" else config.POOLINGS
                if value not in choices:
                    raise ValueError
                out[key] = value
        except ValueError:
            raise ValueError(f"bad value in '{item}'") from None
    return out


def parse_args(argv=None):
    ap = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", metavar="DIR",
                     help="checkpoint directory (pytorch_model.bin, config.json, vocab.txt)")
    src.add_argument("--model", metavar="FILE",
                     help="a .wnn model file instead, with its own variant settings")
    ap.add_argument("--variant", metavar="KEY=VALUE,...",
                    help="override the method's settings: " + ", ".join(VARIANT_KEYS)
                         + " (combine_layer=none removes the combining module); see above")
    ap.add_argument("--seq-len", type=int, default=128, metavar="N",
                    help="tokens per window, [CLS] and [SEP] included (default 128)")
    ap.add_argument("--batch", type=int, default=1, metavar="B",
                    help="windows per forward call (default 1)")
    ap.add_argument("--repeat", type=int, default=10, metavar="R",
                    help="timed forward calls (default 10)")
    ap.add_argument("--warmup", type=int, default=2, metavar="W",
                    help="untimed forward calls first (default 2)")
    ap.add_argument("--threads", type=int, default=2, metavar="T",
                    help="torch intra-op threads, torch.set_num_threads (default 2); "
                         "OpenBLAS's own threads are OPENBLAS_NUM_THREADS'")
    ap.add_argument("--forward", choices=FORWARDS, default="plain",
                    help="plain BERT (default) or the reference's forward() with its "
                         "importance scores; see above")
    ap.add_argument("--json", action="store_true",
                    help="print one JSON line instead of text")
    args = ap.parse_args(argv)
    for name in ("seq_len", "batch", "repeat", "threads"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.seq_len < 2:
        ap.error("--seq-len must be at least 2 ([CLS] and [SEP])")
    if args.warmup < 0:
        ap.error("--warmup must not be negative")
    try:
        args.overrides = parse_variant(args.variant or "")
    except ValueError as e:
        ap.error(f"--variant: {e}")
    return args


def load_model(args):
    """(model in eval mode, vocabulary) from --checkpoint or --model, with
    --variant's overrides applied."""
    if args.checkpoint:
        ckpt = checkpoint.load_checkpoint(args.checkpoint)
        cfg, state, vocab = ckpt.config, ckpt.state, ckpt.vocab
    else:
        m = wnn.read_wnn(args.model)
        cfg, vocab = m.config, m.vocab
        state = {k: torch.from_numpy(v) for k, v in m.checkpoint_state().items()}
    cfg = cfg.with_overrides(**args.overrides).validate()
    return checkpoint.build_model(cfg, state), vocab


def bench_ids(seq_len: int, batch: int, vocab_size: int,
              cls_id: int, sep_id: int) -> torch.Tensor:
    """daemon/cli_bench.c's windows: a 64-bit LCG (Knuth's MMIX constants)
    from a fixed seed, id = 1000 + (state >> 33) mod (V - 1000), one state
    step per id, running on across the windows."""
    mask64 = (1 << 64) - 1
    first = FIRST_WORD_ID % vocab_size
    rng = 0x9E3779B97F4A7C15
    rows = []
    for _ in range(batch):
        row = [cls_id]
        for _ in range(seq_len - 2):
            rng = (rng * 6364136223846793005 + 1442695040888963407) & mask64
            row.append(first + (rng >> 33) % (vocab_size - first))
        row.append(sep_id)
        rows.append(row)
    return torch.tensor(rows, dtype=torch.long)


def plain_forward(model, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """BertForSequenceClassification's eval forward over the reference's
    modules: no importance scores, no pruning bookkeeping."""
    bert = model.bert
    key_mask = mask.bool()
    h = bert.embeddings(ids)
    for layer in bert.encoder.layer:
        h, _ = layer(h, key_mask)
    return model.classifier(bert.pooler(h))


def check_plain(model, ids: torch.Tensor, mask: torch.Tensor) -> None:
    """Raises ValueError unless the plain path gives the reference's logits
    on a short slice of the input (cheap at any shape)."""
    cfg = model.config
    if cfg.has_combiner or cfg.keep_ratio < 1.0 or cfg.pooling != "cls":
        raise ValueError("the plain path is BERT's: it needs a checkpoint without "
                         "pruning or combining and with cls pooling "
                         "(use --forward reference)")
    n = min(ids.shape[1], 32)
    sub_ids = torch.cat([ids[:2, :n - 1], ids[:2, -1:]], dim=1)
    sub_mask = mask[:2, :n]
    want = model(sub_ids, sub_mask)
    got = plain_forward(model, sub_ids, sub_mask)
    if not torch.allclose(got, want, rtol=1e-5, atol=1e-5):
        raise ValueError(f"the plain forward differs from the reference: "
                         f"max |diff| {float((got - want).abs().max()):.3g}")


def blas_in_use() -> dict:
    """torch's build-time BLAS_INFO, the BLAS libraries this process really
    mapped (BLAS_INFO=generic means libblas.so.3, whatever Debian's
    alternatives point it to) and, if one is OpenBLAS, its kernel core and
    thread count. Called after the timed calls, so that whatever library
    they went through is mapped."""
    libs = []
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                fields = line.split()
                path = fields[5] if len(fields) >= 6 else ""  # 6th: the file
                base = os.path.basename(path)
                if ("blas" in base or "mkl" in base) and path not in libs:
                    libs.append(path)
    except OSError:
        pass
    blas_info = None
    for part in torch.__config__.show().replace(",", " ").split():
        if part.startswith("BLAS_INFO="):
            blas_info = part.split("=", 1)[1]
    info = {"blas_info": blas_info,
            "blas_libs": [os.path.realpath(p) for p in libs],
            "blas_core": None, "blas_threads": None}
    for path in libs:
        try:
            lib = ctypes.CDLL(path)  # already mapped: the same handle
            core = lib.openblas_get_corename
        except (OSError, AttributeError):
            continue
        core.restype = ctypes.c_char_p
        info["blas_core"] = core().decode()
        info["blas_threads"] = lib.openblas_get_num_threads()
        break
    return info


def quantile(sorted_values, q: float) -> float:
    """Nearest rank, as daemon/cli_bench.c computes it."""
    i = math.ceil(q * len(sorted_values))
    return sorted_values[i - 1 if i else 0]


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    source = args.checkpoint or args.model
    try:
        model, vocab = load_model(args)
    except (OSError, ValueError, KeyError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"bench_torch: cannot load '{source}': {msg}", file=sys.stderr)
        return 1
    # The engine takes [CLS] and [SEP] from the model file's vocabulary.
    vocab = {tok: i for i, tok in enumerate(vocab)}
    cls_id, sep_id = vocab.get("[CLS]", CLS_ID), vocab.get("[SEP]", SEP_ID)
    del vocab  # the model holds its own copy of the weights
    cfg = model.config
    if not 2 <= args.seq_len <= cfg.window_len:
        print(f"bench_torch: --seq-len must be in 2..{cfg.window_len} for this model",
              file=sys.stderr)
        return 1
    ids = bench_ids(args.seq_len, args.batch, cfg.vocab_size, cls_id, sep_id)
    mask = torch.ones_like(ids)

    with torch.inference_mode():
        if args.forward == "plain":
            try:
                check_plain(model, ids, mask)
            except ValueError as e:
                print(f"bench_torch: {e}", file=sys.stderr)
                return 1

            def forward():
                return plain_forward(model, ids, mask)
        else:
            def forward():
                # The details cost nothing extra: forward() computes the
                # kept sets and scores either way.
                return model(ids, mask, return_details=True)

        times = []
        for r in range(args.warmup + args.repeat):
            t0 = time.perf_counter()
            out = forward()
            if r >= args.warmup:
                times.append(time.perf_counter() - t0)
    times.sort()
    med, p90 = quantile(times, 0.5), quantile(times, 0.9)
    tokens = args.batch * args.seq_len
    result = {
        "seq_len": args.seq_len, "batch": args.batch, "repeat": args.repeat,
        "threads": torch.get_num_threads(), "forward": args.forward,
        "median_ms": round(med * 1e3, 3), "p90_ms": round(p90 * 1e3, 3),
        "tokens_per_s": round(tokens / med, 1), "torch": torch.__version__,
        "variant": {"keep_ratio": cfg.keep_ratio, "fuzzy": cfg.fuzzy,
                    "fuzzy_mode": cfg.fuzzy_mode, "combine_layer": cfg.combine_layer,
                    "combine_tokens": cfg.num_combine_tokens,
                    "pooling": cfg.head_pooling},
    }
    if args.forward == "reference":
        # |K_l| per window, l = 0..P, averaged over the batch.
        result["kept_mean"] = [round(float(k.sum()) / args.batch, 3) for k in out.kept]
    result.update(blas_in_use())
    if args.json:
        print(json.dumps(result))
    else:
        print(f"torch {torch.__version__}, {result['threads']} threads, "
              f"BLAS {', '.join(result['blas_libs']) or 'none mapped'}"
              f"{' (' + result['blas_core'] + ')' if result['blas_core'] else ''}")
        print(f"batch {args.batch} x {args.seq_len} tokens, {args.repeat} repeats, "
              f"{args.forward} forward: median {med * 1e3:.2f} ms, "
              f"p90 {p90 * 1e3:.2f} ms, {tokens / med:.0f} tokens/s")
        if "kept_mean" in result:
            print("kept tokens per window, K_0..K_P: "
                  + " ".join(f"{k:g}" for k in result["kept_mean"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
