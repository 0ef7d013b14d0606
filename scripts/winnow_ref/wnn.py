"""Writer and validating reader of the .wnn model file, version 1.

docs/model-format.md is the specification; this module follows it field by
field (HEADER_FIELDS below is its header table) and validates in its order:
every field's own rule, then the sections, then the tensor table against the
configuration, then the two checksums. Every error names the field (and its
byte offset) or the tensor.

numpy and the standard library only; converting to and from checkpoints
with Hugging Face names is done with names.py's mapping.
"""

import dataclasses
import math
import struct
import zlib
from collections import OrderedDict
from typing import Dict, List, Optional, Tuple

import numpy as np

from . import names
from .config import WinnowConfig

MAGIC = b"WINNOWMF"
VERSION = 1
HEADER_SIZE = 256
ALIGN = 64
MAX_STRING = 1024  # longest vocabulary entry or label name, in bytes

DTYPES = {"f32": 0, "f16": 1, "bf16": 2}
DTYPE_NAMES = {v: k for k, v in DTYPES.items()}
DTYPE_SIZES = {0: 4, 1: 2, 2: 2}
POOLING_CODES = {"cls": 0, "mean": 1}
FUZZY_MODE_CODES = {"budget": 0, "within": 1}

# (field, offset, struct format): the header table of docs/model-format.md.
HEADER_FIELDS = [
    ("magic", 0, "8s"),
    ("version", 8, "I"),
    ("header_size", 12, "I"),
    ("file_size", 16, "Q"),
    ("vocab_size", 24, "I"),
    ("hidden_size", 28, "I"),
    ("num_layers", 32, "I"),
    ("num_heads", 36, "I"),
    ("intermediate_size", 40, "I"),
    ("max_position", 44, "I"),
    ("type_vocab_size", 48, "I"),
    ("num_labels", 52, "I"),
    ("layer_norm_eps", 56, "d"),
    ("keep_ratio", 64, "d"),
    ("fuzzy", 72, "I"),
    ("fuzzy_mode", 76, "I"),
    ("combine_layer", 80, "I"),
    ("combine_tokens", 84, "I"),
    ("pooling", 88, "I"),
    ("hidden_act", 92, "I"),
    ("max_seq_len", 96, "I"),
    ("do_lower_case", 100, "I"),
    ("max_chars_per_word", 104, "I"),
    ("cls_id", 108, "I"),
    ("sep_id", 112, "I"),
    ("unk_id", 116, "I"),
    ("pad_id", 120, "I"),
    ("mask_id", 124, "I"),
    ("info_offset", 128, "Q"),
    ("labels_offset", 136, "Q"),
    ("vocab_offset", 144, "Q"),
    ("tensors_offset", 152, "Q"),
    ("data_offset", 160, "Q"),
    ("body_crc32", 168, "I"),
    ("header_crc32", 172, "I"),
    ("reserved", 176, "80s"),
]
FIELD_OFFSETS = {name: off for name, off, _ in HEADER_FIELDS}
HEADER_CRC_END = FIELD_OFFSETS["header_crc32"]  # the header CRC covers [0, 172)


def _check_header_table() -> None:
    """The table tiles the 256 bytes exactly (a typo here would corrupt
    every file)."""
    end = 0
    for name, off, fmt in HEADER_FIELDS:
        assert off == end, name
        end = off + struct.calcsize("<" + fmt)
    assert end == HEADER_SIZE


_check_header_table()


class WnnError(ValueError):
    """A .wnn file that breaks docs/model-format.md."""


@dataclasses.dataclass
class TokenizerSettings:
    """The tokenizer fields of the header."""

    cls_id: int
    sep_id: int
    unk_id: int
    pad_id: int
    mask_id: int
    do_lower_case: bool = True
    max_chars_per_word: int = 100

    @classmethod
    def from_vocab(cls, vocab: List[str], **kw) -> "TokenizerSettings":
        """Special ids looked up in the vocabulary by their BERT spelling."""
        index = {tok: i for i, tok in enumerate(vocab)}
        ids = {}
        for key, tok in (("cls_id", "[CLS]"), ("sep_id", "[SEP]"),
                         ("unk_id", "[UNK]"), ("pad_id", "[PAD]"),
                         ("mask_id", "[MASK]")):
            if tok not in index:
                raise WnnError(f"vocabulary has no '{tok}' token")
            ids[key] = index[tok]
        return cls(**ids, **kw)


