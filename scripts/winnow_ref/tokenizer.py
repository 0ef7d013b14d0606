"""Reference WordPiece tokenizer: Hugging Face BertTokenizer (uncased), with
the byte span of every token.

This is the specification that model/tokenizer.c is tested against
(scripts/make_tokenizer_fixture.py writes tests/fixtures/tokenizer/ from it).
It is written from the algorithm, not from the C code, and keeps the shape of
Hugging Face's BasicTokenizer + WordpieceTokenizer: whole-string passes,
one after the other, over a list of (code point, source) pairs, where source
is the index of the input code point a character comes from.

Unicode data: the C tables come from Debian's unicode-data package (Unicode
15.0.0 in Debian 12), while /usr/bin/python3's unicodedata and str.lower()
are Unicode 14.0.0. So this module does not use them: it parses
UnicodeData.txt, SpecialCasing.txt and DerivedCoreProperties.txt from the
same directory (/usr/share/unicode) with its own code, and implements
str.lower() (full mapping, final sigma), NFD (recursive decomposition,
Hangul, canonical ordering) and str.isspace() on that data. The fixture
script checks, on every corpus line made only of characters that both
versions agree on, that this module gives exactly what CPython's own
unicodedata/str.lower()/str.split() give through a literal transcription of
Hugging Face's code.
"""

import os

UCD_DIR = "/usr/share/unicode"

# BasicTokenizer._is_chinese_char
_CJK = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
        (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))

_S_BASE, _L_BASE, _V_BASE, _T_BASE = 0xAC00, 0x1100, 0x1161, 0x11A7
_V_COUNT, _T_COUNT = 21, 28
_S_COUNT = 19 * _V_COUNT * _T_COUNT


def _data_lines(path):
    with open(path, encoding="utf-8") as f:
        for raw in f:
            body = raw.partition("#")[0].strip()
            if body:
                yield [x.strip() for x in body.split(";")]


