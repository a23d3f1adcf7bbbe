"""Keyed hashing of patient identifiers (docs/methods.md, Privacy).

An identifier is stored as HMAC-SHA256(secret, normalised value), hex. The same
patient gets the same key across files and runs that share the secret, so
studies still group together, and nobody without the secret can test a guess.
"""
from __future__ import annotations

import hashlib
import hmac

PREFIX = "hmac:"


def normalise(value: str) -> str:
    """Case, surrounding and repeated blanks and trailing '^' carry no identity."""
    text = " ".join(str(value).split()).upper()
    return text.rstrip("^")


def keyed_hash(secret: bytes, value) -> str | None:
    """`hmac:` + 32 hex chars (128 bits of HMAC-SHA256); None for empty values."""
    if value is None:
        return None
    text = normalise(value)
    if not text:
        return None
    digest = hmac.new(secret, text.encode("utf-8"), hashlib.sha256).hexdigest()
    return PREFIX + digest[:32]
