"""The numbers seeds and splits are decided by (models/hashing.py): one hash behind the five
places that draw them, each giving exactly what it gave before they shared it, so no dataset's
split and no sample's seed moved."""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from models.engine import sample_seed
from models.hashing import hash64, seed63, unit
from tasks.curate.blocklists import hash_array
from tasks.rl.rollouts import prompt_key
from tasks.sft.generate import fraction
from tasks.tokenize import doc_hash


def blake8(data: bytes, order: str = "big") -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), order)


def test_each_caller_keeps_its_values():
    # Written down from the code before it shared models/hashing.py.
    assert sample_seed(7, 3) == 2820881036890788059
    assert fraction("person", "p-1", "train") == 0.7238500396013834
    assert doc_hash("doc-42") == 0.15908004609910026
    assert prompt_key("math-17") == 8113601214472953470
    assert hash_array(["Casino"]).tolist() == [12975442056347449964]  # lower-cased, little-endian


@given(st.text(), st.text())
def test_the_same_numbers_as_the_formulas_they_replace(text, salt):
    data = text.encode()
    assert hash64(text) == blake8(data)
    assert hash64(text, "little") == blake8(data, "little")
    assert seed63(text) == blake8(data) >> 1 and 0 <= seed63(text) < 2**63
    assert unit(text) == blake8(data) / 2**64 and 0.0 <= unit(text) <= 1.0
    assert doc_hash(text, salt) == blake8(f"{salt}\0{text}".encode()) / 2.0**64
    assert fraction(text, salt) == blake8(f"{text}\x1f{salt}".encode()) / 2**64


def test_a_lone_surrogate_is_hashed_not_refused():
    assert hash64("a\udc80b") == blake8("a\udc80b".encode("utf-8", "surrogatepass"))
