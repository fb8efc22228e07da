"""Recall: the copy a small model needs and does not learn in minutes, found by matching tokens.

Copying at any distance (a name from the question into the search query, a value from a
passage into the answer, a phrase said again) is what an induction head does: find the earlier
place where the current token occurred and predict the token that followed it. Plain attention
composes that from two layers, and the tiny model never formed one in its few hundred steps
(docs/sizing.md, Copying). Recall supplies the lookup itself, with no parameters:

    for position i, among the earlier positions j holding the same token, take the one whose run
    of matching tokens ending at (j, i) is longest (up to `cap`; ties go to the latest), and
    report the token after it, tokens[j + 1], and the run's length (0: none).

The model learns what to do with it (models/gpt.py, `GPT.forward`): the proposed token's
embedding and the run's length enter the residual stream, and the head adds a learnt,
context-gated bonus to that token's logit. The run's length is what tells a real copy ("Hedda
Marsh" seen three tokens ago) from a coincidence (a second "the"). It is the continuous cache
and pointer-sentinel idea (Grave et al. 2017; Merity et al. 2017) with an exact-match pointer,
so the same lookup runs in training, in a KV-cached decode step, and on a static decoder.

Two limits, both measured on the tiny preset (docs/sizing.md, Recall):
- Recall never looks behind the latest document boundary (<|bos|>). Training rows pack many
  conversations, and one of the same template just before let the model copy its wording
  instead of learning it; alone at inference, it had nothing to copy from (math with the
  calculator 3%; 17% within a conversation).
- Recall proposes only tokens the model read (`read`), never ones it wrote: sampling hands it
  the model's own mistakes, which it carried on into loops and wrong queries (verified-unknown
  terms abstained 52.5% -> 82.5%, unknown entities 77% -> 100% with this limit).
Math stayed low even so (10-13% against 53-70% without recall).

Recall in context (`recall_scope="context"`) is the pointer of a retrieval system instead: it
proposes only tokens of the conversation's user turns and search results, and only while the
model writes a search query or its reply after a result. A math problem, a refusal or a
pretraining document never gets a proposal, so what the model learns there is untouched; what
it can copy is the name it was asked about into its query, and a passage's words into its reply.
A reply opens without a space ("The" where the passage has "▁the"), so runs compare words: a
token and its spaced twin are one (`GPT.recall_word`, from `Tokenizer.words`).

Matching cannot propose a query's first token: nothing before it is a match, and which of the
question's words is its subject is a choice. `query_openings` says where a query opens and
which user tokens it may take; a learnt pointer chooses among them (`GPT.point`).

The lookup depends only on the tokens, so caches keep each row's token ids (nothing else):
rewinding, dropping rows or copying a prefilled row stays consistent for free.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def lookup(
    tokens: torch.Tensor,
    slots: torch.Tensor,
    cap: int,
    first: torch.Tensor | None = None,
    boundary: int | None = None,
    read: torch.Tensor | None = None,
    words: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(proposed, length), each (B, T), for the queries at `slots` (B, T) of `tokens` (B, S).

    `tokens[b, s]` is row b's token in slot s; a query at slot i looks at slots j < i (so
    tokens[j + 1] is always known), at or after `first[b]` (the row's left padding, or 0) and
    at or after the latest `boundary` token at or before i (its document's start). Runs compare
    tokens[i - k] with tokens[j - k] for k = 0, 1, ... while both stay in that span, and stop
    at `cap`. `read` (B, S): which tokens the model read rather than wrote (None: all); only
    a read token is ever proposed. `words` (B, S): what runs compare instead of the tokens
    (a token mapped to its word, space or not), while the proposal is always the token itself.
    Where no earlier slot matches, length is 0 and `proposed` is meaningless (the model masks it).
    """
    if cap < 1:
        raise ValueError(f"recall_cap must be at least 1, not {cap}")
    S = tokens.size(1)
    keys = torch.arange(S, device=tokens.device)
    start = torch.zeros_like(slots) if first is None else first[:, None].expand_as(slots)  # (B, T)
    if boundary is not None:
        start = torch.maximum(start, document_starts(tokens, boundary).gather(1, slots))
    alive = keys[None, None, :] < slots[:, :, None]  # (B, T, S): candidates before the query
    if read is not None:  # the token after the candidate must be one the model read
        alive = alive & F.pad(read[:, 1:], (0, 1), value=False)[:, None, :]
    compared = tokens if words is None else words
    run = torch.zeros(alive.shape, dtype=torch.int32, device=tokens.device)
    for k in range(cap):
        back_q, back_k = slots - k, keys - k  # the k-th token before the query and the candidate
        in_span = (back_q >= start)[:, :, None] & (back_k[None, None, :] >= start[:, :, None])
        same = compared.gather(1, back_q.clamp(min=0))[:, :, None] == compared[:, back_k.clamp(min=0)][:, None, :]
        alive = alive & same & in_span
        run += alive
    best = (run * S + keys).masked_fill(run == 0, -1).argmax(-1)  # longest run, then latest
    length = run.gather(-1, best[..., None])[..., 0]
    proposed = tokens.gather(1, (best + 1).clamp(max=S - 1))
    return proposed, length


def document_starts(tokens: torch.Tensor, boundary: int) -> torch.Tensor:
    """(B, S): each slot's document start, the latest `boundary` token at or before it (0: none)."""
    keys = torch.arange(tokens.size(1), device=tokens.device)
    return torch.where(tokens == boundary, keys, 0).cummax(1).values


def written_by_model(targets: torch.Tensor) -> torch.Tensor:
    """(B, T) bool: which input tokens the model wrote, from a loss mask's targets (-1: not
    trained). Token t + 1 was written where target t is trained, as in SFT's assistant turns
    and RL's sampled tokens; the first token never was."""
    return F.pad(targets[:, :-1] >= 0, (1, 0), value=False)


