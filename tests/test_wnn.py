#!/usr/bin/python3
"""Tests of the .wnn writer/reader (scripts/winnow_ref/wnn.py) and of the
exporter (scripts/export_model.py) against docs/model-format.md.

    /usr/bin/python3 tests/test_wnn.py [-v]

Round trip: a random model written and read back gives every tensor, header
field, label and vocabulary entry back; the layout (offsets, alignment,
checksums) is checked with plain struct/zlib at the documented offsets, not
with the module's own tables. Damage: a truncated file, a bad magic, a field
out of range, a corrupt body are refused with an error naming the field.
Export: checkpoint -> .wnn -> the reference model gives the checkpoint's
own logits.
"""

import dataclasses
import os
import struct
import subprocess
import sys
import tempfile
import unittest
import zlib

import numpy as np
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = os.path.join(REPO, "scripts")
sys.path.insert(0, SCRIPTS)

from winnow_ref import checkpoint, names, wnn  # noqa: E402
from winnow_ref.config import WinnowConfig  # noqa: E402
from winnow_ref.random_checkpoint import random_state  # noqa: E402

PYTHON = "/usr/bin/python3"
VOCAB = checkpoint.synthetic_vocab(300) + ["café", "日本", "##ü"]
BASE = WinnowConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=3,
                    num_attention_heads=4, intermediate_size=48,
                    max_position_embeddings=40, labels=["ham", "spam", "ünïcode"])
COMBINING = dataclasses.replace(BASE, keep_ratio=0.9, combine_layer=1, combine_tokens=5,
                                fuzzy_mode="within")


def wnn_tensors(cfg: WinnowConfig, seed: int = 0):
    """Random tensors of exactly cfg's .wnn set."""
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(shape).astype(np.float32)
            for k, shape in names.expected_wnn_tensors(cfg).items()}