@dataclasses.dataclass
class WnnModel:
    """Everything a .wnn file holds. tensors are f32 numpy arrays with the
    .wnn names (f16/bf16 storage is converted at read, as the engine does);
    dtypes says how each was stored."""

    config: WinnowConfig
    tokenizer: TokenizerSettings
    name: str
    version: str
    vocab: List[str]
    tensors: "OrderedDict[str, np.ndarray]"
    dtypes: Dict[str, str] = dataclasses.field(default_factory=dict)
    header: Dict[str, object] = dataclasses.field(default_factory=dict)

    @property
    def labels(self) -> List[str]:
        return self.config.labels

    def checkpoint_state(self) -> Dict[str, np.ndarray]:
        """The tensors under Hugging Face's names (QKV split back into
        query/key/value), for loading into the reference model."""
        out = {}
        for name, value in self.tensors.items():
            sources = names.hf_sources(name)
            for hf, part in zip(sources, np.split(value, len(sources), axis=0)):
                out[hf] = part
        return out


# ---------------------------------------------------------------------------
# Conversions between f32 and the stored dtypes
# ---------------------------------------------------------------------------


def to_storage(x: np.ndarray, dtype: str, name: str) -> bytes:
    """f32 array -> little-endian bytes of the given dtype."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if not np.all(np.isfinite(x)):
        raise WnnError(f"tensor '{name}' holds a NaN or an infinity")
    if dtype == "f32":
        return x.astype("<f4").tobytes()
    if dtype == "f16":
        if np.abs(x).max(initial=0.0) > np.finfo(np.float16).max:
            raise WnnError(f"tensor '{name}' has values beyond f16's range; "
                           f"use --dtype bf16 or f32")
        return x.astype("<f2").tobytes()
    if dtype == "bf16":
        # Round to nearest, ties to even, on the upper 16 bits of the f32.
        u = x.view(np.uint32).astype(np.uint64)
        u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
        return u.astype("<u2").tobytes()
    raise WnnError(f"unknown dtype '{dtype}'")


def from_storage(buf, dtype_code: int, shape) -> np.ndarray:
    """Stored bytes -> f32 array (copied)."""
    if dtype_code == 0:
        x = np.frombuffer(buf, dtype="<f4")
    elif dtype_code == 1:
        x = np.frombuffer(buf, dtype="<f2").astype(np.float32)
    else:
        x = (np.frombuffer(buf, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
    return np.array(x, dtype=np.float32).reshape(shape)


# ---------------------------------------------------------------------------
# Writer
# ---------------------------------------------------------------------------


def _string_list(strings: List[str]) -> bytes:
    out = [struct.pack("<I", len(strings))]
    for s in strings:
        b = s.encode("utf-8")
        out.append(struct.pack("<I", len(b)))
        out.append(b)
    return b"".join(out)


def _align(x: int) -> int:
    return (x + ALIGN - 1) // ALIGN * ALIGN


def header_values(cfg: WinnowConfig, tok: TokenizerSettings) -> Dict[str, object]:
    """The configuration fields of the header (everything but the layout
    offsets and checksums)."""
    L = cfg.num_hidden_layers
    return {
        "magic": MAGIC,
        "version": VERSION,
        "header_size": HEADER_SIZE,
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden_size,
        "num_layers": L,
        "num_heads": cfg.num_attention_heads,
        "intermediate_size": cfg.intermediate_size,
        "max_position": cfg.max_position_embeddings,
        "type_vocab_size": cfg.type_vocab_size,
        "num_labels": cfg.num_labels,
        "layer_norm_eps": float(cfg.layer_norm_eps),
        "keep_ratio": float(cfg.keep_ratio),
        "fuzzy": int(bool(cfg.fuzzy)),
        "fuzzy_mode": FUZZY_MODE_CODES[cfg.fuzzy_mode],
        "combine_layer": cfg.combine_layer if cfg.has_combiner else L,
        "combine_tokens": cfg.num_combine_tokens,
        # With the combining module the head is always the mean of the m
        # tokens (PAPER.md 4); the file says so rather than repeat a stale
        # config.json value.
        "pooling": POOLING_CODES[cfg.head_pooling],
        "hidden_act": 0,
        "max_seq_len": cfg.window_len,
        "do_lower_case": int(bool(tok.do_lower_case)),
        "max_chars_per_word": tok.max_chars_per_word,
        "cls_id": tok.cls_id,
        "sep_id": tok.sep_id,
        "unk_id": tok.unk_id,
        "pad_id": tok.pad_id,
        "mask_id": tok.mask_id,
        "reserved": b"\0" * 80,
    }


def pack_header(h: Dict[str, object]) -> bytes:
    buf = bytearray(HEADER_SIZE)
    for name, off, fmt in HEADER_FIELDS:
        struct.pack_into("<" + fmt, buf, off, h[name])
    return bytes(buf)


def write_wnn(path: str, cfg: WinnowConfig, tok: TokenizerSettings,
              vocab: List[str], tensors: Dict[str, np.ndarray], *, name: str,
              version: str, dtype: str = "f32",
              matrix_dtype_only: bool = True) -> None:
    """Writes a .wnn file. tensors must be exactly
    names.expected_wnn_tensors(cfg) (f32 arrays, .wnn names). dtype is the
    storage of the tensors; with matrix_dtype_only, 1-D tensors (biases,
    LayerNorms) stay f32, as they are tiny and precision-sensitive."""
    cfg.validate()
    if dtype not in DTYPES:
        raise WnnError(f"unknown dtype '{dtype}' (f32, f16 or bf16)")
    _check_tensor_set(cfg, {k: tuple(v.shape) for k, v in tensors.items()})
    if len(vocab) != cfg.vocab_size:
        raise WnnError(f"vocabulary has {len(vocab)} entries, config "
                       f"vocab_size is {cfg.vocab_size}")
    _check_strings("vocabulary", vocab)
    _check_strings("label", cfg.labels)

    h = header_values(cfg, tok)
    sections = OrderedDict()
    sections["info_offset"] = _string_list([name, version])
    sections["labels_offset"] = _string_list(cfg.labels)
    sections["vocab_offset"] = _string_list(vocab)

    # The table's size does not depend on the offsets it holds, so lay out
    # the data with a dry run of the table first.
    order = list(names.expected_wnn_tensors(cfg))
    payloads = {}
    for tname in order:
        t_dtype = dtype if (tensors[tname].ndim >= 2 or not matrix_dtype_only) else "f32"
        payloads[tname] = (DTYPES[t_dtype], to_storage(tensors[tname], t_dtype, tname))
    table_size = len(_tensor_table(order, tensors, payloads, {}))
    pos = HEADER_SIZE + sum(len(b) for b in sections.values())
    h["tensors_offset"] = pos
    data_offset = _align(pos + table_size)
    offsets, cur = {}, data_offset
    for tname in order:
        offsets[tname] = cur
        cur = _align(cur + len(payloads[tname][1]))
    file_size = offsets[order[-1]] + len(payloads[order[-1]][1])
    table = _tensor_table(order, tensors, payloads, offsets)
    assert len(table) == table_size

    body = bytearray(file_size - HEADER_SIZE)
    pos = HEADER_SIZE
    for key, blob in sections.items():
        h[key] = pos
        body[pos - HEADER_SIZE: pos - HEADER_SIZE + len(blob)] = blob
        pos += len(blob)
    body[pos - HEADER_SIZE: pos - HEADER_SIZE + len(table)] = table
    for tname in order:
        blob = payloads[tname][1]
        o = offsets[tname] - HEADER_SIZE
        body[o: o + len(blob)] = blob

    h["data_offset"] = data_offset
    h["file_size"] = file_size
    h["body_crc32"] = zlib.crc32(body) & 0xFFFFFFFF
    h["header_crc32"] = 0
    head = pack_header(h)
    h["header_crc32"] = zlib.crc32(head[:HEADER_CRC_END]) & 0xFFFFFFFF
    head = pack_header(h)
    with open(path, "wb") as f:
        f.write(head)
        f.write(body)


def _check_strings(what: str, strings: List[str]) -> None:
    """What the reader will demand of the vocabulary and the labels."""
    seen = set()
    for i, x in enumerate(strings):
        if len(x.encode("utf-8")) > MAX_STRING:
            raise WnnError(f"{what} entry {i} is longer than {MAX_STRING} bytes")
        if x in seen:
            raise WnnError(f"{what} entry {i} ('{x}') appears twice")
        seen.add(x)


def _tensor_table(order, tensors, payloads, offsets) -> bytes:
    out = [struct.pack("<I", len(order))]
    for tname in order:
        shape = tensors[tname].shape
        code, blob = payloads[tname]
        nm = tname.encode("ascii")
        out.append(struct.pack("<I", len(nm)) + nm)
        out.append(struct.pack("<II", code, len(shape)))
        out.append(struct.pack(f"<{len(shape)}Q", *shape))
        out.append(struct.pack("<QQ", offsets.get(tname, 0), len(blob)))
    return b"".join(out)


def _check_tensor_set(cfg: WinnowConfig, shapes: Dict[str, Tuple[int, ...]]) -> None:
    """The tensors are exactly the ones the configuration uses."""
    expected = names.expected_wnn_tensors(cfg)
    for tname, shape in expected.items():
        if tname not in shapes:
            raise WnnError(f"tensor '{tname}' is missing (the configuration "
                           f"uses it)")
        if tuple(shapes[tname]) != tuple(shape):
            raise WnnError(f"tensor '{tname}' has shape {list(shapes[tname])}, "
                           f"expected {list(shape)}")
    for tname in shapes:
        if tname not in expected:
            raise WnnError(f"tensor '{tname}' is not used by the configuration")


# ---------------------------------------------------------------------------
# Reader
# ---------------------------------------------------------------------------


class _Cursor:
    """Reads little-endian values inside [start, limit) of the file, naming
    what it reads in its errors."""

    def __init__(self, data: bytes, pos: int, limit: int, what: str):
        self.data, self.pos, self.limit, self.what = data, pos, limit, what

    def take(self, n: int, item: str) -> bytes:
        if self.pos + n > self.limit:
            raise WnnError(f"{self.what}: {item} at byte {self.pos} runs past "
                           f"byte {self.limit}")
        b = self.data[self.pos: self.pos + n]
        self.pos += n
        return b

    def u32(self, item: str) -> int:
        return struct.unpack("<I", self.take(4, item))[0]

    def u64(self, item: str) -> int:
        return struct.unpack("<Q", self.take(8, item))[0]


def _field_rules(h: dict, file_size: int):
    """(field, ok, rule) in header order: docs/model-format.md's rules."""
    L = h["num_layers"]
    P = h["combine_layer"]
    yield "magic", h["magic"] == MAGIC, f"must be {MAGIC.decode()}"
    yield "version", h["version"] == VERSION, f"must be {VERSION}"
    yield "header_size", h["header_size"] == HEADER_SIZE, f"must be {HEADER_SIZE}"
    yield "file_size", h["file_size"] == file_size, \
        f"must equal the file's size ({file_size} bytes)"
    yield "vocab_size", 1 <= h["vocab_size"] <= 1 << 24, "must be in 1..2^24"
    yield "hidden_size", 1 <= h["hidden_size"] <= 65536, "must be in 1..65536"
    yield "num_layers", 1 <= L <= 256, "must be in 1..256"
    yield "num_heads", 1 <= h["num_heads"] <= 1024, "must be in 1..1024"
    yield "hidden_size", h["hidden_size"] % h["num_heads"] == 0, \
        f"must be a multiple of num_heads ({h['num_heads']})"
    yield "intermediate_size", 1 <= h["intermediate_size"] <= 1 << 20, "must be in 1..2^20"
    yield "max_position", 3 <= h["max_position"] <= 65536, "must be in 3..65536"
    yield "type_vocab_size", 1 <= h["type_vocab_size"] <= 1024, "must be in 1..1024"
    yield "num_labels", 1 <= h["num_labels"] <= 65536, "must be in 1..65536"
    eps = h["layer_norm_eps"]
    yield "layer_norm_eps", math.isfinite(eps) and 0 < eps < 1, "must be finite, > 0 and < 1"
    p = h["keep_ratio"]
    yield "keep_ratio", math.isfinite(p) and 0 < p <= 1, "must be finite, > 0 and <= 1"
    yield "fuzzy", h["fuzzy"] in (0, 1), "must be 0 or 1"
    yield "fuzzy_mode", h["fuzzy_mode"] in (0, 1), "must be 0 (budget) or 1 (within)"
    yield "combine_layer", 1 <= P <= L, f"must be in 1..num_layers ({L})"
    m = h["combine_tokens"]
    yield "combine_tokens", (m == 0) if P == L else (1 <= m <= 4096), \
        "must be 0 without a combining module, else 1..4096"
    yield "pooling", h["pooling"] in (0, 1), "must be 0 (cls) or 1 (mean)"
    yield "hidden_act", h["hidden_act"] == 0, "must be 0 (GELU with erf)"
    yield "max_seq_len", 3 <= h["max_seq_len"] <= h["max_position"], \
        f"must be in 3..max_position ({h['max_position']})"
    yield "do_lower_case", h["do_lower_case"] in (0, 1), "must be 0 or 1"
    yield "max_chars_per_word", 1 <= h["max_chars_per_word"] <= 65536, "must be in 1..65536"
    for key in ("cls_id", "sep_id", "unk_id", "pad_id", "mask_id"):
        yield key, h[key] < h["vocab_size"], f"must be < vocab_size ({h['vocab_size']})"
    do = h["data_offset"]
    yield "data_offset", do % ALIGN == 0 and HEADER_SIZE <= do <= file_size, \
        f"must be a multiple of {ALIGN} in {HEADER_SIZE}..file_size ({file_size})"
    for key in ("info_offset", "labels_offset", "vocab_offset", "tensors_offset"):
        yield key, HEADER_SIZE <= h[key] < do, \
            f"must lie in [header_size, data_offset) = [{HEADER_SIZE}, {do})"
    yield "reserved", h["reserved"] == b"\0" * 80, "must be all zero"


