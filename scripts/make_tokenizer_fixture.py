#!/usr/bin/python3
"""Write the tokenizer conformance fixture: tests/fixtures/tokenizer/.

  corpus.txt    one case per line ("\\n" separated, valid UTF-8, no "\\n"
                inside a case; \\r, \\v, U+2028 and the like are part of it)
  corpus.ids    per line, the ids BertTokenizer gives, [CLS] 101 first and
                [SEP] 102 last, space-separated
  corpus.spans  per line, the byte span "start-end" of each token (no
                [CLS]/[SEP]), space-separated; empty for no tokens

The expected values come from scripts/winnow_ref/tokenizer.py, the
independent Python reference, over model/weights/vocab.txt. As a check of
the reference itself, every line whose characters have the same properties
in CPython's unicodedata (Unicode 14) as in Debian's UCD (15.0) is also run
through a literal transcription of Hugging Face's BasicTokenizer and
WordpieceTokenizer on CPython's own str.lower()/unicodedata/str.split(), and
must give the same ids. Lines with characters new in Unicode 15 are listed.

Usage: /usr/bin/python3 scripts/make_tokenizer_fixture.py [--vocab FILE] [--out DIR]
"""

import argparse
import os
import random
import sys
import unicodedata

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from winnow_ref.tokenizer import BertTokenizerRef  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLS, SEP = 101, 102
MIN_LINES = 300


# --------------------------------------------------------------------------
# The corpus
# --------------------------------------------------------------------------

PROSE = [
    "The quick brown fox jumps over the lazy dog.",
    "It was a bright cold day in April, and the clocks were striking thirteen o'clock somewhere.",
    "Please find attached the quarterly report; let me know if anything looks off.",
    "We can't guarantee delivery before Friday, but we'll try our best.",
    "Unaffable people rarely make good neighbours, or so my grandmother claimed.",
    "She said: \"Don't forget the milk!\" -- and then she left.",
    "Tokenization splits text into sub-word units (word pieces) using a greedy longest-match rule.",
    "Mr. Smith's dog-walking business grew 300% in 2019-2020.",
    "Hello, world!",
    "HELLO WORLD, SHOUTING IS RUDE",
    "i like strawberries",
    "Antidisestablishmentarianism is a famously long English word.",
    "Pneumonoultramicroscopicsilicovolcanoconiosis",
    "The meeting is at 10:30am (GMT+1) in room B-204.",
    "Yes/no/maybe? Choose one... or don't!!!",
    "Call me at +1 (555) 012-3456 ext. 78 before 5 p.m.",
    "Supercalifragilisticexpialidocious, even though the sound of it is something quite atrocious.",
    "They re-entered the co-operative's headquarters through the north-east door.",
    "Dear Sir/Madam, I am writing to inform you that your account has been suspended.",
    "CLICK HERE to claim your FREE prize!!! Limited time offer, act now.",
    "Re: Re: Fwd: [list-name] weekly digest, vol 12, issue 4",
    "The cat sat on the mat; the dog sat on the log.",
    "Whoever said money can't buy happiness didn't know where to shop.",
    "A journey of a thousand miles begins with a single step.",
    "   leading spaces and trailing spaces   ",
    "tabs\tbetween\twords\tand a trailing tab\t",
    "multiple     internal      spaces",
    "e.g. i.e. etc. vs. a.m. p.m.",
    "rock'n'roll isn't dead; it's just resting",
    "#hashtag @mention $TICKER %percent ^caret &amp *star",
    "snake_case_identifier and camelCaseIdentifier and kebab-case-identifier",
    "[CLS] [SEP] [UNK] [MASK] [PAD] appear literally in this text",
    "##not a continuation, just hashes ## # ###",
    "x",
    "I",
    "a b c d e f g h i j k l m n o p q r s t u v w x y z",
    "A B C D E F G H I J K L M N O P Q R S T U V W X Y Z",
    "0 1 2 3 4 5 6 7 8 9",
    "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~",
    "Semicolons; colons: commas, periods. Question marks? Exclamation marks!",
]

