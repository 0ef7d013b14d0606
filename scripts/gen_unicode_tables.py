#!/usr/bin/python3
"""Generate model/unicode_tables.c, the Unicode data of winnow's tokenizer.

The tokenizer (model/tokenizer.c) reproduces Hugging Face's BertTokenizer
(uncased), which asks five questions of each code point: is it dropped
(control), a word break (whitespace), a CJK ideograph, punctuation, and what
does it become after str.lower() and NFD (with Mn marks removed later).
Greek final sigma also needs the Cased and Case_Ignorable properties.

This script answers them once per code point from Debian's unicode-data
package (UnicodeData.txt, SpecialCasing.txt, DerivedCoreProperties.txt) and
stores the answers in a two-level table, so the C side does one lookup per
non-ASCII code point and no Unicode algorithm beyond Hangul decomposition,
canonical reordering and the final-sigma context.

The layout is described in model/unicode.h; keep the two in step.

Usage: /usr/bin/python3 scripts/gen_unicode_tables.py [--ucd DIR] [--out FILE]
"""

import argparse
import os
import re
import subprocess
import sys
import unicodedata

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_CP = 0x110000

# Must match WINNOW_USHIFT in model/unicode.h (the generated file asserts it).
SHIFT = 7

# Flag bits, as in model/unicode.h.
U_DROP = 1 << 0             # removed by clean_text
U_SPACE = 1 << 1            # ends a word
U_CJK = 1 << 2              # spaced out by _tokenize_chinese_chars
U_CASED = 1 << 3            # Cased (for final sigma)
U_CASE_IGNORABLE = 1 << 4   # Case_Ignorable (for final sigma)
U_OUT_MN = 1 << 5           # the single output is Mn: removed
U_OUT_PUNCT = 1 << 6        # the single output is punctuation
U_PUNCT = 1 << 7            # the code point itself is punctuation (cased mode)

# Packed sequence entries: code point | ccc << 21 | Mn << 29 | punct << 30.
SEQ_CCC_SHIFT = 21
SEQ_MN = 1 << 29
SEQ_PUNCT = 1 << 30

# BasicTokenizer._is_chinese_char's ranges, exactly.
CJK_RANGES = [(0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF),
              (0x2A700, 0x2B73F), (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF),
              (0xF900, 0xFAFF), (0x2F800, 0x2FA1F)]

HANGUL_FIRST, HANGUL_COUNT = 0xAC00, 11172


def read_lines(path):
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line:
                yield line


def parse_unicode_data(path):
    """gc, ccc, bidi, decomposition and simple lowercase for every code point."""
    gc = ["Cn"] * MAX_CP
    ccc = [0] * MAX_CP
    bidi = [""] * MAX_CP
    decomp = {}
    lower = {}
    first = None
    for line in read_lines(path):
        f = line.split(";")
        cp = int(f[0], 16)
        if f[1].endswith(", First>"):
            first = cp
            continue
        lo = first if f[1].endswith(", Last>") else cp
        first = None
        for c in range(lo, cp + 1):
            gc[c] = f[2]
            ccc[c] = int(f[3])
            bidi[c] = f[4]
        if f[5] and not f[5].startswith("<"):
            decomp[cp] = [int(x, 16) for x in f[5].split()]
        if f[13]:
            lower[cp] = int(f[13], 16)
    return gc, ccc, bidi, decomp, lower


def parse_special_casing(path):
    """Unconditional full lowercase mappings (what CPython's str.lower uses)."""
    full = {}
    for line in read_lines(path):
        f = [x.strip() for x in line.split(";")]
        # code; lower; title; upper; [condition;]  -- a non-empty condition
        # (Final_Sigma, a language) is not applied by str.lower().
        if len(f) > 4 and f[4]:
            continue
        full[int(f[0], 16)] = [int(x, 16) for x in f[1].split()]
    return full


def parse_property(path, name):
    out = set()
    for line in read_lines(path):
        rng, prop = [x.strip() for x in line.split(";")[:2]]
        if prop != name:
            continue
        lo, _, hi = rng.partition("..")
        out.update(range(int(lo, 16), int(hi or lo, 16) + 1))
    return out


