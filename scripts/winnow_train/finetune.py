"""Fine-tuning one (task, variant, seed) run (scripts/train.py's work),
per PAPER.md 7: AdamW with linear warm-up and decay, batch 16, windows of
at most 512 tokens, cross-entropy, pruning and Gumbel noise active in
training, and the checkpoint with the lowest validation loss kept.

The run directory holds state.pt (resumable state), best/ (the checkpoint
directory of the lowest validation loss: pytorch_model.bin, config.json
with the variant's winnow_* keys, vocab.txt), history.json, loss.png and,
once finished, done.json (a second call then does nothing unless --force).
"""

import dataclasses
import os
import random
import shutil
import sys
import time
from typing import List, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from . import archive, batching, paths, plots, progress, runstate, splits, tasks
from .mlm import Shape
from .model import classifier_from_encoder, lr_factor, parameter_count, seconds, train_step
from .tokens import TokenStore

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from winnow_ref import checkpoint as ref_checkpoint  # noqa: E402
from winnow_ref import prune as ref_prune  # noqa: E402
from winnow_ref.config import WinnowConfig  # noqa: E402


def run_dir(root: str, task: str, variant: str, seed: int) -> str:
    return os.path.join(root, task, variant, f"seed{seed}")


def task_windows(store: TokenStore, rows, task: tasks.Task, width: int, policy: str,
                 limit: int = 0) -> Tuple[List[np.ndarray], List[int], List[str]]:
    """(windows, label indices, document ids) of a split's rows."""
    label_index = {name: i for i, name in enumerate(task.labels)}
    wins, ys, docs = [], [], []
    for doc_id, label in rows[:limit] if limit else rows:
        y = label_index[task.label_of(label)]
        for w in batching.split_windows(store.get(doc_id), width, policy, min_len=16,
                                        max_windows=task.max_train_windows):
            wins.append(w)
            ys.append(y)
            docs.append(doc_id)
    return wins, ys, docs


def limited_rows(rows, limit: int, seed: int):
    """At most `limit` rows, stratified-ish (a seeded sample), for quick runs."""
    if not limit or limit >= len(rows):
        return rows
    r = random.Random(seed)
    return sorted(r.sample(rows, limit))


def evaluate(model, wins, ys, batch_size, cls_id, sep_id) -> Tuple[float, float]:
    """Mean cross-entropy and accuracy over windows, in eval mode."""
    model.eval()
    total, correct = 0.0, 0
    with torch.no_grad():
        for idx in batching.sequential_batches([len(w) for w in wins], batch_size):
            ids, mask = batching.pad_windows([wins[i] for i in idx], cls_id, sep_id)
            y = torch.tensor([ys[i] for i in idx])
            logits = model(ids, mask)
            total += float(F.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(dim=1) == y).sum())
    model.train()
    return total / max(1, len(wins)), correct / max(1, len(wins))


def build_config(args, task: tasks.Task, variant: tasks.Variant, vocab_size: int):
    """The classifier's configuration: the encoder's shape, the task's
    labels, the variant's method settings."""
    if args.encoder:
        enc = WinnowConfig.from_json_file(os.path.join(args.encoder, "config.json"))
        shape = Shape(enc.num_hidden_layers, enc.hidden_size, enc.num_attention_heads,
                      enc.intermediate_size, enc.max_position_embeddings)
    else:
        shape = Shape(args.layers, args.hidden, args.heads, args.intermediate,
                      args.max_position)
    over = variant.config_overrides(shape.layers)
    return shape, shape.config(vocab_size, labels=task.labels,
                               hidden_dropout_prob=args.dropout,
                               attention_probs_dropout_prob=args.attention_dropout,
                               max_seq_len=args.max_seq_len, **over)