EMAIL = [
    "From: John Doe <john.doe@example.com>",
    "To: \"Support Team\" <support@example.org>, jane@example.net",
    "Subject: Re: [dev-list] Build failures on the nightly branch",
    "Date: Mon, 2 Sep 2002 10:21:33 +0100",
    "Message-ID: <20020902102133.GA1234@mail.example.com>",
    "Received: from mail.example.org (mail.example.org [192.0.2.17]) by mx.example.com (Postfix) with ESMTP id 4F2A13C1",
    "Content-Type: text/plain; charset=\"iso-8859-1\"",
    "Content-Transfer-Encoding: quoted-printable",
    "X-Spam-Status: No, hits=-2.5 required=5.0 tests=BAYES_00,USER_AGENT_MUTT version=2.43",
    "Return-Path: <bounce-12345@lists.example.com>",
    "MIME-Version: 1.0",
    "In-Reply-To: <3D6E2F1B.5080207@example.net>",
    "> > quoted text from an earlier message",
    "=20=3D=0A soft line breaks and qp escapes=",
    "-- ",
    "Sent from my phone",
    "Unsubscribe: mailto:unsubscribe-me@example.com?subject=remove",
    "List-Id: Discussion of widgets <widgets.lists.example.org>",
]

URLS_HTML = [
    "https://www.example.com/path/to/page.html?query=1&lang=en#section-2",
    "http://192.0.2.1:8080/admin/login.php",
    "ftp://files.example.org/pub/linux/kernel/v2.4/",
    "Visit www.example.com or example.org/index for more.",
    "<html><head><title>Win a prize</title></head><body bgcolor=\"#FFFFFF\">",
    "<a href=\"http://click.example.com/track?id=abc123\">click here</a>",
    "<p style=\"font-family: Arial, sans-serif; font-size: 12px\">Hello&nbsp;there</p>",
    "&lt;script&gt;alert('x')&lt;/script&gt; &amp; &quot;entities&quot; &#169; &#x263A;",
    "<!-- a comment --> <br/> <img src=\"cid:image001.png@01D2\" width=1 height=1>",
    "mailto:someone@example.com",
    "user:password@host.example.com:22/~user/file.tar.gz",
    "https://example.com/%E2%9C%93/encoded%20path",
]

NUMBERS = [
    "3.14159 2.71828 1.41421",
    "1,000,000 and 1.000.000 and 1 000 000",
    "$19.99 £5 €10,50 ¥1000 ₹250 ₩5000",
    "50% off, 2x faster, 3rd place, 21st century, 100km/h",
    "0x1F 0b1010 0o777 1e-10 6.022e23",
    "192.168.0.1 10.0.0.255 ::1 fe80::1ff:fe23:4567:890a",
    "12/31/1999 31.12.1999 1999-12-31T23:59:59Z",
    "Order #12345-ABC shipped on 2024-03-15",
    "٠١٢٣٤٥٦٧٨٩ ०१२३४५६७८९ ๐๑๒๓๔๕๖๗๘๙",
    "½ ¼ ¾ ² ³ ¹ ⅓ ⅔ Ⅻ ⅻ",
    "９９ｘ ０１２ ＡＢＣ ａｂｃ fullwidth",
    "1234567890123456789012345678901234567890",
]

LATIN = [
    "café naïve résumé façade coöperate",
    "Ångström Zürich São Paulo Dvořák Łódź Kraków",
    "İstanbul and ıstanbul and ISTANBUL",
    "Straße STRASSE straße ß ẞ",
    "Œuvre œuvre Æsir æther Ø ø Þorn ðe",
    "ﬁnancial ﬂow ﬀ ﬃ ﬄ ligatures",
    "ÀÁÂÃÄÅ àáâãäå ÈÉÊË èéêë ÌÍÎÏ ìíîï",
    "ÑÒÓÔÕÖ ñòóôõö ÙÚÛÜ ùúûü ÝŸ ýÿ Ç ç",
    "Việt Nam, Tiếng Việt có dấu đầy đủ",
    "Ελληνικά και Français et Español y Português e Română și Türkçe",
    "Čeština Slovenčina Hrvatski Slovenščina Magyar Ő ő Ű ű",
    "Ǆ ǅ ǆ Ǉ ǈ ǉ titlecase digraphs",
    "ŉ ǰ ẖ ẗ ẘ ẙ ẚ special-cased small letters",
    "Å (U+212B ANGSTROM SIGN) Ω (OHM) K (KELVIN)",
]