def unicode_version(ucd):
    """The Debian package version, and the version the files declare."""
    try:
        pkg = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "unicode-data"],
                             check=True, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pkg = "unknown"
    with open(os.path.join(ucd, "DerivedCoreProperties.txt"), encoding="utf-8") as f:
        m = re.search(r"DerivedCoreProperties-(\d+\.\d+\.\d+)\.txt", f.readline())
    return (m.group(1) if m else None), pkg


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ucd", default="/usr/share/unicode",
                    help="directory of the Unicode Character Database (default: %(default)s)")
    ap.add_argument("--out", default=os.path.join(ROOT, "model", "unicode_tables.c"),
                    help="output C file (default: %(default)s)")
    args = ap.parse_args()

    version, pkg = unicode_version(args.ucd)
    if not version:
        sys.exit("gen_unicode_tables: cannot find the Unicode version of "
                 f"'{args.ucd}/DerivedCoreProperties.txt'")
    gc, ccc, bidi, decomp, simple_lower = parse_unicode_data(
        os.path.join(args.ucd, "UnicodeData.txt"))
    special_lower = parse_special_casing(os.path.join(args.ucd, "SpecialCasing.txt"))
    dcp = os.path.join(args.ucd, "DerivedCoreProperties.txt")
    cased = parse_property(dcp, "Cased")
    case_ignorable = parse_property(dcp, "Case_Ignorable")

    def full_decomp(cp):
        if cp not in decomp:
            return [cp]
        return [d for c in decomp[cp] for d in full_decomp(c)]

    def full_lower(cp):
        if cp in special_lower:
            return special_lower[cp]
        return [simple_lower.get(cp, cp)]

    def is_punct(cp):
        return (33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or
                123 <= cp <= 126 or gc[cp].startswith("P"))

    def out_props(cp):
        return ccc[cp], gc[cp] == "Mn", is_punct(cp)

    cjk = set()
    for lo, hi in CJK_RANGES:
        cjk.update(range(lo, hi + 1))

    # One record per code point: (flags, ccc, seq_len, arg); identical records
    # are shared. Single outputs are stored as a delta, so that e.g. all of
    # A-Z share one record.
    records = {}
    record_list = []
    seq_pool = []
    seq_index = {}
    cp_record = [0] * MAX_CP
    n_seq = 0
    for cp in range(MAX_CP):
        g = gc[cp]
        flags = 0
        if cp in cased:
            flags |= U_CASED
        if cp in case_ignorable:
            flags |= U_CASE_IGNORABLE
        drop = cp == 0 or cp == 0xFFFD or (g.startswith("C") and cp not in (9, 10, 13))
        # clean_text's whitespace, and what str.split() splits on besides
        # (U+2028, U+2029 survive clean_text and still split).
        space = (cp in (32, 9, 10, 13) or g == "Zs" or bidi[cp] in ("WS", "B", "S"))
        rec_ccc, seq_len, arg = 0, 0, 0
        if drop:
            flags = U_DROP  # nothing else about it is ever asked
        elif space:
            flags = U_SPACE
        elif HANGUL_FIRST <= cp < HANGUL_FIRST + HANGUL_COUNT:
            pass  # decomposed algorithmically in C; Lo, ccc 0
        else:
            if cp in cjk:
                flags |= U_CJK
            if is_punct(cp):
                flags |= U_PUNCT
            out = [d for lc in full_lower(cp) for d in full_decomp(lc)]
            if len(out) == 1:
                c, mn, p = out_props(out[0])
                rec_ccc = c
                flags |= (U_OUT_MN if mn else 0) | (U_OUT_PUNCT if p else 0)
                arg = out[0] - cp
            else:
                packed = []
                for o in out:
                    c, mn, p = out_props(o)
                    packed.append(o | c << SEQ_CCC_SHIFT | (SEQ_MN if mn else 0) |
                                  (SEQ_PUNCT if p else 0))
                key = tuple(packed)
                if key not in seq_index:
                    seq_index[key] = len(seq_pool)
                    seq_pool.extend(packed)
                seq_len, arg = len(packed), seq_index[key]
                n_seq += 1
        rec = (flags, rec_ccc, seq_len, arg)
        if rec not in records:
            records[rec] = len(record_list)
            record_list.append(rec)
        cp_record[cp] = records[rec]

    assert len(record_list) < 65536 and len(seq_pool) < 65536
    assert max(r[2] for r in record_list) < 256

    # Two-level table: stage1[cp >> SHIFT] is a block number, stage2 holds the
    # blocks of 1 << SHIFT record indices; identical blocks are shared.
    bsize = 1 << SHIFT
    blocks = {}
    stage1 = []
    stage2 = []
    for b in range(MAX_CP // bsize):
        blk = tuple(cp_record[b * bsize:(b + 1) * bsize])
        if blk not in blocks:
            blocks[blk] = len(blocks)
            stage2.extend(blk)
        stage1.append(blocks[blk])
    assert len(blocks) < 65536

    self_check(gc, cp_record, record_list, seq_pool)

    def c_array(values, per_line):
        lines = []
        for i in range(0, len(values), per_line):
            lines.append("\t" + ", ".join(str(v) for v in values[i:i + per_line]) + ",")
        return "\n".join(lines)

    with open(args.out + ".tmp", "w", encoding="utf-8") as f:
        f.write(f"""\
/*
 * generated by scripts/gen_unicode_tables.py from UnicodeData.txt version {version}
 * (with SpecialCasing.txt and DerivedCoreProperties.txt of the same version;
 * Debian package unicode-data {pkg}); do not edit.
 *
 * {len(record_list)} records, {len(blocks)} blocks of {bsize}, {len(seq_pool)} sequence
 * entries for {n_seq} code points whose lower-cased NFD is longer than one.
 * Layout: model/unicode.h.
 */
#include "unicode.h"

_Static_assert(WINNOW_USHIFT == {SHIFT}, "regenerate with scripts/gen_unicode_tables.py");

const char winnow_unicode_version[] = "{version}";

const uint16_t winnow_ustage1[{len(stage1)}] = {{
{c_array(stage1, 16)}
}};

const uint16_t winnow_ustage2[{len(stage2)}] = {{
{c_array(stage2, 16)}
}};

const struct winnow_uchar winnow_uchars[{len(record_list)}] = {{
""")
        for flags, c, n, arg in record_list:
            f.write(f"\t{{ {flags}, {c}, {n}, {arg} }},\n")
        f.write(f"""\
}};

const uint32_t winnow_useq[{len(seq_pool)}] = {{
{c_array([hex(v) for v in seq_pool], 8)}
}};
""")
    os.replace(args.out + ".tmp", args.out)
    size = len(stage1) * 2 + len(stage2) * 2 + len(record_list) * 8 + len(seq_pool) * 4
    print(f"gen_unicode_tables: wrote {args.out} (Unicode {version}, "
          f"{size // 1024} KiB of tables)")


def self_check(gc, cp_record, record_list, seq_pool):
    """Compare with CPython's own str.lower() and unicodedata.normalize().

    CPython's data is another Unicode version, so only code points that are
    assigned with the same category in both are compared; any disagreement
    there is a bug in this script.
    """
    bad = 0
    for cp in range(MAX_CP):
        ch = chr(cp)
        if gc[cp] == "Cn" or unicodedata.category(ch) != gc[cp] or gc[cp] == "Cs":
            continue
        flags, _, n, arg = record_list[cp_record[cp]]
        if flags & (U_DROP | U_SPACE) or 0xAC00 <= cp < 0xAC00 + 11172:
            continue
        got = [cp + arg] if n == 0 else [v & 0x1FFFFF for v in seq_pool[arg:arg + n]]
        want = [ord(c) for c in unicodedata.normalize("NFD", ch.lower())]
        if got != want:
            bad += 1
            if bad < 10:
                print(f"gen_unicode_tables: U+{cp:04X}: {got} != CPython {want}",
                      file=sys.stderr)
    if bad:
        sys.exit(f"gen_unicode_tables: {bad} code points disagree with CPython")


if __name__ == "__main__":
    main()