def save_untrained(args, out: str) -> None:
    """The run's classifier as fine-tuning starts it (the pretrained
    encoder, the head drawn from the seed), saved as a checkpoint directory
    out/best with a done.json: the speed reference of evaluate.py, whose
    compute is a fine-tuned model's of the same configuration, since
    nothing in the engine's work depends on the weights' values."""
    task = tasks.TASKS[args.task]
    variant = tasks.VARIANTS[args.variant]
    vocab = ref_checkpoint.read_vocab(args.vocab)
    _, cfg = build_config(args, task, variant, len(vocab))
    encoder = ref_checkpoint.load_state(os.path.join(args.encoder, "pytorch_model.bin"))
    model = classifier_from_encoder(cfg, encoder, args.seed)
    tmp = os.path.join(out, "best.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    ref_checkpoint.save_checkpoint(tmp, cfg, model.state_dict(), vocab)
    shutil.rmtree(os.path.join(out, "best"), ignore_errors=True)
    os.replace(tmp, os.path.join(out, "best"))
    runstate.write_json(os.path.join(out, "done.json"), {
        "task": task.name, "variant": variant.name, "seed": args.seed, "steps": 0,
        "untrained": True, "config": cfg.to_dict(), "encoder": args.encoder,
        "encoder_sha256": archive.encoder_sha256(args.encoder)})


def recipe_difference(recorded: dict, recipe: dict) -> str:
    """'epochs 3, lr 0.0001 (not 8, 0.0003)' where a run's recorded recipe
    differs from this one; '' if it does not (runs from before a field was
    recorded count as agreeing on it)."""
    keys = [k for k in recipe if k in recorded and recorded[k] != recipe[k]]
    if not keys:
        return ""
    return (", ".join(f"{k} {recorded[k]:g}" for k in keys) + " (not "
            + ", ".join(f"{recipe[k]:g}" for k in keys) + ")")


def same_training_as(variant: tasks.Variant, window_len: int) -> str:
    """The table's variant whose training is this one's to the bit, or '':
    reading A's fuzzy rule at a p where it cannot bind on windows of
    window_len tokens (winnow_ref.prune.budget_rule_binds_at: p = 0.9)
    prunes as plain ratio pruning at that p, in training as in the engine.
    The spam runs of seed 1, trained both ways, agreed to the bit."""
    if not (variant.fuzzy and variant.fuzzy_mode == "budget") or variant.keep_ratio >= 1.0:
        return ""
    if ref_prune.budget_rule_binds_at(variant.keep_ratio, window_len):
        return ""
    plain = dataclasses.replace(variant, name="", fuzzy=False, description="")
    for v in tasks.VARIANTS.values():
        if dataclasses.replace(v, name="", description="") == plain:
            return v.name
    return ""


def training_options(args) -> dict:
    """What else shapes a run's training (done.json records it): two runs
    share weights only if these agree."""
    return {k: getattr(args, k) for k in ("batch_size", "warmup", "weight_decay",
                                          "max_train_docs", "max_val_docs", "eval_every")}


def share_weights(args, out: str, twin: str, cfg, vocab, encoder_sha: str,
                  recipe: dict) -> bool:
    """Make this run out of its twin's finished run (same_training_as):
    the twin's best weights under this variant's configuration, its
    history and loss curve, its done.json naming the twin (weights_of).
    False, with the reason logged, where the twin's run is not this one's
    training: not finished, another encoder, recipe or options, or cut
    short by its time budget (then the two runs' step counts would depend
    on their speeds, which differ)."""
    tdir = os.path.join(os.path.dirname(os.path.dirname(out)), twin, os.path.basename(out))
    done_path = os.path.join(tdir, "done.json")
    why = ""
    if not os.path.isfile(done_path):
        why = f"{tdir} is not finished"
    else:
        d = runstate.read_json(done_path)
        tcfg = dict(d.get("config", {}), winnow_fuzzy=cfg.fuzzy, winnow_fuzzy_mode=cfg.fuzzy_mode)
        if d.get("encoder_sha256") != encoder_sha:
            why = f"{tdir} was trained from another encoder"
        elif recipe_difference(d, recipe):
            why = f"{tdir} was trained with {recipe_difference(d, recipe)}"
        elif d.get("options") != training_options(args):
            why = f"{tdir} was trained with other options ({d.get('options')})"
        elif tcfg != cfg.to_dict():
            why = f"{tdir} has another configuration"
        elif d.get("steps", 0) < d.get("max_steps", 0):
            why = f"{tdir} was cut short by its time budget"
    if why:
        progress.log(f"train: {why}; training {out} itself")
        return False
    state = ref_checkpoint.load_state(os.path.join(tdir, "best", "pytorch_model.bin"))
    tmp = os.path.join(out, "best.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    ref_checkpoint.save_checkpoint(tmp, cfg, state, vocab)
    shutil.rmtree(os.path.join(out, "best"), ignore_errors=True)
    os.replace(tmp, os.path.join(out, "best"))
    for name in ("history.json", "loss.png"):
        if os.path.isfile(os.path.join(tdir, name)):
            shutil.copyfile(os.path.join(tdir, name), os.path.join(out, name))
    variant = tasks.VARIANTS[args.variant]
    d.update(variant=variant.name, variant_settings=dataclasses.asdict(variant),
             config=cfg.to_dict(), weights_of=twin)
    runstate.write_json(os.path.join(out, "done.json"), d)
    progress.log(f"train: {args.task}/{variant.name}/seed{args.seed}: the weights of "
                 f"{tdir} (its fuzzy rule cannot bind at p={variant.keep_ratio}: the same "
                 f"training; --train-shared trains it anyway) -> {os.path.join(out, 'best')}")
    return True


def run(args) -> int:
    torch.set_num_threads(args.threads)
    task = tasks.TASKS[args.task]
    variant = tasks.VARIANTS[args.variant]
    out = args.out
    os.makedirs(out, exist_ok=True)
    done_path = os.path.join(out, "done.json")
    # What the run starts from is part of what it is: a run finished or
    # half-done from another encoder (a re-pretrained cache, another
    # --encoder) is not this run.
    encoder_sha = archive.encoder_sha256(args.encoder)
    recipe = {"epochs": args.epochs, "lr": args.lr}
    if os.path.isfile(done_path) and not args.force:
        done = runstate.read_json(done_path)
        theirs = done.get("encoder_sha256", encoder_sha)
        if theirs != encoder_sha:
            raise SystemExit(f"train: {out} was trained from encoder {str(theirs)[:12]}, "
                             f"not {str(encoder_sha)[:12]} ('{args.encoder}'); "
                             f"--force to train it again")
        # Nor is a run of another recipe this one (a task's recipe changed,
        # or other options): skipping it would pass its numbers off as these.
        other = recipe_difference(done, recipe)
        if other:
            raise SystemExit(f"train: {out} was trained with {other}; "
                             f"--force to train it again")
        progress.log(f"train: {out} is finished (done.json); --force to train again")
        return 0
    if args.force:
        for name in ("state.pt", "done.json", "history.json"):
            if os.path.exists(os.path.join(out, name)):
                os.remove(os.path.join(out, name))

    vocab = ref_checkpoint.read_vocab(args.vocab)
    _, cls_id, sep_id, _ = batching.special_ids(vocab)
    shape, cfg = build_config(args, task, variant, len(vocab))
    twin = "" if args.train_shared else same_training_as(variant, cfg.window_len)
    if twin and share_weights(args, out, twin, cfg, vocab, encoder_sha, recipe):
        return 0
    width = cfg.window_len - 2
    store = TokenStore.load(os.path.join(paths.data_dir(task.corpus, args.data_root), "tokens.npz"))
    manifests = splits.read_all(args.splits_dir, task.corpus)
    train_rows = limited_rows(manifests["train"], args.max_train_docs, args.seed)
    val_rows = limited_rows(manifests["validation"], args.max_val_docs, args.seed)
    train_w, train_y, _ = task_windows(store, train_rows, task, width, task.train_windows)
    val_w, val_y, _ = task_windows(store, val_rows, task, width, task.train_windows)

    encoder = None
    if args.encoder:
        encoder = ref_checkpoint.load_state(os.path.join(args.encoder, "pytorch_model.bin"))
    model = classifier_from_encoder(cfg, encoder, args.seed)
    model.train()
    decay = [p for n, p in model.named_parameters() if not (n.endswith("bias") or "LayerNorm" in n or ".ln_" in n)]
    no_decay = [p for n, p in model.named_parameters() if n.endswith("bias") or "LayerNorm" in n or ".ln_" in n]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=args.lr,
                            foreach=True)
    steps_per_epoch = -(-len(train_w) // args.batch_size)
    max_steps = args.epochs * steps_per_epoch
    budget = runstate.Budget(max_steps, args.max_minutes,
                             clock=runstate.compute_clock(torch.get_num_threads()))
    step, epoch, cursor = 0, 0, 0
    best = {"val_loss": float("inf")}
    history = {"step": [], "loss": [], "val_step": [], "val_loss": [], "val_acc": []}

    state_path = os.path.join(out, "state.pt")
    st = runstate.load_state(state_path)
    if st is not None:
        if st["config"] != cfg.to_dict():
            raise SystemExit(f"train: '{state_path}' belongs to another configuration; "
                             f"use --force to start over")
        if st.get("encoder_sha256", encoder_sha) != encoder_sha:
            raise SystemExit(f"train: '{state_path}' started from another encoder "
                             f"({str(st['encoder_sha256'])[:12]}); use --force to start over")
        other = recipe_difference(st.get("recipe", {}), recipe)
        if other:
            raise SystemExit(f"train: '{state_path}' started with {other}; "
                             f"use --force to start over")
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["optimizer"])
        step, epoch, cursor = st["step"], st["epoch"], st["cursor"]
        history, best = st["history"], st["best"]
        budget.restore(st)
        runstate.set_rng_state(st["rng"])
        progress.log(f"train: resuming {out} at step {step} (epoch {epoch})")
    else:
        random.seed(args.seed)
        np.random.seed(args.seed)

    progress.log(f"train: {task.name}/{variant.name}/seed{args.seed}: "
                 f"{len(train_rows)} documents -> {len(train_w)} windows "
                 f"({task.train_windows}), validation {len(val_w)} windows; "
                 f"{shape.layers}x{shape.hidden}, {parameter_count(model) / 1e6:.1f}M "
                 f"parameters, p={cfg.keep_ratio} fuzzy={cfg.fuzzy}/{cfg.fuzzy_mode} "
                 f"P={cfg.combine_layer}; {args.epochs} epochs = {max_steps} steps, "
                 f"budget {args.max_minutes or '-'} min")

    def save_state():
        runstate.save_state(state_path, {
            "model": model.state_dict(), "optimizer": opt.state_dict(), "step": step,
            "epoch": epoch, "cursor": cursor, "history": history, "best": best,
            "recipe": recipe,
            **budget.state(), "rng": runstate.rng_state(), "config": cfg.to_dict(),
            "encoder_sha256": encoder_sha})

    def validate():
        vl, va = evaluate(model, val_w, val_y, args.eval_batch_size, cls_id, sep_id)
        history["val_step"].append(step)
        history["val_loss"].append(vl)
        history["val_acc"].append(va)
        if vl < best["val_loss"]:
            best.update(val_loss=vl, val_acc=va, step=step, epoch=epoch)
            tmp = os.path.join(out, "best.tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            ref_checkpoint.save_checkpoint(tmp, cfg, {k: v.detach().clone() for k, v in
                                                      model.state_dict().items()}, vocab)
            shutil.rmtree(os.path.join(out, "best"), ignore_errors=True)
            os.replace(tmp, os.path.join(out, "best"))
        plot()
        return vl, va

    def plot():
        plots.loss_curve(os.path.join(out, "loss.png"),
                         f"{task.name} / {variant.name} / seed {args.seed}",
                         history["step"], history["loss"], history["val_step"],
                         history["val_loss"])

    lengths = [len(w) for w in train_w]
    cpu0, wall0 = runstate.cpu_seconds(), time.monotonic()
    steps0 = step
    last_save = budget.elapsed
    pb = progress.bar(total=max_steps, initial=step, desc=f"train {task.name}/{variant.name}",
                      unit="step")
    budget.start()
    batches, batches_epoch = None, None
    while not budget.done(step):
        if batches_epoch != epoch:
            batches = batching.bucketed_batches(lengths, args.batch_size,
                                                random.Random(args.seed * 1000 + epoch))
            batches_epoch = epoch
        if cursor >= len(batches):
            epoch, cursor = epoch + 1, 0
            vl, va = validate()
            pb.write(f"train: epoch {epoch}: validation loss {vl:.4f}, accuracy {va:.4f}")
            save_state()
            budget.tick()
            continue
        idx = batches[cursor]
        ids, mask = batching.pad_windows([train_w[i] for i in idx], cls_id, sep_id)
        y = torch.tensor([train_y[i] for i in idx])
        loss = F.cross_entropy(model(ids, mask), y)
        train_step(model, opt, loss, args.lr * lr_factor(budget.progress(step), args.warmup))
        step += 1
        cursor += 1
        history["step"].append(step)
        history["loss"].append(float(loss))
        budget.tick()
        budget.replan(step)
        pb.update()
        pb.set_postfix_str(f"loss {float(loss):.3f} ep {epoch} {seconds(budget.elapsed)}",
                           refresh=False)
        if args.eval_every and step % args.eval_every == 0:
            vl, va = validate()
            pb.write(f"train: step {step}: validation loss {vl:.4f}, accuracy {va:.4f}")
            budget.tick()
        if budget.elapsed - last_save >= args.checkpoint_minutes * 60:
            save_state()
            last_save = budget.elapsed
            budget.tick()
    pb.close()
    if not history["val_step"] or history["val_step"][-1] != step:
        validate()
        budget.tick()
    save_state()
    runstate.write_json(os.path.join(out, "history.json"), history)
    summary = {
        "task": task.name, "variant": variant.name, "seed": args.seed,
        "variant_settings": dataclasses.asdict(variant), "config": cfg.to_dict(),
        "encoder": args.encoder, "encoder_sha256": encoder_sha,
        "train_documents": len(train_rows),
        "train_windows": len(train_w), "validation_windows": len(val_w),
        "steps": step, "planned_steps": budget.planned_steps, "max_steps": max_steps,
        "epochs_done": epoch + cursor / max(1, steps_per_epoch),
        "training_seconds": budget.elapsed,
        "seconds_per_step_this_session": (time.monotonic() - wall0) / max(1, step - steps0),
        "cpu_seconds_this_session": runstate.cpu_seconds() - cpu0,
        "best": best, "lr": args.lr, "epochs": args.epochs, "batch_size": args.batch_size,
        "options": training_options(args), "parameters": parameter_count(model)}
    runstate.write_json(done_path, summary)
    progress.log(f"train: {task.name}/{variant.name}/seed{args.seed}: {step} steps in "
                 f"{seconds(budget.elapsed)}; best validation loss {best['val_loss']:.4f} "
                 f"(accuracy {best.get('val_acc', 0):.4f}, step {best.get('step')}) -> "
                 f"{os.path.join(out, 'best')}")
    return 0
