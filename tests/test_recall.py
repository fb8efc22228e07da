"""Recall's lookup (models/recall.py) against its definition. The model's side (cached,
padded, row-batched and static decoding, export's refusal, what it learns) is tested with the
other options in tests/test_gpt.py and tests/test_engine.py."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from models.recall import found_in_results, in_context, lookup, query_openings
from models.tokenizer import SPECIAL_IDS


def brute_force(
    row: list[int],
    i: int,
    cap: int,
    first: int = 0,
    boundary: int | None = None,
    read: list[bool] | None = None,
    word=lambda t: t,
) -> tuple[int, int]:
    """(proposed token, run length) for the query at slot i, by the definition: among slots
    first <= j < i of the query's document whose next token was read, the longest run of tokens
    of equal words ending at (j, i), capped; ties to the latest."""
    if boundary is not None:
        first = max([first] + [s for s in range(first, i + 1) if row[s] == boundary])
    best, best_len = None, 0
    for j in range(first, i):
        if read is not None and not read[j + 1]:
            continue
        n = 0
        while n < cap and j - n >= first and word(row[i - n]) == word(row[j - n]):
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
    paired=st.booleans(),
)
def test_the_lookup_is_the_definition_on_any_rows_with_any_padding_and_documents(
    rows, cap, pads, boundary, written, paired
):
    tokens = torch.tensor(rows)
    first = torch.tensor(pads[: len(rows)])
    slots = torch.arange(12).expand(len(rows), 12)
    read = None if written is None else [not w for w in written]
    mask = None if read is None else torch.tensor([read] * len(rows))
    word = (lambda t: t | 1) if paired else (lambda t: t)  # paired: 2 and 3 are one word, spaced or not
    proposed, length = lookup(tokens, slots, cap, first, boundary, mask, tokens | 1 if paired else None)
    for b, row in enumerate(rows):
        for i in range(first[b].item(), 12):
            want, want_len = brute_force(row, i, cap, first[b].item(), boundary, read, word)
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


# -- recall in context ---------------------------------------------------------------------

MARKS = ("<|bos|>", "<|user_start|>", "<|user_end|>", "<|assistant_end|>", "<|search_start|>", "<|search_end|>")
MARKS += ("<|result_start|>", "<|result_end|>", "<|calc_start|>", "<|python_start|>")


def context_by_definition(row: list[int]) -> tuple[list[bool], list[bool]]:
    """(source, active) per slot, walking back from each slot to the marks that decide it."""
    name = {SPECIAL_IDS[m]: m for m in MARKS}

    def latest(s: int, marks: set[str]) -> int:
        return max((k for k in range(s + 1) if name.get(row[k]) in marks), default=-1)

    def inside(s: int, opens: set[str], closes: set[str]) -> bool:
        return latest(s, opens) > latest(s, closes)

    source, active = [], []
    for s, token in enumerate(row):
        read = inside(s, {"<|user_start|>"}, {"<|user_end|>"}) or inside(s, {"<|result_start|>"}, {"<|result_end|>"})
        source.append(read and name.get(token) not in ("<|user_start|>", "<|result_start|>"))
        closes = {"<|assistant_end|>", "<|user_start|>", "<|bos|>", "<|calc_start|>", "<|python_start|>"}
        active.append(inside(s, {"<|search_start|>"}, {"<|search_end|>"}) or inside(s, {"<|result_end|>"}, closes))
    return source, active


@settings(max_examples=300, deadline=None)
@given(
    rows=st.lists(
        st.lists(st.sampled_from([*(SPECIAL_IDS[m] for m in MARKS), 40, 41]), min_size=16, max_size=16),
        min_size=1,
        max_size=3,
    )
)
def test_recall_in_context_reads_user_turns_and_results_and_speaks_in_queries_and_replies(rows):
    source, active = in_context(torch.tensor(rows), SPECIAL_IDS)
    for b, row in enumerate(rows):
        want_source, want_active = context_by_definition(row)
        assert source[b].tolist() == want_source, row
        assert active[b].tolist() == want_active, row


def test_recall_in_context_proposes_a_name_from_the_question_in_the_query_and_a_passage_word_in_the_reply():
    i = SPECIAL_IDS.__getitem__
    U, R, N, X = 40, 41, 42, 43  # words: "who", "born", a name, "in"
    row = [i("<|bos|>"), i("<|user_start|>"), U, N, R, i("<|user_end|>"), i("<|assistant_start|>")]
    row += [i("<|search_start|>"), N, R, i("<|search_end|>"), i("<|result_start|>"), N, R, X, i("<|result_end|>"), N, R]
    tokens = torch.tensor([row])
    source, active = in_context(tokens, SPECIAL_IDS)
    slots = torch.arange(len(row))[None]
    proposed, length = lookup(tokens, slots, 4, None, i("<|bos|>"), source)
    length = length * active
    at = {k: (proposed[0, k].item(), length[0, k].item()) for k in range(len(row))}
    assert at[8] == (R, 1)  # the query's name: what followed it in the question
    assert at[len(row) - 1] == (X, 2)  # the reply's "name born": the passage goes on with "in"
    assert all(length[0, k] == 0 for k in range(7))  # nothing in the user's turn itself
    # a math conversation (no search): no proposal anywhere, though its words repeat
    math = [i("<|bos|>"), i("<|user_start|>"), U, N, R, i("<|user_end|>"), i("<|assistant_start|>"), U, N, R]
    math += [i("<|calc_start|>"), N, i("<|calc_end|>"), U, N]
    tokens = torch.tensor([math])
    source, active = in_context(tokens, SPECIAL_IDS)
    assert not active.any()


def test_where_a_result_ends_recall_says_how_many_words_searched_for_the_passages_lack():
    i = SPECIAL_IDS.__getitem__
    A, B, C, D = 40, 41, 42, 43
    row = [i("<|bos|>"), i("<|user_start|>"), A, B, C, i("<|user_end|>"), i("<|assistant_start|>")]
    row += [i("<|search_start|>"), B, C, i("<|search_end|>"), i("<|result_start|>"), D, C, A, B]
    row += [i("<|result_end|>")]
    tokens, slots = torch.tensor([row]), torch.arange(len(row))[None]
    end = row.index(i("<|result_end|>"))

    def said(row, words=None, cap=8, slot=None):
        """(proposal, length) where the result ends (or at `slot`, asked alone as a decoding
        step asks), and the lengths' sum over every slot of the row."""
        t, close = torch.tensor([row]), row.index(i("<|result_end|>"))
        words = t if words is None else torch.tensor([words])
        found = found_in_results(t, torch.arange(len(row))[None], words, SPECIAL_IDS, cap)
        if found is None:
            return None
        alone = found_in_results(t, torch.tensor([[close if slot is None else slot]]), words, SPECIAL_IDS, cap)
        return alone[0][0, 0].item(), alone[1][0, 0].item(), found[1].sum().item()

    assert said(row) == (B, 8, 8)  # the query's first word; none lacking: the cap; nowhere else
    assert said(row, cap=3) == (B, 3, 3)
    lacking = [D if k == end - 1 else t for k, t in enumerate(row)]  # the passages lose the query's "B"
    assert said(lacking) == (B, 7, 7)  # one word lacking
    neither = [D if k in (end - 1, end - 3) else t for k, t in enumerate(row)]  # ... and its "C"
    assert said(neither) is None  # nothing of the query found: no proposal
    # words, not tokens: the passage's spaced twin of a query word counts as found
    spaced = [B + 10 if k == end - 1 else t for k, t in enumerate(row)]
    assert said(spaced, [B if t == B + 10 else t for t in spaced])[1] == 8
    # None where no result has ended by the slots asked about (a decoding step)
    assert found_in_results(tokens, slots[:, :end], tokens, SPECIAL_IDS, 8) is None
    # "no results" for a search of something absent: nothing to propose
    absent = row[: row.index(i("<|result_start|>")) + 1] + [D, D, i("<|result_end|>")]
    assert said(absent) is None