GREEK = [
    "ΟΔΟΣ",
    "ΟΔΟΣ ΟΔΟΣ.",
    "ΟΔΟΣ.ΟΔΟΣ",
    "Σ",
    "ΣΑ",
    "ΑΣ",
    "ΑΣΑ",
    "ΑΣ.Β",
    "ΑΣ. Β",
    "ΑΣ'Β",
    "ΑΣ'",
    "Α'Σ",
    "ΑΣ\u0301",
    "ΑΣ\u0301Β",
    "Α\u0301Σ",
    "ΑΣ\u200bΒ",
    "ΑΣ\u200b",
    "1Σ 1ΑΣ Σ1 ΑΣ1",
    "ΣΣΣ ΑΣΣ",
    "ΑΣ中",
    "ΑΣ가",
    "ΑΣ\u2028Β",
    "ΑΣ\u00a0Β",
    "ΌΣΟΙ ΈΦΥΓΑΝ ΑΠΌ ΤΗΝ ΠΌΛΗ",
    "Η Οδύσσεια του ΟΔΥΣΣΈΑ",
    "Καλημέρα κόσμε, τι κάνεις;",
    "ά έ ή ί ό ύ ώ ΐ ΰ ϊ ϋ",
    "ᾼ ᾳ ῼ ῳ ᾈ ᾀ (prosgegrammeni)",
    "; · ΄ ΅ (Greek question mark, ano teleia, tonos)",
    "ϐ ϑ ϕ ϖ ϰ ϱ ϲ ϵ Ϲ",
]

SCRIPTS = [
    "Привет, мир! Как дела?",
    "ЁЛКА ёлка Йогурт йогурт",
    "Съешь же ещё этих мягких французских булок, да выпей чаю.",
    "Україна, Беларусь, Қазақстан, Српски",
    "مرحبا بالعالم! كيف حالك؟",
    "العَرَبِيَّة مع التشكيل الكامل",
    "שָׁלוֹם עוֹלָם",
    "नमस्ते दुनिया, आप कैसे हैं?",
    "हिन्दी में क़ ख़ ग़ ज़ ड़ ढ़ फ़ य़",
    "สวัสดีชาวโลก ภาษาไทย",
    "ภาษาไทยไม่มีช่องว่างระหว่างคำ",
    "你好，世界！今天天气很好。",
    "中文字符与English混合text",
    "日本語のテキスト：ひらがな、カタカナ、漢字。",
    "ｶﾀｶﾅ ﾊﾝｶｸ halfwidth katakana",
    "한국어 텍스트: 안녕하세요, 세계!",
    "가나다라마바사 아자차카타파하",
    "ᄀᄁᄂ ᅡᅢ ᆨᆩ conjoining jamo",
    "ㄱㄴㄷ compatibility jamo",
    "豈 更 車 (compatibility ideographs)",
    "𠀀𠀁𠀂 CJK extension B",
    "㐀㐁 extension A and 〇 ideographic zero",
    "ქართული ენა Հայերեն լեզու",
    "ትግርኛ አማርኛ",
    "தமிழ் తెలుగు ಕನ್ನಡ മലയാളം",
    "বাংলা ਪੰਜਾਬੀ ગુજરાતી ଓଡ଼ିଆ",
    "ລາວ ພາສາ ខ្មែរ မြန်မာ",
    "ᠮᠣᠩᠭᠣᠯ Mongolian ᠠ᠎ᠡ",
    "Ⲁⲛⲟⲕ 𐌰𐌱𐌲 ᚠᚢᚦ runic and gothic",
]

