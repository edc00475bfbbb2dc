"""The feedback's leak guard: hidden-test text in a page a student reads, plain or encoded.

``leaks(text, secret)`` finds the hidden-test lines of ``secret`` in a feedback page's text: as they are, or
reversed, Caesar/rot13-shifted, whitespace-spread, in another case, or in base64 / base32 / hex / decimal-byte /
escape-sequence runs (zlib-inflated too). ``page_text`` is what a reader sees of a page. Pure text: no torch,
nothing of the submission is run (``grader.autograde.feedback`` calls it on every page it delivers).
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
import zlib
from collections.abc import Iterable

_ROT = [
    str.maketrans(
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
        "abcdefghijklmnopqrstuvwxyz"[k:]
        + "abcdefghijklmnopqrstuvwxyz"[:k]
        + "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[k:]
        + "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[:k],
    )
    for k in range(26)
]
_B64 = re.compile(r"[A-Za-z0-9+/_-]{16,}={0,2}")
_B32 = re.compile(r"[A-Z2-7]{16,}={0,6}")
_HEX = re.compile(r"(?:[0-9a-fA-F]{2}[\s:,]?){8,}")
_DEC = re.compile(r"(?:\b\d{1,3}\b[\s,;]+){8,}\d{1,3}\b")
_ESC = re.compile(r"(?:\\(?:x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|[0-7]{3})){8,}")
_SPACES = re.compile(r"\s+")
MIN_LINE = 16  # shorter hidden lines (`import grader.atomic`) are only looked for as they are


def _decoded_runs(text: str) -> list[str]:
    """The text of every base64 / base32 / hex / decimal-byte / escape-sequence run of ``text`` (and
    zlib-inflated base64), as far as it decodes to text."""
    blobs: list[bytes] = []
    for m in _B64.finditer(text):
        run = m.group().rstrip("=")
        for alt in (run, run.replace("-", "+").replace("_", "/")):
            try:
                blobs.append(base64.b64decode(alt + "=" * (-len(alt) % 4), validate=False))
            except (binascii.Error, ValueError):
                pass
    for m in _B32.finditer(text):
        try:
            blobs.append(base64.b32decode(m.group().rstrip("=") + "=" * (-len(m.group().rstrip("=")) % 8)))
        except (binascii.Error, ValueError):
            pass
    for m in _HEX.finditer(text):
        digits = re.sub(r"[\s:,]", "", m.group())
        for start in (0, 1):
            try:
                blobs.append(bytes.fromhex(digits[start : start + (len(digits) - start) // 2 * 2]))
            except ValueError:
                pass
    for m in _DEC.finditer(text):
        numbers = [int(x) for x in re.findall(r"\d+", m.group())]
        if all(n < 256 for n in numbers):
            blobs.append(bytes(numbers))
        else:
            blobs.append("".join(chr(n) for n in numbers if n < 0x110000).encode("utf-8", "replace"))
    for m in _ESC.finditer(text):
        try:
            blobs.append(codecs.decode(m.group(), "unicode_escape").encode("utf-8", "replace"))
        except (UnicodeDecodeError, ValueError):
            pass
    out = []
    for blob in blobs:
        try:
            blob = zlib.decompress(blob)
        except zlib.error:
            pass
        try:
            decoded = blob.decode("utf-8")
        except UnicodeDecodeError:
            continue  # not text (a run of letters that only looks like base64, an image, a font)
        if decoded.isprintable() or _SPACES.sub("", decoded).isprintable():
            out.append(decoded)
    return out


def page_text(html: str) -> str:
    """The text of a feedback page as a reader sees it: no style sheets or scripts, no tags, entities decoded."""
    import html as html_mod

    html = re.sub(r"<(style|script)\b.*?</\1\s*>", "", html, flags=re.S | re.I)
    return html_mod.unescape(re.sub(r"<[^>]+>", "", html))


def leaks(text: str, secret: Iterable[str]) -> list[str]:
    """The hidden-test lines of ``secret`` that ``text`` (a feedback page's text) shows: as they are, or
    reversed, Caesar-shifted (rot13 and the other 24), with whitespace spread between the characters, in
    another case, or encoded in base64 / base32 / hex / decimal bytes / escape sequences (also reversed)."""
    secret = [s for s in dict.fromkeys(s.strip() for s in secret) if s]
    found = [s for s in secret if s in text]
    rest = [s for s in secret if s not in found and len(s) >= MIN_LINE]
    if not rest:
        return found
    decoded = _decoded_runs(text) + _decoded_runs(text[::-1])
    views = "\0".join([text, *decoded])
    # one string to search: every view forwards and backwards, without whitespace, in lower case
    haystack = _SPACES.sub("", views + "\0" + views[::-1]).lower()
    # a secret shifted by k shows as the secret shifted by k: shift the (few, short) secrets, not the page
    for s in rest:
        squeezed = _SPACES.sub("", s).lower()
        if any(squeezed.translate(_ROT[k]) in haystack for k in range(26)):
            found.append(s)
    return found
