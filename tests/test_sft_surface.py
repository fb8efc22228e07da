"""tasks/sft/surface.py and its one use, generate(): user turns varied as people type, with
what the assistant must copy (names, numbers) left exactly as it was."""

from __future__ import annotations

import json
import random
import re
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from tasks import mathgen
from tasks.sft import generate as G
from tasks.sft import surface as S

# Words from the generators' own questions, and names of the shapes tasks/world.py makes.
COMMON = "what where when which does is the of year born town work employs known tell about please build house".split()
NAME = st.builds(
    lambda a, b: f"{a.capitalize()} {b.capitalize()}",
    st.text("abcdefghijklmnopqrstuvwxyz", min_size=2, max_size=9),
    st.text("abcdefghijklmnopqrstuvwxyz", min_size=2, max_size=9),
)
NUMBER = st.one_of(st.integers(0, 10**6).map(str), st.integers(1, 999).map(lambda n: f"{n}.{n % 10}"))
PIECE = st.one_of(st.sampled_from(COMMON), NUMBER, st.sampled_from(sorted(S.NUMBER_WORDS)), st.just("?"))


def digits(text: str) -> list[str]:
    return re.findall(r"\d(?:[\d,.:/]*\d)?", text)


def words_in(text: str, vocabulary: frozenset[str]) -> Counter:
    return Counter(w for w in re.findall(r"[a-z]+", text.lower()) if w in vocabulary)


@settings(max_examples=300, deadline=None)
@given(name=NAME, pieces=st.lists(PIECE, min_size=1, max_size=14), at=st.integers(0, 14), seed=st.integers())
def test_names_and_numbers_survive_every_variation(name, pieces, at, seed):
    pieces.insert(min(at, len(pieces)), name)
    text = " ".join(pieces)
    varied, applied = S.vary(text, random.Random(seed), [name], heldout=seed % 2 == 0)
    assert name in varied  # verbatim: no typo, casing change or extra space inside it
    assert digits(varied) == digits(text)
    assert words_in(varied, S.NUMBER_WORDS) >= words_in(text, S.NUMBER_WORDS)  # a frame may add words, never drop
    assert set(applied) <= set(S.VARIATIONS)


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 10**6), difficulty=st.integers(1, 3), words=st.booleans(), rng_seed=st.integers())
def test_word_problems_keep_their_numbers_and_quantity_words(seed, difficulty, words, rng_seed):
    question = mathgen.make_problem(seed, difficulty, words=words).question
    varied, _ = S.vary(question, random.Random(rng_seed))
    assert digits(varied) == digits(question)
    kept = S.NUMBER_WORDS | S.QUANTITY_WORDS
    assert words_in(varied, kept) >= words_in(question, kept)


def test_each_variation_shows_up_and_typos_never_touch_protected_words():
    text = "Where does Draiveth Kloumar work these days? I would like to know."
    seen: dict[str, int] = {v: 0 for v in S.VARIATIONS}
    outputs = set()
    for seed in range(400):
        varied, applied = S.vary(text, random.Random(seed), ["Draiveth Kloumar"])
        outputs.add(varied)
        for v in applied:
            seen[v] += 1
        assert "Draiveth Kloumar" in varied and varied != text
    assert min(seen.values()) > 60, seen
    assert len(outputs) > 250  # hundreds of distinct turns from one question


def test_typo_changes_one_word_by_one_slip_and_keeps_its_first_letter():
    rng = random.Random(3)
    for word in ("where", "birth", "founded", "organisation"):
        for _ in range(50):
            slipped = S.typo(word, rng)
            assert slipped != word or len(set(word)) < len(word)  # a swap of equal letters is no change
            assert slipped[0] == word[0] and abs(len(slipped) - len(word)) <= 1


def test_frames_held_out_of_training_are_disjoint_and_many():
    def phrases(frames: S.Frames) -> set[str]:
        greetings = {g + m for g in frames.greetings for m in frames.greeting_marks}
        return greetings | set(frames.openers) | set(frames.closers)

    train, heldout = phrases(S.TRAIN), phrases(S.HELDOUT)
    assert len(train) >= 40 and len(heldout) >= 30
    assert not train & heldout
    assert not {g.lower() for g in S.TRAIN.greetings} & {g.lower() for g in S.HELDOUT.greetings}
    for seed in range(200):
        varied, applied = S.vary("How do I cut a mango?", random.Random(seed), heldout=True)
        if "frame" in applied:
            assert not any(p.lower() in varied.lower() for p in set(S.TRAIN.openers) | set(S.TRAIN.closers))


def _question_rows(surface_rate: float) -> dict[str, list[dict]]:
    ctx = G.Context(seed=4, test_fraction=0.3, entities={}, counts={"echo": 300, "math": 200, "math_test": 50})
    return {source: G.generate(source, ctx, 0.1, surface_rate) for source in ("echo", "math", "harmful", "benign")}


def test_generate_varies_a_share_of_rows_deterministically_and_rate_zero_is_identity():
    clean, varied, again = _question_rows(0.0), _question_rows(0.5), _question_rows(0.5)
    assert varied == again
    assert _question_rows(0.0) == clean
    changed = total = 0
    for source, splits in clean.items():
        for split, rows in splits.items():
            for before, after in zip(rows, varied[source][split], strict=True):
                meta, meta_after = json.loads(before["meta"]), json.loads(after["meta"])
                assert before["id"] == after["id"] and before["messages"][1:] == after["messages"][1:]
                assert "surface" not in meta and meta_after["template"] == meta["template"]
                total += 1
                if before["messages"][0]["content"] != after["messages"][0]["content"]:
                    changed += 1
                    assert meta_after["surface"]
                if source == "echo":  # the reply copies the names out of the question ("I heard: A, B.")
                    names = after["messages"][1]["content"].removeprefix("I heard: ").rstrip(".").split(", ")
                    assert all(name in after["messages"][0]["content"] for name in names)
                if source == "math":  # the calculator's arguments are in the question's numbers
                    assert re.findall(r"\d+", after["messages"][0]["content"]) == re.findall(
                        r"\d+", before["messages"][0]["content"]
                    )
    assert 0.4 < changed / total < 0.6


def test_copied_spans_name_what_the_assistant_repeats():
    messages = G.tool_turn("Where was Ada Lark born?", "search", "Ada Lark", "no results", "I don't know.")
    assert "Ada Lark" in G.copied_spans(messages, {"name": "Ada Lark"})
    echo = G.plain_turn("Say Bo Tam back to me.", "Bo Tam")
    assert G.copied_spans(echo, {}) == ["Bo Tam"]