def _read_strings(data: bytes, h: dict, key: str, count: Optional[int],
                  utf8_rule: bool) -> List[str]:
    what = f"{key.replace('_offset', '')} list at byte {h[key]}"
    cur = _Cursor(data, h[key], h["data_offset"], what)
    n = cur.u32("count")
    if count is not None and n != count:
        raise WnnError(f"{what}: has {n} entries, expected {count}")
    out = []
    for i in range(n):
        ln = cur.u32(f"entry {i} length")
        if utf8_rule and ln > MAX_STRING:
            raise WnnError(f"{what}: entry {i} is {ln} bytes, at most {MAX_STRING} allowed")
        raw = cur.take(ln, f"entry {i}")
        try:
            out.append(raw.decode("utf-8"))
        except UnicodeDecodeError as e:
            raise WnnError(f"{what}: entry {i} is not valid UTF-8 ({e.reason} "
                           f"at byte {e.start} of the entry)") from None
    return out


@dataclasses.dataclass
class _TensorEntry:
    name: str
    dtype: int
    dims: Tuple[int, ...]
    offset: int
    nbytes: int


def _read_tensor_table(data: bytes, h: dict) -> List[_TensorEntry]:
    what = f"tensor table at byte {h['tensors_offset']}"
    cur = _Cursor(data, h["tensors_offset"], h["data_offset"], what)
    count = cur.u32("count")
    entries, seen = [], set()
    for i in range(count):
        raw = cur.take(cur.u32(f"entry {i} name length"), f"entry {i} name")
        try:
            tname = raw.decode("ascii")
        except UnicodeDecodeError:
            raise WnnError(f"{what}: entry {i} name is not ASCII") from None
        if tname in seen:
            raise WnnError(f"{what}: tensor '{tname}' appears twice")
        seen.add(tname)
        dtype = cur.u32(f"'{tname}' dtype")
        if dtype not in DTYPE_SIZES:
            raise WnnError(f"tensor '{tname}': dtype {dtype} is not 0 (f32), 1 (f16) or 2 (bf16)")
        ndim = cur.u32(f"'{tname}' ndim")
        if not 1 <= ndim <= 4:
            raise WnnError(f"tensor '{tname}': ndim {ndim} is not in 1..4")
        dims = tuple(cur.u64(f"'{tname}' dims") for _ in range(ndim))
        if min(dims) < 1:
            raise WnnError(f"tensor '{tname}': dims {list(dims)} has a zero")
        offset, nbytes = cur.u64(f"'{tname}' offset"), cur.u64(f"'{tname}' nbytes")
        entries.append(_TensorEntry(tname, dtype, dims, offset, nbytes))
    return entries


