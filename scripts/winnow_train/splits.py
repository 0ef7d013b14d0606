"""Seeded, stratified train/validation/test splits and their committed
manifests (scripts/splits/<corpus>/<split>.txt: one "id<TAB>label" line per
document, sorted by id). Standard library only.

The manifests are the contract: every number in docs/results.md is computed
on exactly these documents, and no test document is ever trained on
(pretraining included). prepare_data.py writes them once, from the seed; it
afterwards checks that the prepared corpus still matches them (same ids,
same text digests in stats.json) instead of splitting again.
"""

import hashlib
import json
import os
import random
from collections import Counter, OrderedDict
from typing import Dict, List, Tuple

SPLITS = ("train", "validation", "test")


def stratified_split(labels: Dict[str, str], seed: int, test_frac: float = 0.2,
                     val_frac: float = 0.2) -> Dict[str, List[str]]:
    """{split: sorted ids}. Per label: test_frac of the documents go to
    test, then val_frac of the rest to validation (PAPER.md 7: 20% of train
    held out), the rest to train. Every label with at least 3 documents has
    one in each split. The draw depends only on the seed and the (id, label)
    pairs, not on their order."""
    rng = random.Random(seed)
    out = {s: [] for s in SPLITS}
    by_label: Dict[str, List[str]] = {}
    for doc_id, label in labels.items():
        by_label.setdefault(label, []).append(doc_id)
    for label in sorted(by_label):
        ids = sorted(by_label[label])
        rng.shuffle(ids)
        n = len(ids)
        n_test = max(1, round(n * test_frac)) if n >= 3 else 0
        rest = n - n_test
        n_val = max(1, round(rest * val_frac)) if rest >= 2 else 0
        out["test"] += ids[:n_test]
        out["validation"] += ids[n_test:n_test + n_val]
        out["train"] += ids[n_test + n_val:]
    return {s: sorted(v) for s, v in out.items()}


def manifest_path(splits_dir: str, corpus: str, split: str) -> str:
    return os.path.join(splits_dir, corpus, f"{split}.txt")


def write_manifests(splits_dir: str, corpus: str, split_ids: Dict[str, List[str]],
                    labels: Dict[str, str], digests: Dict[str, str], info: dict) -> None:
    os.makedirs(os.path.join(splits_dir, corpus), exist_ok=True)
    for split in SPLITS:
        with open(manifest_path(splits_dir, corpus, split), "w", encoding="utf-8") as f:
            for doc_id in split_ids[split]:
                f.write(f"{doc_id}\t{labels[doc_id]}\n")
    stats = OrderedDict(info)
    stats["splits"] = split_stats(split_ids, labels, digests)
    with open(os.path.join(splits_dir, corpus, "stats.json"), "w", encoding="utf-8") as f:
        json.dump(stats, f, indent=2)
        f.write("\n")


def split_stats(split_ids, labels, digests) -> dict:
    """Per split: document count, count per label and the sha256 of the
    documents' text digests in id order (one value that changes if any
    document's text does)."""
    out = OrderedDict()
    for split in SPLITS:
        ids = split_ids[split]
        h = hashlib.sha256()
        for doc_id in ids:
            h.update(f"{doc_id}\t{digests[doc_id]}\n".encode())
        out[split] = OrderedDict(
            documents=len(ids),
            per_label=OrderedDict(sorted(Counter(labels[i] for i in ids).items())),
            text_sha256=h.hexdigest())
    return out


def read_manifest(splits_dir: str, corpus: str, split: str) -> List[Tuple[str, str]]:
    """[(id, label)] of one split; FileNotFoundError if not written yet."""
    rows = []
    with open(manifest_path(splits_dir, corpus, split), encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if line:
                doc_id, label = line.split("\t")
                rows.append((doc_id, label))
    return rows


def read_all(splits_dir: str, corpus: str) -> Dict[str, List[Tuple[str, str]]]:
    return {s: read_manifest(splits_dir, corpus, s) for s in SPLITS}


def have_manifests(splits_dir: str, corpus: str) -> bool:
    return all(os.path.isfile(manifest_path(splits_dir, corpus, s)) for s in SPLITS)


def check_against(splits_dir: str, corpus: str, labels: Dict[str, str],
                  digests: Dict[str, str]) -> List[str]:
    """Problems between the committed manifests and a freshly prepared
    corpus (an empty list when they agree)."""
    problems = []
    manifests = read_all(splits_dir, corpus)
    seen = set()
    for split, rows in manifests.items():
        for doc_id, label in rows:
            if doc_id in seen:
                problems.append(f"'{doc_id}' is in two splits")
            seen.add(doc_id)
            if doc_id not in labels:
                problems.append(f"{split}: '{doc_id}' is not in the prepared corpus")
            elif labels[doc_id] != label:
                problems.append(f"{split}: '{doc_id}' is '{labels[doc_id]}', manifest says '{label}'")
    extra = set(labels) - seen
    if extra:
        problems.append(f"{len(extra)} prepared documents are in no split, e.g. '{sorted(extra)[0]}'")
    stats_path = os.path.join(splits_dir, corpus, "stats.json")
    if not problems and os.path.isfile(stats_path):
        with open(stats_path, encoding="utf-8") as f:
            want = json.load(f)["splits"]
        got = split_stats({s: [i for i, _ in r] for s, r in manifests.items()}, labels, digests)
        for split in SPLITS:
            if want[split]["text_sha256"] != got[split]["text_sha256"]:
                problems.append(f"{split}: the documents' text differs from when the "
                                f"manifest was written (text_sha256)")
    return problems