def test_while_the_reply_restates_the_query_recall_proposes_its_next_word_and_then_stops():
    """A reply that opens with what was searched gets the query's next word after each of its
    words; once the query is said (or the reply says something else) the lookup takes over."""
    i = SPECIAL_IDS.__getitem__
    A, B, C, D, E = 40, 41, 42, 43, 44
    head = [i("<|bos|>"), i("<|user_start|>"), A, B, C, i("<|user_end|>"), i("<|assistant_start|>")]
    head += [i("<|search_start|>"), B, C, D, i("<|search_end|>"), i("<|result_start|>"), E, B, C, D, A]
    head += [i("<|result_end|>")]
    end = len(head) - 1
    restated = head + [B, C, D, A]
    assert said_at(restated, end + 1) == (C, 8)  # "B" written: the query goes on with "C"
    assert said_at(restated, end + 2) == (D, 8)
    assert said_at(restated, end + 3) == (None, 0)  # the query is said: the passage's "A" is the lookup's
    diverged = head + [B, E, C]
    assert said_at(diverged, end + 1) == (C, 8) and said_at(diverged, end + 2) == (None, 0)
    assert said_at(head + [E, C], end + 1) == (None, 0)  # not the query's first word: nothing
    # a decoding step (one slot, later tokens not yet written) says what the full row says
    one = found_in_results(
        torch.tensor([restated]), torch.tensor([[end + 2]]), torch.tensor([restated]), SPECIAL_IDS, 8
    )
    assert (one[0].item(), one[1].item()) == (D, 8)
    # a new turn: the old search is not this reply's
    later = restated + [i("<|assistant_end|>"), i("<|user_start|>"), B, i("<|user_end|>"), i("<|assistant_start|>"), B]
    assert said_at(later, len(later) - 1) == (None, 0)


