"""Evaluation of trained runs through the C engine (scripts/evaluate.py's
work), and the results page.

Per run (task, variant, seed): export best/ to model.wnn (f32), classify
every test document with `winnow classify --trace` (the engine's own
tokenizer and windows, PAPER.md 6), score the labels, and check the engine
against the PyTorch reference on the first documents (same label; the
largest difference of the document probabilities; for any document apart
by more than PAPER.md 8's 1e-4, the tokens entering each layer in both,
which show a flipped pruning decision). Results go to the run's
eval.json and to the archive (docs/results/runs/TASK/VARIANT/seedS.json,
committed); the aggregate (mean and standard deviation over seeds) to
results.json, docs/results.md and its plots.

The table is built from the archive as well as from the runs on this
machine: a run trained and evaluated in an earlier session (its checkpoint
long gone) still counts with its accuracy and F1, and with its speed-up.
Throughput is only comparable side by side, so each run's is measured in
turn with a speed reference, round after round (measure_speed): the task's
plain BERT as fine-tuning starts it, made from the pretrained encoder at
once whenever it is needed. Its compute is a fine-tuned BERT's (nothing in
the engine depends on the weights' values), so the ratio of the two is a
speed-up over BERT that needs neither BERT's checkpoint nor the same
session; the table's bert row, measured against it like every other run,
shows the two agree. The ratio is archived with the run.
"""

import datetime
import json
import os
import platform
import random
import re
import statistics
import sys
from collections import OrderedDict
from typing import Dict, List, Optional, Tuple

from . import engine, metrics, paths, progress, runstate, splits, tasks
from .archive import archive_encoder_conflict, archive_path, encoder_of, encoder_sha256
from .finetune import run_dir, save_untrained
from .tokens import TokenStore

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from winnow_ref import checkpoint as ref_checkpoint  # noqa: E402
from winnow_ref import export as ref_export  # noqa: E402
from winnow_ref.config import WinnowConfig  # noqa: E402