EMOJI = [
    "I love it 😀😃😄 so much",
    "👍🏽 thumbs up with skin tone",
    "👨‍👩‍👧‍👦 family ZWJ sequence",
    "❤️ red heart with VS16 and ❤︎ with VS15",
    "🇫🇷 🇯🇵 flags",
    "🏳️‍🌈 rainbow flag",
    "emoji🎉inside🎉words",
    "★☆✓✗→←↑↓ ♠♣♥♦ ©®™",
    "😀" * 30,
    "👩🏻‍💻 technologist",
]

COMBINING = [
    "e\u0301 a\u0300 o\u0308 n\u0303 c\u0327",
    "cafe\u0301 vs café",
    "A\u030a vs Å vs \u212b",
    "q\u0323\u0307 vs q\u0307\u0323",
    "a\u0301\u0302\u0303\u0304\u0305\u0306\u0307",
    "\u0301leading combining mark",
    "x \u0301 y",
    "\u0301\u0302\u0303",
    "e\u0301\u0301\u0301\u0301\u0301\u0301\u0301\u0301\u0301\u0301\u0301\u0301",
    "Zalgo: Z\u0351\u036b\u0343a\u0367\u0310l\u0344g\u0311o\u0366",
    "ṩ ṩ vs s\u0323\u0307 vs s\u0307\u0323",
    "\U0001D15E \U0001D157\U0001D165 musical notes",
    "\U0001D16D\U0001D165 and \U0001D165\U0001D16D reordered Mc",
    "a\U0001D16D\u0301\U0001D165b",
    "a\u0f71\u0f72 \u0f73 tibetan",
    "İ\u0307 i\u0307 I\u0307",
    "ΑΣ\u0345",
    "\u0345",
    "ᾼΣ ᾼΣΑ",
    "한\u0301국",
    "\u1100\u1161\u11a8 vs 각",
    "U\u0308\u0301 Ǘ ǘ",
]

CONTROL = [
    "a\tb\tc",
    "a\vb",
    "a\fb",
    "a\rb",
    "a\r",
    "\rstart",
    "a\x00b",
    "\x00",
    "a\x01b\x02c\x1fd\x7fe",
    "a\x1cb\x1dc\x1ed\x1ff",
    "a\x85b",
    "a\u00a0b",
    "a\u00adb soft hyphen",
    "a\ufffdb",
    "\ufffd\ufffd\ufffd",
    "a\u200bb zero width space",
    "a\u200cb zwnj",
    "a\u200db zwj",
    "a\u200eb\u200fc lrm rlm",
    "a\u2028b line separator",
    "a\u2029b paragraph separator",
    "a\u2028\u2029b",
    "\u2028",
    "a\u202fb\u205fc\u3000d",
    "a\u1680b\u2000c\u200ad",
    "a\u180eb mongolian vowel separator",
    "a\ufeffb bom",
    "\ufeffBOM at start",
    "a\u2060b word joiner",
    "a\u2066b\u2069c isolates",
    "a\ue000b private use",
    "a\U000F0000b\U0010FFFDc supplementary private use",
    "a\U000E0001b\U000E0041c tags",
    "a\ufdd0b\uffffc\U0010FFFFd noncharacters",
    "a\U0001FFFEb",
    "a\u0378b unassigned",
    "\t\v\f\r \u00a0\u2028",
    "x\t\ty",
]