class UnicodeDB:
    """The few Unicode properties the tokenizer needs, from the UCD files."""

    def __init__(self, ucd_dir=UCD_DIR):
        self.category = {}      # code point -> general category (absent: Cn)
        self.ccc = {}           # absent: 0
        self.bidi = {}
        self.decomposition = {}  # canonical only, one level
        self.lower_simple = {}
        pending = None
        for f in _data_lines(os.path.join(ucd_dir, "UnicodeData.txt")):
            cp = int(f[0], 16)
            name = f[1]
            if name.endswith("First>"):
                pending = cp
                continue
            span = range(pending, cp + 1) if name.endswith("Last>") else (cp,)
            pending = None
            for c in span:
                self.category[c] = f[2]
                if f[3] != "0":
                    self.ccc[c] = int(f[3])
                self.bidi[c] = f[4]
            if f[5] and f[5][0] != "<":
                self.decomposition[cp] = tuple(int(x, 16) for x in f[5].split())
            if f[13]:
                self.lower_simple[cp] = int(f[13], 16)
        self.lower_special = {}
        for f in _data_lines(os.path.join(ucd_dir, "SpecialCasing.txt")):
            conditions = f[4] if len(f) > 4 else ""
            if not conditions:  # str.lower() applies the unconditional ones
                self.lower_special[int(f[0], 16)] = tuple(int(x, 16) for x in f[1].split())
        self.cased = set()
        self.case_ignorable = set()
        for f in _data_lines(os.path.join(ucd_dir, "DerivedCoreProperties.txt")):
            target = {"Cased": self.cased, "Case_Ignorable": self.case_ignorable}.get(f[1])
            if target is None:
                continue
            first, _, last = f[0].partition("..")
            target.update(range(int(first, 16), int(last or first, 16) + 1))
        with open(os.path.join(ucd_dir, "DerivedCoreProperties.txt"), encoding="utf-8") as fh:
            self.version = fh.readline().split("-")[1].rsplit(".", 1)[0]

    def cat(self, cp):
        return self.category.get(cp, "Cn")

    def isspace(self, cp):
        """CPython's str.isspace(): bidi class WS, B or S, or category Zs."""
        return self.bidi.get(cp) in ("WS", "B", "S") or self.cat(cp) == "Zs"

    def nfd_chars(self, cp):
        """Full canonical decomposition of one code point, not yet reordered."""
        if _S_BASE <= cp < _S_BASE + _S_COUNT:
            s = cp - _S_BASE
            out = [_L_BASE + s // (_V_COUNT * _T_COUNT),
                   _V_BASE + (s % (_V_COUNT * _T_COUNT)) // _T_COUNT]
            if s % _T_COUNT:
                out.append(_T_BASE + s % _T_COUNT)
            return out
        if cp not in self.decomposition:
            return [cp]
        out = []
        for c in self.decomposition[cp]:
            out.extend(self.nfd_chars(c))
        return out


class BertTokenizerRef:
    """BertTokenizer(do_lower_case=True) over a vocab.txt; spans in bytes."""

    def __init__(self, vocab_path, do_lower_case=True, max_input_chars_per_word=100,
                 unk_token="[UNK]", ucd_dir=UCD_DIR):
        with open(vocab_path, encoding="utf-8", newline="") as f:
            lines = f.read().split("\n")
        if lines and lines[-1] == "":
            lines.pop()  # the final newline ends the last token
        # load_vocab fills a dict line by line: a repeated token keeps its
        # last id.
        self.vocab = {token: index for index, token in enumerate(lines)}
        self.do_lower_case = do_lower_case
        self.max_chars = max_input_chars_per_word
        self.unk_token = unk_token
        self.unk_id = self.vocab[unk_token]
        self.db = UnicodeDB(ucd_dir)

    # -- character classes, as BasicTokenizer defines them -----------------

    def _is_whitespace(self, cp):
        return cp in (0x20, 0x09, 0x0A, 0x0D) or self.db.cat(cp) == "Zs"

    def _is_control(self, cp):
        if cp in (0x09, 0x0A, 0x0D):
            return False
        return self.db.cat(cp).startswith("C")

    def _is_punctuation(self, cp):
        if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
            return True
        return self.db.cat(cp).startswith("P")

    @staticmethod
    def _is_chinese_char(cp):
        return any(lo <= cp <= hi for lo, hi in _CJK)

    # -- the passes; a "text" is a list of (code point, source index) -------

    def _clean_text(self, text):
        out = []
        for cp, src in text:
            if cp == 0 or cp == 0xFFFD or self._is_control(cp):
                continue
            out.append((0x20, src) if self._is_whitespace(cp) else (cp, src))
        return out

    def _tokenize_chinese_chars(self, text):
        out = []
        for cp, src in text:
            if self._is_chinese_char(cp):
                out += [(0x20, None), (cp, src), (0x20, None)]
            else:
                out.append((cp, src))
        return out

    def _split(self, text):
        """str.split() with no argument: runs of isspace() separate words."""
        words, cur = [], []
        for item in text:
            if self.db.isspace(item[0]):
                if cur:
                    words.append(cur)
                cur = []
            else:
                cur.append(item)
        if cur:
            words.append(cur)
        return words

    def _final_sigma(self, word, i):
        """CPython's handle_capital_sigma: Final_Sigma context of word[i]."""
        db = self.db
        j = i - 1
        while j >= 0 and word[j][0] in db.case_ignorable:
            j -= 1
        if j < 0 or word[j][0] not in db.cased:
            return False
        j = i + 1
        while j < len(word) and word[j][0] in db.case_ignorable:
            j += 1
        return j == len(word) or word[j][0] not in db.cased

    def _lower(self, word):
        out = []
        for i, (cp, src) in enumerate(word):
            if cp == 0x3A3:
                out.append((0x3C2 if self._final_sigma(word, i) else 0x3C3, src))
            elif cp in self.db.lower_special:
                out += [(c, src) for c in self.db.lower_special[cp]]
            else:
                out.append((self.db.lower_simple.get(cp, cp), src))
        return out

    def _nfd(self, word):
        out = [(c, src) for cp, src in word for c in self.db.nfd_chars(cp)]
        # Canonical ordering: stable sort of each run of non-zero classes.
        i = 0
        while i < len(out):
            if self.db.ccc.get(out[i][0], 0) == 0:
                i += 1
                continue
            j = i
            while j < len(out) and self.db.ccc.get(out[j][0], 0) != 0:
                j += 1
            out[i:j] = sorted(out[i:j], key=lambda item: self.db.ccc[item[0]])
            i = j
        return out

    def _run_strip_accents(self, word):
        return [item for item in self._nfd(word) if self.db.cat(item[0]) != "Mn"]

    def _run_split_on_punc(self, word):
        output, start_new_word = [], True
        for item in word:
            if self._is_punctuation(item[0]):
                output.append([item])
                start_new_word = True
            else:
                if start_new_word:
                    output.append([])
                start_new_word = False
                output[-1].append(item)
        return output

    def basic_tokenize(self, text):
        text = self._clean_text(text)
        text = self._tokenize_chinese_chars(text)
        split_tokens = []
        for token in self._split(text):
            if self.do_lower_case:
                token = self._lower(token)
                token = self._run_strip_accents(token)
            split_tokens.extend(self._run_split_on_punc(token))
        # whitespace_tokenize(" ".join(split_tokens)) drops empty words.
        return [w for w in split_tokens if w]

    def _wordpiece(self, word):
        """Pieces as (token, first index, end index) into word, or None."""
        if len(word) > self.max_chars:
            return None
        chars = "".join(chr(cp) for cp, _ in word)
        pieces, start = [], 0
        while start < len(chars):
            end, cur = len(chars), None
            while start < end:
                sub = chars[start:end]
                if start > 0:
                    sub = "##" + sub
                if sub in self.vocab:
                    cur = sub
                    break
                end -= 1
            if cur is None:
                return None
            pieces.append((cur, start, end))
            start = end
        return pieces

    def encode(self, text):
        """Token ids and byte spans [(id, start, end)], no [CLS]/[SEP]."""
        offsets = [0]
        for ch in text:
            offsets.append(offsets[-1] + len(ch.encode("utf-8")))
        chars = [(ord(ch), i) for i, ch in enumerate(text)]
        out = []
        for word in self.basic_tokenize(chars):
            srcs = [src for _, src in word]
            pieces = self._wordpiece(word)
            if pieces is None:
                out.append((self.unk_id, offsets[min(srcs)], offsets[max(srcs) + 1]))
                continue
            for tok, a, b in pieces:
                part = srcs[a:b]
                out.append((self.vocab[tok], offsets[min(part)], offsets[max(part) + 1]))
        return out

    def encode_ids(self, text):
        return [tid for tid, _, _ in self.encode(text)]

    def tokenize(self, text):
        inv = {v: k for k, v in self.vocab.items()}
        return [inv[tid] for tid in self.encode_ids(text)]