def _inside(tokens: torch.Tensor, opens: tuple[int, ...], closes: tuple[int, ...]) -> torch.Tensor:
    """(B, S) bool: which slots lie after an opening token with no closing one since (the
    opening token itself included)."""
    keys = torch.arange(tokens.size(1), device=tokens.device)

    def latest(ids: tuple[int, ...]) -> torch.Tensor:
        hit = torch.isin(tokens, torch.tensor(ids, device=tokens.device))
        return torch.where(hit, keys, -1).cummax(1).values

    return latest(opens) > latest(closes)


def in_context(tokens: torch.Tensor, ids: dict[str, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(source, active), each (B, S) bool, for recall in context: `source`, the slots of user
    turns and search results (what may be proposed); `active`, the slots from which the model
    writes a search query or its reply after a result (where a proposal is made). `ids` maps
    models/tokenizer.py's special tokens to their ids."""
    i = ids.__getitem__
    user = _inside(tokens, (i("<|user_start|>"),), (i("<|user_end|>"),))
    result = _inside(tokens, (i("<|result_start|>"),), (i("<|result_end|>"),))
    query = _inside(tokens, (i("<|search_start|>"),), (i("<|search_end|>"),))
    # after a result until the turn ends (or another tool is called): the reply that reads it
    reply = _inside(
        tokens,
        (i("<|result_end|>"),),
        (i("<|assistant_end|>"), i("<|user_start|>"), i("<|bos|>"), i("<|calc_start|>"), i("<|python_start|>")),
    )
    opening = torch.isin(tokens, torch.tensor([i("<|user_start|>"), i("<|result_start|>")], device=tokens.device))
    return (user | result) & ~opening, query | reply


def _last(row: list[int], marks: tuple[int, ...], before: int) -> int:
    """The latest slot before `before` that holds one of `marks`, else -1."""
    return max((k for k in range(before) if row[k] in marks), default=-1)


def found_in_results(
    tokens: torch.Tensor,
    slots: torch.Tensor,
    words: torch.Tensor,
    ids: dict[str, int],
    cap: int,
    openers: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """What recall in context says where a search result ends and while the reply restates
    what was searched: the query's next token, with a length of `cap` less the number of the
    query's words that the results lack (at least 1) where they hold any of them, else nothing.
    Whether the passages hold what was searched for is what a reply must decide first (answer
    from them, or say "I don't know"); an answer that restates its subject starts with the
    query's words, and once they are all written the lookup finds them in the passage and
    carries on with what the passage says of them (on its own, a reply's first "The" ties with
    every "the" of the passages and copies the wrong sentence). The reply at slot `result_end +
    k` gets the query's token k while its first k words are the query's; `openers` (vocab,),
    where given, respells the first as a reply opens with it (`Tokenizer.openers`: a query
    written after a space, " Nils", is restated "Nils"). (B, T) each (no proposal: length 0),
    or None where nothing is proposed."""
    i = ids.__getitem__
    result_ends = (tokens == i("<|result_end|>")) & (torch.arange(tokens.size(1), device=tokens.device) <= slots.max())
    if not result_ends.any():
        return None
    proposed, length = torch.zeros_like(slots), torch.zeros_like(slots)
    found = False
    for b, end in result_ends.nonzero().tolist():
        row = tokens[b, :end].tolist()
        result = _last(row, (i("<|result_start|>"),), end)
        query_end = _last(row, (i("<|search_end|>"),), result)
        query_start = _last(row, (i("<|search_start|>"),), query_end)
        turn = _last(row, (i("<|bos|>"), i("<|assistant_end|>")), end)  # the search must be this turn's
        if min(result, query_end, query_start) < 0 or query_start <= turn or query_end - query_start < 2:
            continue
        query, passages = words[b, query_start + 1 : query_end], words[b, result + 1 : end]
        missing = int((~torch.isin(query, passages)).sum())
        if missing == query.numel():  # the passages hold none of what was searched
            continue
        for k in range(query.numel()):  # the reply has written the query's first k words
            if end + k >= tokens.size(1) or (k and words[b, end + k] != query[k - 1]):
                break
            here = (slots[b] == end + k).nonzero()
            if len(here):
                found = True
                token = tokens[b, query_start + 1 + k]
                proposed[b, here] = token if k or openers is None else openers[token]
                length[b, here] = max(1, cap - missing)
    return (proposed, length) if found else None


def query_openings(
    tokens: torch.Tensor, slots: torch.Tensor, ids: dict[str, int], first: torch.Tensor | None, boundary: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """Where the model is about to write a search query's first token, and what it may point
    at there: (rows, columns, source), the `slots` (B, T) entries holding <|search_start|>
    and, for each, (n, S) bool over `tokens` (B, S): the user turns' slots of its document
    before it (after the row's padding `first`). None where no query opens or none has a
    user turn to point at. The learnt pointer that chooses among them is `GPT.point`."""
    opening = tokens.gather(1, slots) == ids["<|search_start|>"]
    if not opening.any():
        return None
    rows, columns = opening.nonzero(as_tuple=True)
    at = slots[rows, columns]
    keys = torch.arange(tokens.size(1), device=tokens.device)
    start = document_starts(tokens, boundary)[rows, at]
    if first is not None:
        start = torch.maximum(start, first[rows])
    user = _inside(tokens, (ids["<|user_start|>"],), (ids["<|user_end|>"],)) & (tokens != ids["<|user_start|>"])
    source = user[rows] & (keys[None, :] < at[:, None]) & (keys[None, :] >= start[:, None])
    some = source.any(1)
    if not some.any():
        return None
    return rows[some], columns[some], source[some]
