"""Masked-language-model pretraining (scripts/pretrain.py's work).

Text: the train splits of SpamAssassin and Brown (from the committed
manifests) and every State of the Union address; never a validation or
test document. The MLM validation loss is measured on a fixed sample of
windows of the validation splits, with a fixed masking.

The run directory holds state.pt (everything needed to resume: weights,
optimiser, step, training time, data position, random states), history.json,
loss.png, and, when the budget is spent, encoder/: a checkpoint directory
(config.json, pytorch_model.bin with bert.embeddings.* and bert.encoder.*,
vocab.txt) that fine-tuning starts from.
"""

import dataclasses
import os
import random
import shutil
import sys
from typing import List

import numpy as np
import torch

from . import archive, batching, paths, plots, progress, runstate, splits
from .model import BertForMaskedLM, lr_factor, parameter_count, seconds, train_step
from .tokens import TokenStore

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from winnow_ref import checkpoint as ref_checkpoint  # noqa: E402
from winnow_ref.config import WinnowConfig  # noqa: E402


@dataclasses.dataclass
class Shape:
    """The encoder's size (docs/training.md explains the choice)."""
    layers: int = 6
    hidden: int = 192
    heads: int = 4
    intermediate: int = 768
    max_position: int = 512

    def config(self, vocab_size: int, labels=("LABEL_0", "LABEL_1"), **kw) -> WinnowConfig:
        return WinnowConfig(vocab_size=vocab_size, hidden_size=self.hidden,
                            num_hidden_layers=self.layers, num_attention_heads=self.heads,
                            intermediate_size=self.intermediate,
                            max_position_embeddings=self.max_position,
                            labels=list(labels), **kw).normalised().validate()


def pretraining_windows(data_root: str, splits_dir: str, width: int, which: str,
                        min_len: int = 16) -> List[np.ndarray]:
    """Windows of `width` text tokens: which = "train" (train splits +
    SOTU) or "validation" (validation splits)."""
    out = []
    for corpus in ("spamassassin", "brown"):
        path = os.path.join(paths.data_dir(corpus, data_root), "tokens.npz")
        if not os.path.isfile(path):
            progress.log(f"pretrain: no prepared {corpus} ({path}), left out")
            continue
        store = TokenStore.load(path)
        for doc_id, _ in splits.read_manifest(splits_dir, corpus, which):
            out += batching.split_windows(store.get(doc_id), width, "all", min_len)
    if which == "train":
        sotu = os.path.join(paths.data_dir("sotu", data_root), "tokens.npz")
        if os.path.isfile(sotu):
            store = TokenStore.load(sotu)
            for doc_id in store.index:
                out += batching.split_windows(store.get(doc_id), width, "all", min_len)
    return out