def read_bytes(path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def write(path, cfg, tensors, dtype="f32"):
    tok = wnn.TokenizerSettings.from_vocab(VOCAB)
    wnn.write_wnn(path, cfg, tok, VOCAB, tensors, name="tiny", version="0.3", dtype=dtype)


class Tmp(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory(prefix="test_wnn.")
        self.dir = self._tmp.name

    def tearDown(self):
        self._tmp.cleanup()

    def path(self, name):
        return os.path.join(self.dir, name)


class RoundTrip(Tmp):
    def check_round_trip(self, cfg):
        tensors = wnn_tensors(cfg)
        write(self.path("m.wnn"), cfg, tensors)
        m = wnn.read_wnn(self.path("m.wnn"))
        self.assertEqual(m.name, "tiny")
        self.assertEqual(m.version, "0.3")
        self.assertEqual(m.vocab, VOCAB)
        self.assertEqual(m.labels, cfg.labels)
        self.assertEqual(list(m.tensors), list(tensors))
        for k, v in tensors.items():
            np.testing.assert_array_equal(m.tensors[k], v, err_msg=k)
        # Dropout rates are training settings, not in the file.
        want = dataclasses.replace(
            cfg, extra={}, hidden_dropout_prob=m.config.hidden_dropout_prob,
            attention_probs_dropout_prob=m.config.attention_probs_dropout_prob,
            max_seq_len=cfg.window_len)
        if not cfg.has_combiner:
            want = dataclasses.replace(want, combine_tokens=m.config.combine_tokens)
        # With a combining module the file records the head it really has.
        want = dataclasses.replace(want, pooling=cfg.head_pooling)
        self.assertEqual(m.config, want)
        self.assertEqual((m.tokenizer.cls_id, m.tokenizer.sep_id, m.tokenizer.unk_id,
                          m.tokenizer.pad_id, m.tokenizer.mask_id), (101, 102, 100, 0, 103))

    def test_dense_cls(self):
        self.check_round_trip(BASE)

    def test_mean_pruned(self):
        self.check_round_trip(dataclasses.replace(BASE, pooling="mean", keep_ratio=0.7,
                                                  fuzzy=False, max_seq_len=17))

    def test_combining(self):
        self.check_round_trip(COMBINING)

    def test_half_precision(self):
        """f16/bf16 storage reads back as the value rounded to nearest even,
        computed here with numpy's f16 and torch's bf16 conversions; 1-D
        tensors stay f32."""
        tensors = wnn_tensors(BASE)
        for dtype, ref in (("f16", lambda x: x.astype(np.float16).astype(np.float32)),
                           ("bf16", lambda x: torch.from_numpy(x).to(torch.bfloat16)
                            .to(torch.float32).numpy())):
            write(self.path("h.wnn"), BASE, tensors, dtype=dtype)
            m = wnn.read_wnn(self.path("h.wnn"))
            for k, v in tensors.items():
                want = ref(v) if v.ndim >= 2 else v
                np.testing.assert_array_equal(m.tensors[k], want, err_msg=f"{dtype} {k}")
                self.assertEqual(m.dtypes[k], dtype if v.ndim >= 2 else "f32")

    def test_layout(self):
        """The bytes where docs/model-format.md puts them."""
        write(self.path("m.wnn"), COMBINING, wnn_tensors(COMBINING))
        data = read_bytes(self.path("m.wnn"))
        u32 = lambda off: struct.unpack_from("<I", data, off)[0]  # noqa: E731
        u64 = lambda off: struct.unpack_from("<Q", data, off)[0]  # noqa: E731
        f64 = lambda off: struct.unpack_from("<d", data, off)[0]  # noqa: E731
        self.assertEqual(data[:8], b"WINNOWMF")
        self.assertEqual((u32(8), u32(12), u64(16)), (1, 256, len(data)))
        self.assertEqual((u32(24), u32(28), u32(32), u32(36), u32(40), u32(44), u32(48),
                          u32(52)), (len(VOCAB), 32, 3, 4, 48, 40, 2, 3))
        self.assertEqual((f64(56), f64(64)), (1e-12, 0.9))
        self.assertEqual((u32(72), u32(76), u32(80), u32(84), u32(88), u32(92)),
                         (1, 1, 1, 5, 1, 0))
        self.assertEqual((u32(96), u32(100), u32(104)), (40, 1, 100))
        self.assertEqual([u32(o) for o in range(108, 128, 4)], [101, 102, 100, 0, 103])
        data_offset = u64(160)
        self.assertEqual(data_offset % 64, 0)
        for off in (128, 136, 144, 152):
            self.assertTrue(256 <= u64(off) < data_offset)
        self.assertEqual(u32(168), zlib.crc32(data[256:]))
        self.assertEqual(u32(172), zlib.crc32(data[:172]))
        self.assertEqual(data[176:256], bytes(80))
        # Labels list: count, then length-prefixed UTF-8.
        pos = u64(136)
        self.assertEqual(u32(pos), 3)
        ln = u32(pos + 4)
        self.assertEqual(data[pos + 8: pos + 8 + ln], b"ham")
        # Tensor table: every offset 64-aligned, data in bounds, no overlap.
        pos = u64(152)
        count, pos = u32(pos), pos + 4
        spans = []
        for _ in range(count):
            nlen = u32(pos)
            name = data[pos + 4: pos + 4 + nlen].decode()
            pos += 4 + nlen
            dtype, ndim = u32(pos), u32(pos + 4)
            dims = struct.unpack_from(f"<{ndim}Q", data, pos + 8)
            pos += 8 + 8 * ndim
            off, nbytes = u64(pos), u64(pos + 8)
            pos += 16
            self.assertEqual((dtype, off % 64, nbytes), (0, 0, 4 * int(np.prod(dims))), name)
            spans.append((off, off + nbytes))
            if name == "encoder.0.attn.qkv.weight":
                self.assertEqual(dims, (96, 32))
        spans.sort()
        self.assertTrue(all(a[1] <= b[0] for a, b in zip(spans, spans[1:])))
        self.assertGreaterEqual(spans[0][0], data_offset)
        self.assertEqual(spans[-1][1], len(data))

    def test_tensor_set_follows_configuration(self):
        got = set(names.expected_wnn_tensors(COMBINING))
        self.assertNotIn("encoder.1.attn.qkv.weight", got)  # P = 1 is replaced
        self.assertIn("encoder.2.attn.qkv.weight", got)
        self.assertNotIn("pooler.weight", got)  # combining: mean of the m tokens
        self.assertIn("combine.tokens", got)
        mean = set(names.expected_wnn_tensors(dataclasses.replace(BASE, pooling="mean")))
        self.assertNotIn("pooler.weight", mean)
        self.assertFalse(any(k.startswith("combine.") for k in mean))
        self.assertIn("pooler.weight", set(names.expected_wnn_tensors(BASE)))


class Damage(Tmp):
    def setUp(self):
        super().setUp()
        write(self.path("good.wnn"), COMBINING, wnn_tensors(COMBINING))
        self.good = read_bytes(self.path("good.wnn"))

    def refused(self, data: bytes, *words):
        with open(self.path("bad.wnn"), "wb") as f:
            f.write(data)
        with self.assertRaises(wnn.WnnError) as cm:
            wnn.read_wnn(self.path("bad.wnn"))
        msg = str(cm.exception)
        self.assertIn("cannot load model", msg)
        for w in words:
            self.assertIn(w, msg)
        return msg

    def with_field(self, offset, fmt, value, fix_header_crc=True):
        data = bytearray(self.good)
        struct.pack_into("<" + fmt, data, offset, value)
        if fix_header_crc:
            struct.pack_into("<I", data, 172, zlib.crc32(bytes(data[:172])))
        return bytes(data)

    def test_empty_and_short(self):
        self.refused(b"", "0 bytes", "header")
        self.refused(self.good[:100], "100 bytes", "header")
        self.refused(self.good[:255], "255 bytes")

    def test_truncated(self):
        for cut in (256, 300, len(self.good) // 2, len(self.good) - 1):
            self.refused(self.good[:cut], "'file_size'")

    def test_bad_magic(self):
        self.refused(b"NOTAMODL" + self.good[8:], "'magic'")

    def test_field_rules_before_checksums(self):
        """A broken field is named even when the checksums fail too."""
        self.refused(self.with_field(8, "I", 2, fix_header_crc=False), "'version'")
        self.refused(self.with_field(64, "d", 1.5), "'keep_ratio'")
        self.refused(self.with_field(64, "d", float("nan")), "'keep_ratio'")
        self.refused(self.with_field(80, "I", 0), "'combine_layer'")
        self.refused(self.with_field(84, "I", 0), "'combine_tokens'")
        self.refused(self.with_field(28, "I", 30), "'hidden_size'")
        self.refused(self.with_field(108, "I", len(VOCAB)), "'cls_id'")
        self.refused(self.with_field(160, "Q", 100), "'data_offset'")
        self.refused(self.with_field(200, "B", 1), "'reserved'")

    def test_configuration_against_tensors(self):
        """Header and tensor table must agree: naming the tensor."""
        # P = L says "no combining module": m must then be 0 (a field rule,
        # checked first), and then layer P's weights are missing.
        self.refused(self.with_field(80, "I", 3), "'combine_tokens'")
        data = bytearray(self.with_field(80, "I", 3))
        struct.pack_into("<I", data, 84, 0)
        struct.pack_into("<I", data, 172, zlib.crc32(bytes(data[:172])))
        self.refused(bytes(data), "tensor", "encoder.1.attn.qkv.weight")

    def test_checksums(self):
        data = bytearray(self.good)
        data[-3] ^= 0x40
        self.refused(bytes(data), "'body_crc32'")
        self.refused(self.with_field(100, "I", 0, fix_header_crc=False), "'header_crc32'")

    def test_writer_refuses_wrong_tensor_set(self):
        tensors = wnn_tensors(COMBINING)
        extra = dict(tensors, **{"pooler.weight": np.zeros((32, 32), np.float32)})
        with self.assertRaisesRegex(wnn.WnnError, "'pooler.weight' is not used"):
            write(self.path("x.wnn"), COMBINING, extra)
        del tensors["combine.v.bias"]
        with self.assertRaisesRegex(wnn.WnnError, "'combine.v.bias' is missing"):
            write(self.path("x.wnn"), COMBINING, tensors)


class Export(Tmp):
    def make_checkpoint(self, cfg, seed=1):
        state = random_state(cfg, seed=seed, std=0.2)
        checkpoint.save_checkpoint(self.path("ck"), cfg, state, VOCAB)
        return state

    def export(self, *flags, expect_ok=True):
        r = subprocess.run([PYTHON, os.path.join(SCRIPTS, "export_model.py"),
                            "--checkpoint", self.path("ck"), "--out", self.path("m.wnn"),
                            *flags], capture_output=True, text=True)
        if expect_ok:
            self.assertEqual(r.returncode, 0, r.stderr)
        else:
            self.assertNotEqual(r.returncode, 0)
        return r

    def logits(self, cfg, state, windows):
        model = checkpoint.build_model(cfg, state)
        out = []
        with torch.no_grad():
            for w in windows:
                out.append(model(torch.tensor([w]))[0])
        return torch.stack(out)

    def test_export_gives_checkpoint_logits(self):
        """Full model (pooler and all layers) in the checkpoint; each
        export keeps exactly the configuration's tensors, and the .wnn read
        back into the reference gives the checkpoint's logits bit for bit."""
        full = dataclasses.replace(BASE, combine_layer=1, combine_tokens=5)
        state = self.make_checkpoint(full)
        windows = [[101, 102], [101, 200, 201, 202, 102], [101] + list(range(110, 140)) + [102]]
        cases = [
            ["--combine-layer", "none", "--pooling", "cls"],
            ["--combine-layer", "none", "--pooling", "mean", "--keep-ratio", "0.6"],
            ["--keep-ratio", "0.8", "--fuzzy-mode", "within"],
            ["--combine-layer", "2", "--combine-tokens", "5", "--no-fuzzy", "--keep-ratio", "0.7"],
        ]
        for flags in cases:
            r = self.export(*flags, "--name", "spam-model", "--model-version", "2.1")
            m = wnn.read_wnn(self.path("m.wnn"))
            self.assertEqual((m.name, m.version), ("spam-model", "2.1"))
            qkv = m.tensors["encoder.0.attn.qkv.weight"]
            key = state["bert.encoder.layer.0.attention.self.key.weight"].numpy()
            np.testing.assert_array_equal(qkv[32:64], key)  # rows q, k, v
            sd = {k: torch.from_numpy(v) for k, v in m.checkpoint_state().items()}
            got = self.logits(m.config, sd, windows)
            want = self.logits(m.config, state, windows)
            self.assertTrue(torch.equal(got, want), f"{flags}: {got} != {want}")
            self.assertIn("wrote", r.stdout)

    def test_name_defaults_to_directory(self):
        self.make_checkpoint(BASE)
        self.export()
        self.assertEqual(wnn.read_wnn(self.path("m.wnn")).name, "ck")

    def test_clear_errors(self):
        state = self.make_checkpoint(BASE)
        r = self.export("--combine-tokens", "4", expect_ok=False)
        self.assertIn("--combine-tokens needs a combining module", r.stderr)
        r = self.export("--keep-ratio", "1.5", expect_ok=False)
        self.assertIn("winnow_keep_ratio", r.stderr)
        r = self.export("--combine-layer", "1", expect_ok=False)  # no winnow.combine.*
        self.assertIn("lacks tensor 'winnow.combine.tokens'", r.stderr)
        del state["bert.encoder.layer.2.output.dense.bias"]
        torch.save(state, self.path("ck/pytorch_model.bin"))
        r = self.export(expect_ok=False)
        self.assertIn("bert.encoder.layer.2.output.dense.bias", r.stderr)
        r = subprocess.run([PYTHON, os.path.join(SCRIPTS, "export_model.py"), "--checkpoint",
                            self.path("nothing"), "--out", self.path("x.wnn")],
                           capture_output=True, text=True)
        self.assertIn("no config.json", r.stderr)

    def test_old_layer_norm_names(self):
        """gamma/beta are accepted as weight/bias."""
        state = self.make_checkpoint(BASE)
        old = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias",
                                                                        "LayerNorm.beta"): v
               for k, v in state.items()}
        old["bert.embeddings.position_ids"] = torch.arange(40)[None]
        torch.save(old, self.path("ck/pytorch_model.bin"))
        self.export()
        m = wnn.read_wnn(self.path("m.wnn"))
        np.testing.assert_array_equal(m.tensors["encoder.1.ffn.ln.weight"],
                                      state["bert.encoder.layer.1.output.LayerNorm.weight"].numpy())


if __name__ == "__main__":
    torch.set_num_threads(2)
    unittest.main()