def load_docs(data_root: str, corpus: str) -> Dict[str, str]:
    out = {}
    with open(os.path.join(paths.data_dir(corpus, data_root), "docs.jsonl"), encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            out[d["id"]] = d["text"]
    return out


def export_run(rdir: str, name: str, version: str, dtype: str = "f32") -> str:
    """RUN/model.wnn from RUN/best (again when best/ is newer)."""
    best = os.path.join(rdir, "best")
    out = os.path.join(rdir, "model.wnn" if dtype == "f32" else f"model-{dtype}.wnn")
    weights = os.path.join(best, "pytorch_model.bin")
    if os.path.isfile(out) and os.path.getmtime(out) >= os.path.getmtime(weights):
        return out
    ckpt = ref_checkpoint.load_checkpoint(best)
    ref_export.export_checkpoint(ckpt, out + ".tmp", name=name, version=version, dtype=dtype)
    os.replace(out + ".tmp", out)
    return out


# PAPER.md 8: logits agree within 1e-4 wherever the kept sets agree, so a
# larger difference means (almost always) a pruning decision that flipped.
APART = 1e-4
APART_SHOWN = 5


def torch_check(rdir: str, store: TokenStore, ids: List[str], records: Dict[str, dict],
                task: tasks.Task, winnow: str, model_file: str,
                paths_of: Dict[str, str]) -> dict:
    """The reference model on the same documents: label agreement with the
    engine and the largest probability difference. Documents further apart
    than APART are explained: the tokens entering each layer, engine
    against reference (the engine rerun on that document alone with
    --trace), and the first layer where they differ."""
    import torch
    from winnow_ref import document as ref_document
    ckpt = ref_checkpoint.load_checkpoint(os.path.join(rdir, "best"))
    model = ref_checkpoint.build_model(ckpt.config, ckpt.state)
    vocab = {t: i for i, t in enumerate(ckpt.vocab)}
    agree, max_diff, n, apart = 0, 0.0, 0, []
    torch.set_num_threads(os.cpu_count() or 2)
    for doc_id in ids:
        rec = records.get(doc_id)
        if rec is None:
            continue
        res = ref_document.classify_document(model, store.get(doc_id).tolist(),
                                             vocab["[CLS]"], vocab["[SEP]"])
        n += 1
        agree += int(task.labels[res.label] == rec["label"])
        diff = max(abs(res.probs[k] - rec["scores"][name]) for k, name in enumerate(task.labels))
        max_diff = max(max_diff, diff)
        if diff > APART:
            apart.append((diff, doc_id, res.kept))
    out = {"documents": n, "same_label": agree, "max_prob_diff": max_diff,
           "apart": len(apart), "apart_documents": []}
    for diff, doc_id, ref_kept in sorted(apart, key=lambda a: (-a[0], a[1]))[:APART_SHOWN]:
        out["apart_documents"].append(
            explain_apart(doc_id, diff, ref_kept, winnow, model_file, paths_of[doc_id]))
    return out


def explain_apart(doc_id: str, diff: float, ref_kept: List[int], winnow: str,
                  model_file: str, path: str) -> dict:
    """One document the engine and the reference disagree on: |K_l| summed
    over its windows from both, l = 0..P."""
    trace = engine.classify(winnow, model_file, [path], trace=True).trace
    # K_l enters layer l; K_L, when the last layer prunes, is what it keeps.
    engine_kept = ([t.tokens_in for t in trace] + [trace[-1].tokens_kept])[:len(ref_kept)]
    # The first layer entered by other counts: the one after the flip.
    first = next((l for l, (a, b) in enumerate(zip(engine_kept, ref_kept)) if a != b), None)
    return {"document": doc_id, "max_prob_diff": diff, "engine_kept": engine_kept,
            "reference_kept": ref_kept, "first_layer_apart": first}


def evaluate_run(args, task: tasks.Task, variant: str, seed: int, files: Dict[str, str],
                 labels: Dict[str, str], store: TokenStore) -> Optional[dict]:
    rdir = run_dir(args.runs, task.name, variant, seed)
    # Finished runs only: a run still training (or killed) has a best/ of
    # its steps so far, not of its recipe, and no provenance yet.
    if not (os.path.isfile(os.path.join(rdir, "done.json")) and
            os.path.isfile(os.path.join(rdir, "best", "pytorch_model.bin"))):
        return None
    model = export_run(rdir, f"{task.name}-{variant}", f"seed{seed}")
    env = dict(os.environ)
    run = engine.classify(args.winnow, model, list(files), batch=args.batch, env=env)
    by_id = {files[p]: rec for p, rec in run.records.items()}
    index = {name: i for i, name in enumerate(task.labels)}
    ids = [i for i in sorted(labels) if i in by_id]
    y_true = [index[task.label_of(labels[i])] for i in ids]
    y_pred = [index[by_id[i]["label"]] for i in ids]
    result = OrderedDict(task=task.name, variant=variant, seed=seed, model=model,
                         documents=len(labels), classified=len(ids),
                         engine_errors=run.errors[:10],
                         training=training_provenance(rdir))
    result.update(metrics.scores(y_true, y_pred, len(task.labels)))
    tokens_total = sum(by_id[i]["tokens"] for i in ids)
    windows_total = sum(by_id[i]["chunks"] for i in ids)
    result.update(seconds=run.seconds, docs_per_second=len(ids) / run.seconds,
                  tokens_per_second=tokens_total / run.seconds, windows=windows_total,
                  load_average=os.getloadavg()[0])
    # Layers after the combining module run on its m tokens only (the
    # trace counts them as m per window).
    cfg = WinnowConfig.from_json_file(os.path.join(rdir, "best", "config.json"))
    result["layers"] = []
    for t in run.trace:
        after = cfg.has_combiner and t.layer > cfg.combine_layer
        result["layers"].append(dict(
            layer=t.layer, tokens_in_per_window=t.tokens_in / max(1, t.windows),
            kept_per_window=t.tokens_kept / max(1, t.windows),
            protected=t.protected, spared=t.spared, ms=t.ms, combining=t.combining,
            combined_tokens_only=after))
    if args.torch_check:
        # Spread over the sorted ids, so that every class is in the sample.
        step = max(1, len(ids) // args.torch_check)
        result["torch_check"] = torch_check(rdir, store, ids[::step][:args.torch_check],
                                            by_id, task, args.winnow, model,
                                            {i: p for p, i in files.items()})
    runstate.write_json(os.path.join(rdir, "eval.json"), result)
    archive_result(args, result)
    return result


def training_provenance(rdir: str) -> dict:
    """How a run was trained, from its done.json: steps, time, best epoch,
    and the sha256 of the pretrained encoder it started from."""
    done = os.path.join(rdir, "done.json")
    if not os.path.isfile(done):
        return {}
    d = runstate.read_json(done)
    out = {k: d[k] for k in ("steps", "planned_steps", "max_steps", "epochs_done",
                             "training_seconds",
                             "best", "lr", "batch_size", "weights_of") if k in d}
    # Recorded at training since 2026-12-04; before, the encoder's file as
    # it is now (the same bytes while the cache it lives in is).
    sha = d.get("encoder_sha256") or encoder_sha256(d.get("encoder"))
    if sha:
        out["encoder_sha256"] = sha
    history = os.path.join(rdir, "history.json")
    if os.path.isfile(history):
        out["curve"] = loss_curve_summary(runstate.read_json(history))
    return out


def loss_curve_summary(history: dict) -> dict:
    """The run's loss curve, small enough for the archive (its loss.png
    lives in the cache, which a new machine does not have): every
    validation point, and the mean training loss of the steps up to each
    of them. scripts/plot_run.py draws it again."""
    steps, losses = history.get("step", []), history.get("loss", [])
    train, i = [], 0
    for v in history.get("val_step", []):
        block = []
        while i < len(steps) and steps[i] <= v:
            block.append(losses[i])
            i += 1
        train.append(round(sum(block) / len(block), 4) if block else None)
    return OrderedDict(
        val_step=list(history.get("val_step", [])),
        val_loss=[round(x, 4) for x in history.get("val_loss", [])],
        val_acc=[round(x, 4) for x in history.get("val_acc", [])],
        train_loss=train)


def cut_by_time(result: dict) -> bool:
    """Whether the run's time budget cut its epochs short (runs trained
    before done.json recorded max_steps cannot say, and count as not)."""
    t = result.get("training", {})
    return "max_steps" in t and t.get("steps", 0) < t["max_steps"]


def check_one_encoder(results: List[dict]) -> Optional[str]:
    """Runs fine-tuned from different pretrained encoders do not belong in
    one table: their differences would be the encoders', not the
    variants'. An error naming a run of each, or None."""
    first = {}
    for r in results:
        first.setdefault(encoder_of(r), r)
    if len(first) <= 1:
        return None
    named = [f"{r['task']}/{r['variant']}/seed{r['seed']} (encoder {enc[:12]})"
             for enc, r in first.items()]
    return ("runs from different pretrained encoders cannot share one table: "
            + ", ".join(named)
            + "; evaluate them apart (--archive, --runs) or retrain from one encoder")


def archive_result(args, result: dict) -> None:
    """A copy of a run's numbers in the committed archive, with what it was
    trained from, and no path of this machine in it."""
    if not args.archive:
        return
    conflict = archive_encoder_conflict(args.archive, encoder_of(result))
    if conflict:
        progress.log(f"evaluate: {result['task']}/{result['variant']}/seed{result['seed']} "
                     f"not archived: {conflict}")
        return
    entry = OrderedDict((k, v) for k, v in result.items() if k != "model")
    entry["evaluated"] = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    entry["machine"] = f"{cpu_model()}, {os.cpu_count()} cores"
    path = archive_path(args.archive, result["task"], result["variant"], result["seed"])
    os.makedirs(os.path.dirname(path), exist_ok=True)
    runstate.write_json(path, entry)


def reuse_archived(args, task: str, variant: str, seed: int) -> Optional[dict]:
    """--reuse-archive: a run's archived numbers instead of evaluating it
    again; with the model path when its export is on this machine, so that
    its speed can still be measured side by side. None if not archived."""
    path = archive_path(args.archive, task, variant, seed) if args.archive else None
    if not path or not os.path.isfile(path):
        return None
    r = runstate.read_json(path)
    model = os.path.join(run_dir(args.runs, task, variant, seed), "model.wnn")
    if os.path.isfile(model):
        r["model"] = model
    return r


def archived_results(args, have) -> List[dict]:
    """Archived runs of the selection that this invocation did not evaluate."""
    out = []
    if not args.archive:
        return out
    for tname in args.tasks:
        for v in args.variants:
            for s in args.seeds:
                path = archive_path(args.archive, tname, v, s)
                if (tname, v, s) in have or not os.path.isfile(path):
                    continue
                out.append(runstate.read_json(path))
    return out


# The speed reference's run directory under RUNS/TASK/ (not a variant).
SPEED_REFERENCE = "speed-reference"


def speed_reference(args, task: tasks.Task, sha: str) -> Optional[str]:
    """RUNS/TASK/speed-reference/model.wnn, made if it is not there: the
    task's bert as fine-tuning starts it, from --encoder, which must be the
    runs' own encoder (sha) for the reference to be their BERT. None, with
    a message, if it cannot be."""
    if not args.encoder or encoder_sha256(args.encoder) != sha:
        progress.log(f"evaluate: {task.name}: no speed reference: the runs' encoder "
                     f"{sha[:12]} is not '{args.encoder}' (--encoder); speed-ups are "
                     f"taken against bert runs measured in the same rounds, if any")
        return None
    rdir = os.path.join(args.runs, task.name, SPEED_REFERENCE)
    done = os.path.join(rdir, "done.json")
    if not (os.path.isfile(done) and runstate.read_json(done).get("encoder_sha256") == sha):
        import train  # scripts/train.py: the training run's own settings
        targs = train.parse_args(["--task", task.name, "--variant", "bert", "--seed", "1",
                                  "--encoder", args.encoder, "--runs", args.runs,
                                  "--data-root", args.data_root,
                                  "--splits-dir", args.splits_dir])
        os.makedirs(rdir, exist_ok=True)
        save_untrained(targs, rdir)
    return export_run(rdir, f"{task.name}-{SPEED_REFERENCE}", "untrained")


def measure_speed(args, results: List[dict], files: Dict[str, str],
                  reference: Optional[str]) -> None:
    """The engine's throughput, side by side: `winnow classify` (no trace,
    same batch and threads) of every evaluated model and of the speed
    reference over the same test files, interleaved model by model for
    --speed-repeats rounds, so that the machine's load falls on all alike.
    Each run's speed (documents / median seconds, the rounds, the speed-up
    over the reference, or else over a bert run of its seed measured with
    it) goes to its eval.json and its archive entry."""
    if args.speed_repeats <= 0 or not results:
        return
    doc_paths = list(files)
    models = [r["model"] for r in results] + ([reference] if reference else [])
    rounds = {m: [] for m in models}
    stamp = {"from": utc_now()}
    with progress.bar(total=args.speed_repeats * len(models), desc="speed", unit="run") as pb:
        for _ in range(args.speed_repeats):
            for m in models:
                rounds[m].append(engine.classify(args.winnow, m, doc_paths, batch=args.batch,
                                                 trace=False).seconds)
                pb.update()
    stamp.update(to=utc_now(), engine=engine.source_version(paths.ROOT),
                 machine=f"{cpu_model()}, {os.cpu_count()} cores",
                 load_average=os.getloadavg()[0])
    median = {m: statistics.median(t) for m, t in rounds.items()}
    bert = {r["seed"]: r["model"] for r in results if r["variant"] == "bert"}
    for r in results:
        m = r["model"]
        base, against = ((reference, "speed reference") if reference else
                         (bert.get(r["seed"]), f"bert seed {r['seed']}"))
        speed = OrderedDict(docs_per_second=r["classified"] / median[m],
                            tokens_per_second=r["tokens_per_second"] * r["seconds"] / median[m],
                            speed_up=median[base] / median[m] if base else None,
                            against=against if base else None,
                            seconds=rounds[m], against_seconds=rounds[base] if base else None,
                            **stamp)
        r.update(speed=speed, docs_per_second=speed["docs_per_second"],
                 tokens_per_second=speed["tokens_per_second"])
        runstate.write_json(os.path.join(os.path.dirname(m), "eval.json"), r)
        archive_speed(args, r)


def archive_speed(args, result: dict) -> None:
    """A new speed measurement of an archived run joins its entry."""
    path = (archive_path(args.archive, result["task"], result["variant"], result["seed"])
            if args.archive else None)
    if not path or not os.path.isfile(path):
        return
    entry = runstate.read_json(path)
    if encoder_of(entry) == encoder_of(result):
        entry["speed"] = result["speed"]
        runstate.write_json(path, entry)


def _snippet(data: bytes, start: int, end: int, around: int = 40) -> str:
    """The token at data[start:end] in bold with `around` bytes either side,
    on one line, markdown-safe."""
    def clean(b: bytes) -> str:
        text = re.sub(r"\s+", " ", b.decode("utf-8", errors="replace"))
        return re.sub(r"([\\`*_\[\]<>|#])", r"\\\1", text)
    lo, hi = max(0, start - around), min(len(data), end + around)
    return (("…" if lo else "") + clean(data[lo:start]).lstrip() + "**"
            + clean(data[start:end]).strip() + "**" + clean(data[end:hi]).rstrip()
            + ("…" if hi < len(data) else ""))


def explanations(args, task: tasks.Task, files: Dict[str, str], labels: Dict[str, str],
                 model: str, per_class: int = 3, top_k: int = 5) -> List[str]:
    """Markdown: the retained tokens (PAPER.md 5) of a few test documents of
    each class, each in the text around it. Documents are a seeded sample of
    those under 3 KB, so that a reader can check the explanation against
    the whole mail."""
    by_id = {doc_id: path for path, doc_id in files.items()}
    rng = random.Random(7)
    chosen = []
    for label in task.labels:
        pool = sorted(i for i, lab in labels.items() if task.label_of(lab) == label
                      and os.path.getsize(by_id[i]) < 3000)
        chosen += rng.sample(pool, min(per_class, len(pool)))
    run = engine.classify(args.winnow, model, [by_id[i] for i in chosen], batch=args.batch,
                          trace=False, top_k=top_k)
    lines = []
    for doc_id in chosen:
        rec = run.records.get(by_id[doc_id])
        if rec is None:
            continue
        with open(by_id[doc_id], "rb") as f:
            data = f.read()
        truth = task.label_of(labels[doc_id])
        lines += [f"**{doc_id}** (true label {truth}; winnow: {rec['label']}, confidence "
                  f"{rec['confidence']:.3f}, {rec['tokens']} tokens)", ""]
        for r in rec["retained"]:
            lines.append(f"- `{r['token']}` ({r['score']:.3f}): "
                         f"{_snippet(data, r['start'], r['end'])}")
        lines.append("")
    return lines


def aggregate(results: List[dict]) -> List[dict]:
    """Mean and std over seeds per (task, variant)."""
    groups = OrderedDict()
    for r in results:
        groups.setdefault((r["task"], r["variant"]), []).append(r)
    out = []
    for (task, variant), rs in groups.items():
        row = OrderedDict(task=task, variant=variant, seeds=[r["seed"] for r in rs])
        for key in ("accuracy", "macro_f1", "micro_f1"):
            row[key], row[key + "_std"] = metrics.mean_std([r[key] for r in rs])
        # Speed from every run measured side by side, in this invocation or
        # an earlier one (archived with the run): a speed-up is a ratio of
        # one measurement, docs/s only compare within one.
        timed = [r for r in rs if r.get("speed")]
        for key in ("docs_per_second", "tokens_per_second"):
            row[key], row[key + "_std"] = metrics.mean_std([r["speed"][key] for r in timed])
        ups = [r for r in timed if r["speed"].get("speed_up")]
        row["speed_up"], row["speed_up_std"] = metrics.mean_std(
            [r["speed"]["speed_up"] for r in ups])
        row["speed_seeds"] = [r["seed"] for r in ups]
        row["speed_measurements"] = [r["speed"] for r in timed]
        row["cut"] = [f"seed {r['seed']}: {r['training']['steps']} of "
                      f"{r['training']['max_steps']} steps" for r in rs if cut_by_time(r)]
        row["shared"] = [(r["seed"], r["training"]["weights_of"]) for r in rs
                         if r.get("training", {}).get("weights_of")]
        n_layers = len(rs[0]["layers"])
        row["tokens_in_per_window"] = [
            sum(r["layers"][l]["tokens_in_per_window"] for r in rs) / len(rs) for l in range(n_layers)]
        row["combining_layer"] = next((x["layer"] for x in rs[0]["layers"] if x["combining"]), None)
        checks = [r["torch_check"] for r in rs if "torch_check" in r]
        if checks:
            row["torch_same_label"] = sum(c["same_label"] for c in checks)
            row["torch_documents"] = sum(c["documents"] for c in checks)
            row["torch_max_prob_diff"] = max(c["max_prob_diff"] for c in checks)
            # Entries archived before the check explained its outliers have
            # no "apart": none apart when even the largest difference is not.
            apart = [c.get("apart", 0 if c["max_prob_diff"] <= APART else None) for c in checks]
            if None not in apart:
                row["torch_apart"] = sum(apart)
                row["torch_apart_documents"] = [(r["seed"], d) for r in rs if "torch_check" in r
                                                for d in r["torch_check"].get("apart_documents", [])]
                row["torch_apart_layers"] = sorted({d["first_layer_apart"]
                                                    for _, d in row["torch_apart_documents"]
                                                    if d["first_layer_apart"] is not None})
        row["documents"] = rs[0]["classified"]
        out.append(row)
    return out


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")


def fmt(mean, std, pct=True):
    if mean != mean:  # NaN
        return "-"
    if pct:
        return f"{100 * mean:.2f} ± {100 * std:.2f}"
    return f"{mean:.1f} ± {std:.1f}"


def write_plots(rows: List[dict], out_dir: str, prefix: str) -> List[str]:
    """Accuracy per variant (with std) and tokens per layer, one panel per
    task; returns the files written."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    task_names = list(OrderedDict((r["task"], None) for r in rows))
    written = []
    fig, axes = plt.subplots(1, len(task_names), figsize=(5.5 * len(task_names), 4.2),
                             dpi=110, squeeze=False)
    for ax, t in zip(axes[0], task_names):
        rs = [r for r in rows if r["task"] == t]
        xs = range(len(rs))
        ax.bar(xs, [100 * r["accuracy"] for r in rs],
               yerr=[100 * r["accuracy_std"] for r in rs], capsize=3, color="tab:blue")
        lo = min(100 * r["accuracy"] - 100 * r["accuracy_std"] for r in rs)
        ax.set_ylim(max(0, lo - 3), 100)
        ax.set_xticks(list(xs))
        ax.set_xticklabels([r["variant"] for r in rs], rotation=60, ha="right", fontsize=8)
        ax.set_title(f"{t}: test accuracy (%)")
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path = os.path.join(out_dir, f"{prefix}-accuracy.png")
    fig.savefig(path)
    plt.close(fig)
    written.append(path)

    fig, axes = plt.subplots(1, len(task_names), figsize=(5.5 * len(task_names), 4.2),
                             dpi=110, squeeze=False)
    for ax, t in zip(axes[0], task_names):
        for r in [r for r in rows if r["task"] == t]:
            tok = r["tokens_in_per_window"]
            ax.plot(range(len(tok)), tok, marker="o", label=r["variant"])
        ax.set_xlabel("layer")
        ax.set_ylabel("tokens entering the layer, per window")
        ax.set_yscale("log")
        ax.set_title(f"{t}: tokens per layer (C engine)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path = os.path.join(out_dir, f"{prefix}-tokens.png")
    fig.savefig(path)
    plt.close(fig)
    written.append(path)
    return written


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def _marks(block: str) -> Tuple[str, str]:
    return (f"<!-- begin {block}: generated by scripts/evaluate.py; edits here are overwritten -->",
            f"<!-- end {block} -->")


def write_page(path: str, block: str, generated: List[str]) -> None:
    """Writes the generated lines between the page's marks of `block` and
    keeps everything around them (the hand-written reading of the numbers,
    other blocks); a block not on the page yet is appended."""
    begin, end = _marks(block)
    text = "\n".join([begin, ""] + generated + [end])
    old = "# Results\n\n"
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            old = f.read()
    if begin in old and end in old:
        new = old.split(begin, 1)[0] + text + old.split(end, 1)[1]
    else:
        new = old.rstrip("\n") + "\n\n" + text + "\n"
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        f.write(new)
    os.replace(path + ".tmp", path)


def shared_weights_note(variant: str, shared: List[Tuple[int, str]]) -> str:
    """The line under a table saying which seeds of variant are another
    variant's weights (shared: (seed, twin) pairs, from aggregate)."""
    seeds = ", ".join(str(seed) for seed, _ in shared)
    twins = " and ".join(sorted({t for _, t in shared}))
    subject = f"seeds {seeds} carry" if len(shared) > 1 else f"seed {seeds} carries"
    return (f"{variant}: {subject} {twins}'s weights: at its p the fuzzy rule "
            f"cannot bind in training (PAPER.md 2, docs/training.md), so the "
            f"training is the same to the bit; the engine ran it with the fuzzy "
            f"rule on.")


def write_markdown(path: str, rows: List[dict], plot_files: List[str], command: str,
                   pretrain: Optional[dict]) -> None:
    lines = ["Test-set results of winnow's variants, computed by `scripts/evaluate.py` "
             "through the C engine (`winnow classify --trace` on the exported `.wnn` "
             "files: the engine's own tokenizer, windows and pruning), on the committed "
             "splits (`scripts/splits/`). Mean ± standard deviation over the seeds "
             "listed; how the models were trained is in docs/training.md.", "",
             f"Generated {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')} on "
             f"{platform.node() or 'this machine'} ({cpu_model()}, {os.cpu_count()} cores) by:",
             "",
             f"    {command}", ""]
    if pretrain:
        lines += [f"Pretrained encoder: {pretrain['shape']['layers']} layers x "
                  f"{pretrain['shape']['hidden']} ({pretrain['shape']['heads']} heads), "
                  f"{pretrain['steps']} MLM steps, {pretrain['tokens_seen']:,} tokens, "
                  f"validation MLM loss {pretrain['validation_mlm_loss']:.3f}.", ""]
    for t in OrderedDict((r["task"], None) for r in rows):
        task = tasks.TASKS[t]
        rs = [r for r in rows if r["task"] == t]
        lines += [f"## {t}: {task.description} ({rs[0]['documents']} test documents)", "",
                  "| variant | seeds | accuracy % | macro-F1 % | micro-F1 % | docs/s (engine) "
                  "| speed-up | tokens per window entering layers 0..L-1 | engine = PyTorch |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in rs:
            speed = "-"
            if r["speed_seeds"]:
                speed = f"{r['speed_up']:.2f}x" + (f" ± {r['speed_up_std']:.2f}"
                                                    if len(r["speed_seeds"]) > 1 else "")
                if r["speed_seeds"] != r["seeds"]:
                    speed += f" (seed {','.join(map(str, r['speed_seeds']))})"
            tok = " / ".join(f"{x:.0f}" for x in r["tokens_in_per_window"])
            if r.get("combining_layer") is not None:
                tok += f" (layer {r['combining_layer']} combines; later layers see m tokens)"
            check = (f"{r['torch_same_label']}/{r['torch_documents']} labels, "
                     f"max Δp {r['torch_max_prob_diff']:.1e}" if "torch_documents" in r else "-")
            if r.get("torch_apart"):
                check += f"; {r['torch_apart']} apart by > {APART:g}"
                if r["torch_apart_layers"]:
                    check += (" (kept counts differ entering layer "
                              f"{'/'.join(map(str, r['torch_apart_layers']))})")
            lines.append(f"| {r['variant']} | {','.join(map(str, r['seeds']))} | "
                         f"{fmt(r['accuracy'], r['accuracy_std'])} | "
                         f"{fmt(r['macro_f1'], r['macro_f1_std'])} | "
                         f"{fmt(r['micro_f1'], r['micro_f1_std'])} | "
                         f"{fmt(r['docs_per_second'], r['docs_per_second_std'], pct=False)} | "
                         f"{speed} | {tok} | {check} |")
        lines.append("")
        for r in rs:
            if r["cut"]:
                lines += [f"{r['variant']}: its time budget cut training short "
                          f"({'; '.join(r['cut'])}): not the table's recipe.", ""]
            if r["shared"]:
                lines += [shared_weights_note(r["variant"], r["shared"]), ""]
            if r.get("torch_apart_documents"):
                docs = "; ".join(
                    f"{d['document']} (seed {seed}, Δp {d['max_prob_diff']:.1e}): "
                    f"{' / '.join(map(str, d['engine_kept']))} in the engine, "
                    f"{' / '.join(map(str, d['reference_kept']))} in PyTorch"
                    for seed, d in r["torch_apart_documents"])
                lines += [f"{r['variant']}: engine and PyTorch further apart than {APART:g} "
                          f"on {r['torch_apart']} of {r['torch_documents']} documents; the "
                          f"kept sets' sizes |K_0| .. |K_P|, summed over the windows: {docs}. "
                          f"Other sizes mean a pruning decision flipped (PAPER.md 8 allows it "
                          f"on 1% of documents).", ""]
        ms = [m for r in rs for m in r["speed_measurements"]]
        if ms:
            against = sorted({m["against"] for m in ms if m.get("against")})
            lines += [f"Speeds measured {min(m['from'] for m in ms)} to "
                      f"{max(m['to'] for m in ms)} UTC"
                      + (f" ({len(ms)} measurements)" if len(ms) > 1 else "")
                      + f", engine at {', '.join(sorted({m['engine'] for m in ms}))}, on "
                      f"{', '.join(sorted({m['machine'] for m in ms}))}; speed-up over "
                      f"{', '.join(against) or 'nothing measured with them'}.", ""]
    lines += ["Throughput: `winnow classify --batch 16` (2 threads) over the whole test "
              "set, model load, file reads and tokenization included. Each run was measured "
              "in turn with the task's speed reference, round after round, each one's "
              "median round counting (`--speed-repeats`), so that its speed-up is a "
              "side-by-side ratio even on a shared machine. The speed reference is the "
              "task's plain BERT as fine-tuning starts it (the pretrained encoder, an "
              "untrained head): the engine's work does not depend on the weights' values, "
              "so it runs at a fine-tuned BERT's speed, which the bert row (about 1.00x) "
              "checks. Speed-ups are archived with their runs (docs/results/runs/) and "
              "hold across sessions; docs/s only compare within one measurement, and are "
              "shown for orientation. "
              "Micro-F1 equals accuracy for single-label classification; it is listed "
              "because the paper reports it. The last column runs the PyTorch reference "
              "(winnow_ref) on up to 100 test documents per run (`--torch-check`, spread over "
              "the sorted ids): documents given the same label as by the engine, and the "
              "largest difference of a label's probability; PAPER.md 8 expects 1e-4 at most "
              "wherever the kept sets agree, so a document further apart is listed with "
              "both kept-set sizes.", ""]
    for p in plot_files:
        lines += [f"![{os.path.basename(p)}]({os.path.relpath(p, os.path.dirname(path))})", ""]
    write_page(path, "results", lines)


def test_files(args, task: tasks.Task) -> Tuple[Dict[str, str], Dict[str, str]]:
    """The task's test split: ({id: label}, {file path: id}), the documents
    written as files for the engine."""
    test_rows = splits.read_manifest(args.splits_dir, task.corpus, "test")
    if args.max_test_docs and args.max_test_docs < len(test_rows):
        test_rows = sorted(random.Random(0).sample(test_rows, args.max_test_docs))
    labels = dict(test_rows)
    texts = load_docs(args.data_root, task.corpus)
    files = engine.write_documents(
        os.path.join(args.workdir, task.corpus, "test"), {i: texts[i] for i in labels})
    return labels, files


def run_shipped(args) -> int:
    """--shipped FILE: the shipped model file (f16) on its task's test set,
    against the f32 export of the run it came from (same labels? largest
    probability difference?), and its explanations: the page's "shipped"
    block and RUNS/shipped.json."""
    task = tasks.TASKS[args.shipped_task]
    labels, files = test_files(args, task)
    rdir = run_dir(args.runs, task.name, args.shipped_variant, args.seeds[0])
    reference = export_run(rdir, f"{task.name}-{args.shipped_variant}", f"seed{args.seeds[0]}")
    paths_ = list(files)
    shipped = engine.classify(args.winnow, args.shipped, paths_, batch=args.batch, trace=False)
    f32 = engine.classify(args.winnow, reference, paths_, batch=args.batch, trace=False)
    ids = sorted(i for p, i in files.items() if p in shipped.records)
    by_id = {i: shipped.records[p] for p, i in files.items() if p in shipped.records}
    ref_by_id = {i: f32.records[p] for p, i in files.items() if p in f32.records}
    index = {name: k for k, name in enumerate(task.labels)}
    scores = metrics.scores([index[task.label_of(labels[i])] for i in ids],
                            [index[by_id[i]["label"]] for i in ids], len(task.labels))
    same = sum(by_id[i]["label"] == ref_by_id[i]["label"] for i in ids if i in ref_by_id)
    diff = max(abs(by_id[i]["scores"][k] - ref_by_id[i]["scores"][k])
               for i in ids if i in ref_by_id for k in task.labels)
    shown = (os.path.relpath(args.shipped, paths.ROOT)
             if args.shipped.startswith(paths.ROOT + os.sep) else args.shipped)
    summary = OrderedDict(model=shown, bytes=os.path.getsize(args.shipped), task=task.name,
                          variant=args.shipped_variant, seed=args.seeds[0], documents=len(ids),
                          same_label_as_f32=same, max_prob_diff_f32=diff, **scores)
    runstate.write_json(os.path.join(args.runs, "shipped.json"), summary)
    progress.log(f"evaluate: {shown}: accuracy {scores['accuracy']:.4f}, same label as the f32 "
                 f"export on {same}/{len(ids)}, probabilities within {diff:.1e}")
    if args.markdown:
        lines = ["## The shipped model", "",
                 f"`{shown}` ({summary['bytes'] / 1e6:.1f} MB): {task.name} "
                 f"`{args.shipped_variant}` seed {args.seeds[0]}, chosen by "
                 f"`scripts/pick_model.py` (docs/models.md). On the {len(ids)} test documents: "
                 f"accuracy {100 * scores['accuracy']:.2f}%, macro-F1 "
                 f"{100 * scores['macro_f1']:.2f}%; the same label as its f32 export on "
                 f"{same} of {len(ids)}, probabilities within {diff:.1e}.", "",
                 "### Explanations", "",
                 f"The retained tokens (PAPER.md 5: the kept tokens, scored by the attention "
                 f"they received, most important first) of a seeded sample of short test mails, "
                 f"as `winnow classify --top-k 5 --model {shown}` gives them, each shown in "
                 f"the text around its byte span.", ""]
        lines += explanations(args, task, files, labels, args.shipped)
        write_page(args.markdown, "shipped", lines)
        progress.log(f"evaluate: wrote the shipped model's section of {args.markdown}")
    return 0


def pretraining_of(sha: str, runs: str) -> Optional[dict]:
    """The pretraining summary of the table's encoder: the committed one's
    or this machine's, whichever has its bytes; None if neither."""
    for enc, summary in ((paths.ENCODER, os.path.join(paths.ENCODER, "summary.json")),
                         (os.path.join(runs, "pretrain", "encoder"),
                          os.path.join(runs, "pretrain", "summary.json"))):
        if os.path.isfile(summary) and encoder_sha256(enc) == sha:
            return runstate.read_json(summary)
    return None


def any_run(args, tname: str) -> bool:
    """Whether the selection holds a finished or archived run of the task."""
    return any(os.path.isfile(os.path.join(run_dir(args.runs, tname, v, s), "done.json")) or
               (args.archive and os.path.isfile(archive_path(args.archive, tname, v, s)))
               for v in args.variants for s in args.seeds)


def run(args) -> int:
    if args.shipped:
        return run_shipped(args)
    results = []
    for tname in args.tasks:
        task = tasks.TASKS[tname]
        if not any_run(args, tname):  # its corpus may not even be prepared here
            progress.log(f"evaluate: {tname}: no run trained or archived, left out")
            continue
        labels, files = test_files(args, task)
        store = TokenStore.load(os.path.join(paths.data_dir(task.corpus, args.data_root), "tokens.npz"))
        jobs = [(v, s) for v in args.variants for s in args.seeds]
        with progress.bar(total=len(jobs), desc=f"evaluate {tname}", unit="run") as pb:
            for v, s in jobs:
                r = reuse_archived(args, tname, v, s) if args.reuse_archive else None
                if r is not None:
                    pb.update()
                    if "model" in r:  # here too: its speed is measured below
                        results.append(r)
                    continue
                r = evaluate_run(args, task, v, s, files, labels, store)
                pb.update()
                if r is None:
                    pb.write(f"evaluate: {tname}/{v}/seed{s}: not trained (or not "
                             f"finished), left out")
                    continue
                chk = r.get("torch_check", {})
                pb.write(f"evaluate: {tname}/{v}/seed{s}: accuracy {r['accuracy']:.4f}, "
                         f"macro-F1 {r['macro_f1']:.4f}, {r['docs_per_second']:.1f} docs/s"
                         + (f", engine = PyTorch on {chk['same_label']}/{chk['documents']}"
                            if chk else ""))
                results.append(r)
        timed = [r for r in results if r["task"] == tname and "model" in r and
                 args.speed_seed in (None, r["seed"])]
        if timed and args.speed_repeats > 0:
            measure_speed(args, timed, files,
                          speed_reference(args, task, encoder_of(timed[0])))
    have = {(r["task"], r["variant"], r["seed"]) for r in results}
    results += archived_results(args, have)
    # Task, variant and seed order, whichever way each result came.
    order = {(t, v, s): k for k, (t, v, s) in enumerate(
        (t, v, s) for t in args.tasks for v in args.variants for s in args.seeds)}
    results.sort(key=lambda r: order.get((r["task"], r["variant"], r["seed"]), len(order)))
    if not results:
        progress.log("evaluate: no trained run found")
        return 1
    mixed = check_one_encoder(results)
    if mixed:
        progress.log(f"evaluate: {mixed}")
        return 1
    rows = aggregate(results)
    os.makedirs(os.path.dirname(os.path.abspath(args.results_json)), exist_ok=True)
    runstate.write_json(args.results_json, {"runs": results, "table": rows})
    pretrain = pretraining_of(encoder_of(results[0]), args.runs)
    if args.markdown:
        os.makedirs(os.path.dirname(os.path.abspath(args.markdown)), exist_ok=True)
        plot_files = write_plots(rows, os.path.dirname(os.path.abspath(args.markdown)),
                                 args.plot_prefix)
        write_markdown(args.markdown, rows, plot_files, args.command, pretrain)
        progress.log(f"evaluate: wrote {args.markdown} and {len(plot_files)} plots")
    return 0