def _check_tensor_placement(entries: List[_TensorEntry], h: dict) -> None:
    for e in entries:
        want = math.prod(e.dims) * DTYPE_SIZES[e.dtype]
        if e.nbytes != want:
            raise WnnError(f"tensor '{e.name}': nbytes is {e.nbytes}, its dims "
                           f"and dtype need {want}")
        if e.offset % ALIGN or e.offset < h["data_offset"]:
            raise WnnError(f"tensor '{e.name}': offset {e.offset} is not a "
                           f"multiple of {ALIGN} at or after data_offset "
                           f"({h['data_offset']})")
        if e.offset + e.nbytes > h["file_size"]:
            raise WnnError(f"tensor '{e.name}' ends at byte {e.offset + e.nbytes}, "
                           f"file has {h['file_size']}")
    spans = sorted(entries, key=lambda e: e.offset)
    for a, b in zip(spans, spans[1:]):
        if a.offset + a.nbytes > b.offset:
            raise WnnError(f"tensor '{a.name}' overlaps tensor '{b.name}'")


def config_from_header(h: dict, labels: List[str]) -> WinnowConfig:
    L = h["num_layers"]
    return WinnowConfig(
        vocab_size=h["vocab_size"], hidden_size=h["hidden_size"],
        num_hidden_layers=L, num_attention_heads=h["num_heads"],
        intermediate_size=h["intermediate_size"],
        max_position_embeddings=h["max_position"],
        type_vocab_size=h["type_vocab_size"],
        layer_norm_eps=h["layer_norm_eps"], labels=labels,
        keep_ratio=h["keep_ratio"], fuzzy=bool(h["fuzzy"]),
        fuzzy_mode=[k for k, v in FUZZY_MODE_CODES.items() if v == h["fuzzy_mode"]][0],
        combine_layer=None if h["combine_layer"] == L else h["combine_layer"],
        combine_tokens=h["combine_tokens"] if h["combine_layer"] != L else 8,
        pooling=[k for k, v in POOLING_CODES.items() if v == h["pooling"]][0],
        max_seq_len=h["max_seq_len"])