SPECIAL = [
    "",
    " ",
    "     ",
    "\t",
    "\u3000\u3000",
    "\u200b",
    "\u200b\u200d\ufeff",
    "abcdefghij" * 9 + "abcdefghi",
    "abcdefghij" * 10,
    "abcdefghij" * 10 + "a",
    "x" * 99,
    "x" * 100,
    "x" * 101,
    "x" * 300,
    "é" * 100,
    "é" * 101,
    "e\u0301" * 100,
    "e\u0301" * 101,
    "İ" * 100,
    "İ" * 101,
    "가" * 50,
    "가" * 51,
    "각" * 34,
    "ab." * 60,
    "a" * 150 + "." + "b" * 50,
    "word " + "y" * 101 + " word",
    "中" * 120,
    "😀" * 101,
    "Σ" * 120,
    "xyzzyqwfp zqxj",
    "thequickbrownfoxjumpsoverthelazydog",
    "unaffable",
    "UNAFFABLE",
    "hyperparameterization",
    "ab\u0301cd",
    "\U0001F6DC wireless (new in Unicode 15)",
    "\U00031350\U00031351 CJK extension H (Unicode 15)",
    "\u0cf3 kannada and \U00011F00 kawi (Unicode 15)",
    "\U0001FA75 \U0001FAE8 emoji 15",
]


def random_lines(db, count, seed=20240601):
    """Seeded mixtures of the hard cases, to shake out interactions."""
    rnd = random.Random(seed)
    words = ["the", "Email", "FREE", "money", "unaffable", "naïve", "ΟΔΟΣ",
             "ΑΣ", "Σ", "Москва", "東京", "서울", "ไทย", "हिन्दी", "مرحبا",
             "x" * 40, "İ", "ß", "ﬁ", "résumé", "Ångström", "a'b", "i.e.",
             "www.example.com", "<b>", "&amp;", "42", "3.14", "😀", "👍🏽",
             "e\u0301", "\u0301", "ᾼ", "\U0001D15E", "가나", "豈", "𠀀"]
    seps = [" ", " ", " ", "", "", "\t", "\u00a0", "\u2028", "\u200b", "\u3000",
            "\x00", "\ufffd", "\r", "\v", "\x85", "\u200d", ".", "-", "/", "'"]
    # Every assigned code point of the UCD except surrogates and "\n".
    assigned = [cp for cp, gc in db.category.items() if gc != "Cs" and cp != 10]
    assigned.sort()
    lines = []
    for i in range(count):
        parts = []
        for _ in range(rnd.randint(1, 14)):
            r = rnd.random()
            if r < 0.45:
                w = rnd.choice(words)
                if rnd.random() < 0.3:
                    w = w.upper()
                parts.append(w)
            elif r < 0.75:
                parts.append("".join(chr(rnd.choice(assigned))
                                     for _ in range(rnd.randint(1, 6))))
            else:
                parts.append("".join(chr(rnd.randint(0x20, 0x7E))
                                     for _ in range(rnd.randint(1, 10))))
            parts.append(rnd.choice(seps))
        lines.append("".join(parts))
    return lines


def corpus(db):
    lines = []
    for group in (PROSE, EMAIL, URLS_HTML, NUMBERS, LATIN, GREEK, SCRIPTS, EMOJI,
                  COMBINING, CONTROL, SPECIAL):
        lines.extend(group)
    lines.extend(random_lines(db, 160))
    return lines


# --------------------------------------------------------------------------
# Hugging Face's algorithm on CPython's own Unicode data, transcribed
# literally (BasicTokenizer + WordpieceTokenizer of transformers' BERT).
# --------------------------------------------------------------------------

