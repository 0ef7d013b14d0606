"""WordPiece ids of whole corpora, and their store (tokens.npz).

The C tokenizer (`winnow tokenize --vocab FILE`, bit-for-bit Hugging Face's
BertTokenizer) does the work when the binary is there: about a hundred times
faster than the Python reference (winnow_ref.tokenizer), which is the
fallback and the check. `winnow tokenize` reads one document per line; a
document's newlines become spaces on the way in, which changes no token
(a newline is whitespace to BERT's tokenizer, as a space is).

tokens.npz: ids (int32, every document's ids without [CLS]/[SEP],
concatenated), offsets (int64, document i is ids[offsets[i]:offsets[i+1]]),
doc_ids (str).
"""

import os
import subprocess
import sys
from typing import Dict, List, Optional, Sequence

import numpy as np


class TokenStore:
    """Token ids by document id, loaded from tokens.npz."""

    def __init__(self, ids: np.ndarray, offsets: np.ndarray, doc_ids: Sequence[str]):
        self.ids = ids
        self.offsets = offsets
        self.index = {d: i for i, d in enumerate(doc_ids)}

    @classmethod
    def load(cls, path: str) -> "TokenStore":
        z = np.load(path, allow_pickle=False)
        return cls(z["ids"], z["offsets"], [str(x) for x in z["doc_ids"]])

    def __contains__(self, doc_id: str) -> bool:
        return doc_id in self.index

    def get(self, doc_id: str) -> np.ndarray:
        i = self.index[doc_id]
        return self.ids[self.offsets[i]:self.offsets[i + 1]]

    def __len__(self):
        return len(self.index)


def save_tokens(path: str, doc_ids: List[str], token_lists: List[List[int]]) -> None:
    offsets = np.zeros(len(token_lists) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(t) for t in token_lists])
    ids = np.fromiter((t for lst in token_lists for t in lst), dtype=np.int32,
                      count=int(offsets[-1]))
    tmp = path + ".tmp.npz"
    np.savez(tmp, ids=ids, offsets=offsets, doc_ids=np.array(doc_ids, dtype=str))
    os.replace(tmp, path)


def tokenize_with_engine(winnow: str, vocab: str, texts: List[str]) -> List[List[int]]:
    """Ids of each text (without [CLS]/[SEP]) through `winnow tokenize`."""
    data = "".join(t.replace("\n", " ") + "\n" for t in texts).encode("utf-8")
    env = dict(os.environ)
    p = subprocess.run([winnow, "tokenize", "--vocab", vocab], input=data,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    if p.returncode != 0:
        raise RuntimeError(f"'{winnow} tokenize' failed ({p.returncode}): "
                           f"{p.stderr.decode(errors='replace').strip()}")
    lines = p.stdout.decode().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if len(lines) != len(texts):
        raise RuntimeError(f"'{winnow} tokenize' printed {len(lines)} lines for "
                           f"{len(texts)} documents")
    out = []
    for line in lines:
        ids = [int(x) for x in line.split()]
        out.append(ids[1:-1])  # drop [CLS] ... [SEP]
    return out


_REF = {}


def reference_tokenizer(vocab: str):
    if vocab not in _REF:
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        from winnow_ref.tokenizer import BertTokenizerRef
        _REF[vocab] = BertTokenizerRef(vocab)
    return _REF[vocab]


def tokenize(texts: List[str], vocab: str, winnow: Optional[str] = None,
             check: int = 20, progress=None) -> List[List[int]]:
    """Ids of each text. With a winnow binary, the engine tokenizes and the
    Python reference re-tokenizes `check` of the texts (spread over the
    corpus) and must agree; without one, the reference does everything
    (slow: minutes for a corpus)."""
    if winnow and os.access(winnow, os.X_OK):
        out = []
        step = 500
        for i in range(0, len(texts), step):
            out += tokenize_with_engine(winnow, vocab, texts[i:i + step])
            if progress:
                progress(len(texts[i:i + step]))
        ref = reference_tokenizer(vocab)
        if texts and check:
            for i in np.linspace(0, len(texts) - 1, min(check, len(texts))).astype(int):
                if len(texts[i]) > 200_000:
                    continue  # the reference is slow; long ones prove nothing more
                want = ref.encode_ids(texts[i])
                if want != out[i]:
                    raise RuntimeError(f"the engine's tokenizer and the reference "
                                       f"disagree on document {i}")
        return out
    ref = reference_tokenizer(vocab)
    out = []
    for t in texts:
        out.append(ref.encode_ids(t))
        if progress:
            progress(1)
    return out


def length_summary(lengths: Sequence[int]) -> Dict[str, float]:
    a = np.asarray(lengths)
    if a.size == 0:
        return {"documents": 0}
    return {"documents": int(a.size), "tokens": int(a.sum()), "mean": float(a.mean()),
            "median": float(np.median(a)), "p90": float(np.percentile(a, 90)),
            "max": int(a.max()), "over_510": int((a > 510).sum())}