def read_wnn(path: str, verify_checksums: bool = True) -> WnnModel:
    """Reads and validates a .wnn file completely; raises WnnError (message
    "cannot load model 'PATH': ...") on the first problem found."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        return parse_wnn(data, verify_checksums)
    except WnnError as e:
        raise WnnError(f"cannot load model '{path}': {e}") from None


def parse_wnn(data: bytes, verify_checksums: bool = True) -> WnnModel:
    if len(data) < HEADER_SIZE:
        raise WnnError(f"file is {len(data)} bytes, shorter than the "
                       f"{HEADER_SIZE}-byte header")
    h = {name: struct.unpack_from("<" + fmt, data, off)[0]
         for name, off, fmt in HEADER_FIELDS}
    for fname, ok, rule in _field_rules(h, len(data)):
        if not ok:
            value = h[fname]
            shown = value if not isinstance(value, bytes) else value[:16]
            raise WnnError(f"header field '{fname}' (byte {FIELD_OFFSETS[fname]}) "
                           f"is {shown!r}: {rule}")

    info = _read_strings(data, h, "info_offset", 2, utf8_rule=False)
    labels = _read_strings(data, h, "labels_offset", h["num_labels"], utf8_rule=True)
    vocab = _read_strings(data, h, "vocab_offset", h["vocab_size"], utf8_rule=True)
    if len(set(vocab)) != len(vocab):
        seen = set()
        dup = next(v for v in vocab if v in seen or seen.add(v))
        raise WnnError(f"vocab list: entry '{dup}' appears twice")
    entries = _read_tensor_table(data, h)
    _check_tensor_placement(entries, h)

    cfg = config_from_header(h, labels)
    try:
        cfg.validate()
    except ValueError as e:
        raise WnnError(str(e)) from None
    _check_tensor_set(cfg, {e.name: e.dims for e in entries})

    if verify_checksums:
        if zlib.crc32(data[HEADER_SIZE:]) & 0xFFFFFFFF != h["body_crc32"]:
            raise WnnError(f"header field 'body_crc32' (byte "
                           f"{FIELD_OFFSETS['body_crc32']}) does not match the "
                           f"body: the file is corrupt")
        if zlib.crc32(data[:HEADER_CRC_END]) & 0xFFFFFFFF != h["header_crc32"]:
            raise WnnError(f"header field 'header_crc32' (byte "
                           f"{FIELD_OFFSETS['header_crc32']}) does not match the "
                           f"header: the file is corrupt")

    tensors = OrderedDict()
    dtypes = {}
    for e in entries:
        tensors[e.name] = from_storage(data[e.offset: e.offset + e.nbytes], e.dtype, e.dims)
        dtypes[e.name] = DTYPE_NAMES[e.dtype]
    tok = TokenizerSettings(cls_id=h["cls_id"], sep_id=h["sep_id"], unk_id=h["unk_id"],
                            pad_id=h["pad_id"], mask_id=h["mask_id"],
                            do_lower_case=bool(h["do_lower_case"]),
                            max_chars_per_word=h["max_chars_per_word"])
    return WnnModel(config=cfg, tokenizer=tok, name=info[0], version=info[1],
                    vocab=vocab, tensors=tensors, dtypes=dtypes, header=h)
