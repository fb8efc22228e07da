"""Numbers fixed by text: the same on every machine, process and Python run (the built-in
`hash` of a string is salted per process). Seeds, splits and samples are decided by these, so
a row lands in the same split and a sample draws the same stream wherever it is computed.

One hash (BLAKE2b, 8 bytes) behind every such number; each caller writes its keys into the
text its own way (a separator, a salt), which fixes its values and must not change.
"""

from __future__ import annotations

import hashlib
from typing import Literal


def hash64(text: str, byteorder: Literal["big", "little"] = "big") -> int:
    """An unsigned 64-bit integer fixed by `text` (lone surrogates, as a page's broken
    escapes can leave, are hashed as written rather than refused)."""
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, byteorder)


def seed63(text: str) -> int:
    """A non-negative 63-bit integer fixed by `text`: a seed torch and numpy accept."""
    return hash64(text) >> 1


def unit(text: str) -> float:
    """A number from 0 to 1 fixed by `text`, uniform over texts: how a hashed share is taken."""
    return hash64(text) / 2**64