def hf_literal_ids(text, vocab, unk_id=100, max_chars=100):
    def is_whitespace(ch):
        return ch in (" ", "\t", "\n", "\r") or unicodedata.category(ch) == "Zs"

    def is_control(ch):
        if ch in ("\t", "\n", "\r"):
            return False
        return unicodedata.category(ch).startswith("C")

    def is_punctuation(ch):
        cp = ord(ch)
        if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
            return True
        return unicodedata.category(ch).startswith("P")

    def is_chinese(cp):
        return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or
                0x20000 <= cp <= 0x2A6DF or 0x2A700 <= cp <= 0x2B73F or
                0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF or
                0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)

    out = []
    for ch in text:
        cp = ord(ch)
        if cp == 0 or cp == 0xFFFD or is_control(ch):
            continue
        out.append(" " if is_whitespace(ch) else ch)
    text = "".join(out)
    text = "".join(f" {ch} " if is_chinese(ord(ch)) else ch for ch in text)
    split_tokens = []
    for token in text.strip().split():
        token = token.lower()
        token = "".join(c for c in unicodedata.normalize("NFD", token)
                        if unicodedata.category(c) != "Mn")
        output, start_new = [], True
        for ch in token:
            if is_punctuation(ch):
                output.append([ch])
                start_new = True
            else:
                if start_new:
                    output.append([])
                start_new = False
                output[-1].append(ch)
        split_tokens.extend("".join(x) for x in output)
    ids = []
    for token in " ".join(split_tokens).strip().split():
        chars = list(token)
        if len(chars) > max_chars:
            ids.append(unk_id)
            continue
        start, sub_tokens, bad = 0, [], False
        while start < len(chars):
            end, cur = len(chars), None
            while start < end:
                sub = "".join(chars[start:end])
                if start > 0:
                    sub = "##" + sub
                if sub in vocab:
                    cur = sub
                    break
                end -= 1
            if cur is None:
                bad = True
                break
            sub_tokens.append(vocab[cur])
            start = end
        ids.extend([unk_id] if bad else sub_tokens)
    return ids


def same_in_both_versions(ref, ch):
    """Does CPython's Unicode data agree with the UCD files on ch?"""
    cp = ord(ch)
    db = ref.db
    if unicodedata.category(ch) != db.cat(cp):
        return False
    if unicodedata.combining(ch) != db.ccc.get(cp, 0):
        return False
    dec = unicodedata.decomposition(ch)
    ours = db.decomposition.get(cp)
    if (dec if dec and not dec.startswith("<") else None) != (
            " ".join(f"{c:04X}" for c in ours) if ours else None):
        return False
    return True


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vocab", default=os.path.join(ROOT, "model", "weights", "vocab.txt"),
                    help="vocab.txt (default: %(default)s)")
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures", "tokenizer"),
                    help="output directory (default: %(default)s)")
    args = ap.parse_args()

    ref = BertTokenizerRef(args.vocab)
    lines = corpus(ref.db)
    assert len(lines) >= MIN_LINES, len(lines)
    for i, line in enumerate(lines):
        # "\n" separates cases; surrogates cannot be written as UTF-8.
        assert "\n" not in line, i
        assert not any(0xD800 <= ord(c) <= 0xDFFF for c in line), i

    ids_lines, span_lines = [], []
    checked, newer = 0, []
    for i, line in enumerate(lines):
        toks = ref.encode(line)
        ids = [t for t, _, _ in toks]
        data = line.encode("utf-8")
        for _, a, b in toks:
            assert 0 <= a < b <= len(data), (i, a, b)
        ids_lines.append(" ".join(str(x) for x in [CLS] + ids + [SEP]))
        span_lines.append(" ".join(f"{a}-{b}" for _, a, b in toks))
        if all(same_in_both_versions(ref, ch) for ch in line):
            hf = hf_literal_ids(line, ref.vocab)
            if hf != ids:
                sys.exit(f"make_tokenizer_fixture: line {i + 1} {line!r}: the reference "
                         f"gives {ids},\nCPython's literal Hugging Face gives {hf}")
            checked += 1
        else:
            newer.append(i + 1)

    os.makedirs(args.out, exist_ok=True)
    for name, rows in (("corpus.txt", lines), ("corpus.ids", ids_lines),
                       ("corpus.spans", span_lines)):
        with open(os.path.join(args.out, name), "w", encoding="utf-8", newline="") as f:
            f.write("".join(r + "\n" for r in rows))
    print(f"make_tokenizer_fixture: wrote {len(lines)} cases to {args.out}; "
          f"{checked} also agree with CPython's Unicode {unicodedata.unidata_version}, "
          f"{len(newer)} use characters that differ from Unicode {ref.db.version} "
          f"(lines {', '.join(map(str, newer[:20]))}{' ...' if len(newer) > 20 else ''})")


if __name__ == "__main__":
    main()