def run(args) -> int:
    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    state_path = os.path.join(args.out, "state.pt")
    vocab = ref_checkpoint.read_vocab(args.vocab)
    _, cls_id, sep_id, mask_id = batching.special_ids(vocab)
    shape = Shape(args.layers, args.hidden, args.heads, args.intermediate, args.max_position)
    cfg = shape.config(len(vocab), hidden_dropout_prob=args.dropout,
                       attention_probs_dropout_prob=args.attention_dropout)
    width = args.seq_len - 2

    train = pretraining_windows(args.data_root, args.splits_dir, width, "train")
    if not train:
        raise SystemExit("pretrain: no training text; run scripts/prepare_data.py first")
    val_all = pretraining_windows(args.data_root, args.splits_dir, width, "validation")
    vrng = random.Random(1234)
    val = vrng.sample(val_all, min(args.val_windows, len(val_all)))
    n_tokens = sum(len(w) for w in train)
    progress.log(f"pretrain: {len(train)} windows, {n_tokens} tokens of training text; "
                 f"{len(val)} validation windows")

    torch.manual_seed(args.seed)
    model = BertForMaskedLM(cfg)
    decay = [p for n, p in model.named_parameters() if not (n.endswith("bias") or "LayerNorm" in n)]
    no_decay = [p for n, p in model.named_parameters() if n.endswith("bias") or "LayerNorm" in n]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.98), eps=1e-6, foreach=True)
    step, epoch, cursor = 0, 0, 0
    history = {"step": [], "loss": [], "val_step": [], "val_loss": [], "tokens": 0}
    budget = runstate.Budget(args.max_steps, args.max_minutes,
                             clock=runstate.compute_clock(torch.get_num_threads()))
    gen = torch.Generator().manual_seed(args.seed)

    st = runstate.load_state(state_path)
    if st is not None:
        if st["shape"] != dataclasses.asdict(shape) or st["seq_len"] != args.seq_len:
            raise SystemExit(f"pretrain: '{state_path}' is a run of another shape "
                             f"({st['shape']}, seq {st['seq_len']}); use another --out")
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["optimizer"])
        step, epoch, cursor = st["step"], st["epoch"], st["cursor"]
        history = st["history"]
        budget.restore(st)
        runstate.set_rng_state(st["rng"])
        gen.set_state(st["mask_rng"])
        progress.log(f"pretrain: resuming at step {step} after {seconds(budget.elapsed)} "
                     f"of training")
    progress.log(f"pretrain: {shape.layers} layers x {shape.hidden} ({shape.heads} heads), "
                 f"{parameter_count(model) / 1e6:.1f}M parameters; batch "
                 f"{args.batch_size} x {args.seq_len}; budget "
                 f"{args.max_steps or '-'} steps / {args.max_minutes or '-'} min")

    def save():
        runstate.save_state(state_path, {
            "model": model.state_dict(), "optimizer": opt.state_dict(), "step": step,
            "epoch": epoch, "cursor": cursor, "history": history,
            **budget.state(), "rng": runstate.rng_state(), "mask_rng": gen.get_state(),
            "shape": dataclasses.asdict(shape), "seq_len": args.seq_len})

    def evaluate() -> float:
        model.eval()
        g = torch.Generator().manual_seed(99)
        total, count = 0.0, 0
        with torch.no_grad():
            for idx in batching.sequential_batches([len(w) for w in val], args.batch_size):
                ids, mask = batching.pad_windows([val[i] for i in idx], cls_id, sep_id)
                ids, labels = batching.mask_tokens(ids, mask, g, cfg.vocab_size, mask_id)
                loss, n = model(ids, mask, labels)
                total += float(loss) * n
                count += n
        model.train()
        return total / max(count, 1)

    def plot():
        plots.loss_curve(os.path.join(args.out, "loss.png"),
                         f"MLM pretraining ({shape.layers}x{shape.hidden}, "
                         f"batch {args.batch_size}x{args.seq_len})",
                         history["step"], history["loss"], history["val_step"],
                         history["val_loss"])

    model.train()
    cpu0 = runstate.cpu_seconds()
    last_save = budget.elapsed
    total_steps = args.max_steps or None
    pb = progress.bar(total=total_steps, initial=step, desc="pretrain", unit="step")
    budget.start()
    lengths = [len(w) for w in train]
    batches, batches_epoch = None, None
    while not budget.done(step):
        if batches_epoch != epoch:  # the epoch's order depends on the seed only
            batches = batching.bucketed_batches(lengths, args.batch_size,
                                                random.Random(args.seed * 1000 + epoch))
            batches_epoch = epoch
        if cursor >= len(batches):
            epoch, cursor = epoch + 1, 0
            continue
        idx = batches[cursor]
        ids, mask = batching.pad_windows([train[i] for i in idx], cls_id, sep_id)
        ids, labels = batching.mask_tokens(ids, mask, gen, cfg.vocab_size, mask_id)
        loss, _ = model(ids, mask, labels)
        train_step(model, opt, loss, args.lr * lr_factor(budget.progress(step), args.warmup))
        step += 1
        cursor += 1
        history["step"].append(step)
        history["loss"].append(float(loss))
        history["tokens"] += int(mask.sum())
        budget.tick()
        budget.replan(step)
        pb.update()
        pb.set_postfix_str(f"loss {float(loss):.3f} ep {epoch} "
                           f"{seconds(budget.elapsed)}", refresh=False)
        if args.eval_every and step % args.eval_every == 0:
            history["val_step"].append(step)
            history["val_loss"].append(evaluate())
            pb.write(f"pretrain: step {step}: validation MLM loss {history['val_loss'][-1]:.3f}")
            plot()
            budget.tick()  # evaluation counts towards the budget
        if budget.elapsed - last_save >= args.checkpoint_minutes * 60:
            save()
            last_save = budget.elapsed
            budget.tick()
    pb.close()
    if not history["val_step"] or history["val_step"][-1] != step:
        history["val_step"].append(step)
        history["val_loss"].append(evaluate())
        budget.tick()
    history["cpu_seconds_this_session"] = runstate.cpu_seconds() - cpu0
    save()
    plot()

    enc_dir = os.path.join(args.out, "encoder")
    tmp_dir = enc_dir + ".tmp"
    shutil.rmtree(tmp_dir, ignore_errors=True)
    ref_checkpoint.save_checkpoint(tmp_dir, cfg, model.encoder_state(), vocab)
    shutil.rmtree(enc_dir, ignore_errors=True)
    os.replace(tmp_dir, enc_dir)
    summary = {"steps": step, "epochs": epoch + cursor / max(1, -(-len(train) // args.batch_size)),
               "tokens_seen": history["tokens"], "training_seconds": budget.elapsed,
               "seconds_per_step": budget.elapsed / max(step, 1),
               "final_train_loss_avg100": float(np.mean(history["loss"][-100:])) if history["loss"] else None,
               "validation_mlm_loss": history["val_loss"][-1],
               "shape": dataclasses.asdict(shape), "batch_size": args.batch_size,
               "seq_len": args.seq_len, "lr": args.lr, "parameters": parameter_count(model)}
    runstate.write_json(os.path.join(args.out, "history.json"), history)
    runstate.write_json(os.path.join(args.out, "summary.json"), summary)
    runstate.write_json(os.path.join(enc_dir, "summary.json"), summary)  # travels with it
    progress.log(f"pretrain: {step} steps, {history['tokens']} tokens in "
                 f"{seconds(budget.elapsed)}; validation MLM loss "
                 f"{history['val_loss'][-1]:.3f}; encoder -> {enc_dir}")
    # Whether the committed table can go on from this encoder: only if it
    # is, bit for bit, the one the archived runs were fine-tuned from.
    sha = archive.encoder_sha256(enc_dir)
    conflict = archive.archive_encoder_conflict(paths.ARCHIVE, sha)
    progress.log(f"pretrain: encoder sha256 {sha}; "
                 + (f"not the archive's: {conflict}" if conflict else
                    "the archived runs' own (or the archive is empty)"))
    return 0
