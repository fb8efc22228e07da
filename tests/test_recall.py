"""Recall's lookup (models/recall.py) against its definition. The model's side (cached,
padded, row-batched and static decoding, export's refusal, what it learns) is tested with the
other options in tests/test_gpt.py and tests/test_engine.py."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from models.recall import lookup


def brute_force(
    row: list[int], i: int, cap: int, first: int = 0, boundary: int | None = None, read: list[bool] | None = None
) -> tuple[int, int]:
    """(proposed token, run length) for the query at slot i, by the definition: among slots
    first <= j < i of the query's document whose next token was read, the longest run of equal
    tokens ending at (j, i), capped; ties to the latest."""
    if boundary is not None:
        first = max([first] + [s for s in range(first, i + 1) if row[s] == boundary])
    best, best_len = None, 0
    for j in range(first, i):
        if read is not None and not read[j + 1]:
            continue
        n = 0
        while n < cap and j - n >= first and row[i - n] == row[j - n]:
            n += 1
        if n and n >= best_len:
            best, best_len = j, n
    return (row[best + 1] if best is not None else None), best_len


@settings(max_examples=300, deadline=None)
@given(
    rows=st.lists(st.lists(st.integers(0, 3), min_size=12, max_size=12), min_size=1, max_size=3),
    cap=st.integers(1, 5),
    pads=st.lists(st.integers(0, 6), min_size=3, max_size=3),
    boundary=st.sampled_from([None, 0]),
    written=st.one_of(st.none(), st.lists(st.booleans(), min_size=12, max_size=12)),
)
def test_the_lookup_is_the_definition_on_any_rows_with_any_padding_and_documents(rows, cap, pads, boundary, written):
    tokens = torch.tensor(rows)
    first = torch.tensor(pads[: len(rows)])
    slots = torch.arange(12).expand(len(rows), 12)
    read = None if written is None else [not w for w in written]
    mask = None if read is None else torch.tensor([read] * len(rows))
    proposed, length = lookup(tokens, slots, cap, first, boundary, mask)
    for b, row in enumerate(rows):
        for i in range(first[b].item(), 12):
            want, want_len = brute_force(row, i, cap, first[b].item(), boundary, read)
            assert length[b, i].item() == want_len, (row, i)
            if want_len:
                assert proposed[b, i].item() == want


def test_a_longer_match_wins_over_a_later_one_and_runs_stop_at_the_cap():
    # "5 6 7" then "9 6 7": at the last 7, the earlier 7 is preceded by "5 6" and the query by "5 6".
    row = torch.tensor([[5, 6, 7, 1, 9, 6, 7, 2, 5, 6, 7]])
    proposed, length = lookup(row, torch.arange(11)[None], cap=8)
    assert (proposed[0, 10].item(), length[0, 10].item()) == (1, 3)  # the run "5 6 7" at slot 2
    assert (proposed[0, 6].item(), length[0, 6].item()) == (1, 2)  # "6 7" at slot 2: run 2
    _, capped = lookup(row, torch.arange(11)[None], cap=2)
    assert capped[0, 10].item() == 2  # 3 at cap 8; at cap 2 the tie goes to the latest (slot 6)
    assert lookup(row, torch.arange(11)[None], cap=2)[0][0, 10].item() == 2
    with pytest.raises(ValueError, match="at least 1"):
        lookup(row, torch.arange(11)[None], cap=0)


def test_recall_never_reaches_behind_the_latest_document_start():
    """Packed rows hold many conversations; a lookup into the previous one would teach the
    model to copy a template's wording from its neighbour instead of learning it."""
    bos = 1
    row = torch.tensor([[bos, 5, 6, 7, bos, 5, 6, 8, 5, 6]])
    proposed, length = lookup(row, torch.arange(10)[None], cap=4, boundary=bos)
    assert length[0, 5].item() == 0 and length[0, 6].item() == 0  # "5 6" of document 1 is out of reach
    assert (proposed[0, 9].item(), length[0, 9].item()) == (8, 2)  # document 2's own "5 6" -> 8
    everything = lookup(row, torch.arange(10)[None], cap=4)
    assert (everything[0][0, 6].item(), everything[1][0, 6].item()) == (7, 3)  # without: "bos 5 6" -> 7


def test_what_the_model_wrote_is_never_proposed():
    """A loop of the model's own tokens cannot feed itself: only read tokens are proposed."""
    row = torch.tensor([[5, 6, 7, 2, 6, 7, 6, 7, 6]])  # the prompt "5 6 7 2", then the model writes
    written = torch.tensor([[False] * 4 + [True] * 5])
    slots = torch.arange(9)[None]
    proposed, length = lookup(row, slots, cap=4, read=~written)
    assert (proposed[0, 7].item(), length[0, 7].item()) == (2, 2)  # the prompt's "6 7" -> 2
    assert (proposed[0, 8].item(), length[0, 8].item()) == (7, 1)  # the prompt's "6" -> 7
    looped = lookup(row, slots, cap=4)  # everything read: its own "7 6 7 6" matches 3 long
    assert (looped[0][0, 8].item(), looped[1][0, 8].item()) == (7, 3)