def said_at(row: list[int], slot: int, cap: int = 8) -> tuple[int | None, int]:
    """found_in_results' (proposal, length) at one slot of a row asked at every slot."""
    t = torch.tensor([row])
    found = found_in_results(t, torch.arange(len(row))[None], t, SPECIAL_IDS, cap)
    if found is None or found[1][0, slot] == 0:
        return None, 0
    return found[0][0, slot].item(), found[1][0, slot].item()


def test_a_restated_query_opens_the_reply_respelt_as_a_first_word():
    """`openers` respells only the reply's first proposal (a query written after a space is
    restated without one); the next words are the query's own tokens."""
    i = SPECIAL_IDS.__getitem__
    A, B, C, D, B_FIRST = 40, 41, 42, 43, 50
    row = [i("<|bos|>"), i("<|user_start|>"), A, B, C, i("<|user_end|>"), i("<|assistant_start|>")]
    row += [i("<|search_start|>"), B, C, i("<|search_end|>"), i("<|result_start|>"), D, B, C, i("<|result_end|>")]
    end = len(row) - 1
    row += [B_FIRST, C]
    t, openers = torch.tensor([row]), torch.arange(64)
    openers[B] = B_FIRST
    words = t.clone()
    words[0, end + 1] = B  # the respelt first word is the same word
    proposed, length = found_in_results(t, torch.arange(len(row))[None], words, SPECIAL_IDS, 8, openers)
    assert (proposed[0, end].item(), length[0, end].item()) == (B_FIRST, 8)
    assert (proposed[0, end + 1].item(), length[0, end + 1].item()) == (C, 8)


def test_a_query_opening_points_only_at_its_own_conversations_user_turns():
    """query_openings: the slots holding <|search_start|> among those asked about, each with
    the user turns' slots before it in its document (not the turn's markers, not a result,
    not an earlier document, not padding)."""
    i = SPECIAL_IDS.__getitem__
    A, B, C = 40, 41, 42
    earlier = [i("<|bos|>"), i("<|user_start|>"), C, i("<|user_end|>")]
    turn = [i("<|bos|>"), i("<|user_start|>"), A, B, i("<|user_end|>"), i("<|assistant_start|>")]
    turn += [i("<|search_start|>"), B, i("<|search_end|>"), i("<|result_start|>"), C, i("<|result_end|>")]
    turn += [i("<|assistant_end|>"), i("<|user_start|>"), C, i("<|user_end|>"), i("<|assistant_start|>")]
    turn += [i("<|search_start|>")]
    row = earlier + turn
    tokens = torch.tensor([row, [0, 0, 0, 0] + turn])  # the second row: the same turn after padding
    slots = torch.arange(len(row)).expand(2, -1)
    rows, columns, source = query_openings(tokens, slots, SPECIAL_IDS, torch.tensor([0, 4]), i("<|bos|>"))
    first_query, second_query = len(earlier) + 6, len(row) - 1
    assert rows.tolist() == [0, 0, 1, 1] and columns.tolist() == [first_query, second_query] * 2
    user = [len(earlier) + 2, len(earlier) + 3]  # A, B of the turn's question
    later_user = len(row) - 4  # C of the second question
    assert source[0].nonzero()[:, 0].tolist() == user
    assert source[1].nonzero()[:, 0].tolist() == [*user, later_user]
    assert torch.equal(source[2:], source[:2])  # padding changes nothing
    # asked about one slot (a decoding step): that slot alone; a slot with no query: nothing
    one = query_openings(tokens[:1], torch.tensor([[second_query]]), SPECIAL_IDS, None, i("<|bos|>"))
    assert one[1].tolist() == [0] and one[2][0].nonzero()[:, 0].tolist() == [*user, later_user]
    assert query_openings(tokens[:1], torch.tensor([[first_query + 1]]), SPECIAL_IDS, None, i("<|bos|>")) is None
    # a query with no user turn before it in its document: nothing to point at
    alone = torch.tensor([[i("<|bos|>"), i("<|assistant_start|>"), i("<|search_start|>")]])
    assert query_openings(alone, torch.arange(3)[None], SPECIAL_IDS, None, i("<|bos|>")) is None
