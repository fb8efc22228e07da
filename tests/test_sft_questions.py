"""tasks/sft/questions.py: the fact-question grammar is diverse, its held-out shapes are never
produced by the training grammar, and no held-out shape is in the sample crawl."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tasks.sft import questions as Q

NAME = "Ilse Andersen"
KINDS = [(kind, attribute) for kind, grammar in Q.GRAMMARS.items() for attribute in grammar]


def every_question(kind: str, attribute: str, heldout: bool) -> set[str]:
    """Every surface form the grammar can produce for one attribute (the name fixed)."""
    out = set()
    for shape in Q.shapes(kind, attribute, heldout):
        for part in Q.forms(getattr(shape.core, shape.frame.form)):
            one = Q.Core(part, part, part)
            out.add(Q.compose(Q.Shape(one, shape.frame), NAME, random.Random(0)))
    return out


@pytest.mark.parametrize("kind, attribute", KINDS)
def test_training_and_held_out_grammars_share_no_question(kind, attribute):
    train, held_out = every_question(kind, attribute, False), every_question(kind, attribute, True)
    assert train and held_out and not train & held_out
    assert all(NAME in q for q in train | held_out)


@pytest.mark.parametrize("heldout", [False, True])
def test_each_grammar_gives_many_distinct_skeletons(heldout):
    rng = random.Random(1)
    drawn = []
    for _ in range(500):
        kind, attribute = rng.choice(KINDS)
        drawn.append(Q.skeleton(Q.question(kind, attribute, NAME, rng, heldout), NAME))
    assert len(set(drawn)) >= 50  # most draws are new skeletons, not one of a handful
    structures = {(kind, attribute, len(Q.shapes(kind, attribute, heldout))) for kind, attribute in KINDS}
    assert all(n >= 10 for _, _, n in structures)  # every attribute asked in many shapes


def test_every_kind_has_held_out_cores_and_frames_of_every_form():
    for grammar in Q.GRAMMARS.values():
        for cores in grammar.values():
            assert any(c.heldout for c in cores) and any(not c.heldout for c in cores)
    for form in ("direct", "embedded", "topic"):
        frames = [f for f in Q.FRAMES if f.form == form]
        assert any(f.heldout for f in frames) and any(not f.heldout for f in frames)


@given(st.lists(st.sampled_from(["a", "b c", "", "d|e", "f"]), max_size=4))
def test_choices_expand_to_every_combination(options):
    text = "x" + "".join(f"[{o}]y" for o in options)
    forms = Q.forms(text)
    expected = 1
    for o in options:
        expected *= len(o.split("|"))
    assert len(forms) == expected and all("[" not in f and "|" not in f for f in forms)


def test_no_held_out_shape_is_in_the_sample_crawl():
    """Held out of pretraining too: the sample crawl's pages (tasks/sample_crawl) state facts
    and never ask about an entity, in any shape; checked on a generated crawl's documents."""
    from tasks.config import SampleCrawlConfig
    from tasks.sample_crawl import plan

    pages, _ = plan.plan(SampleCrawlConfig())  # the tiny preset's crawl
    texts = [" ".join([page.title, *(b.text for b in page.blocks)]) for page in pages]
    assert len(texts) == 400
    cores = {
        part.split("{name}")[0].strip().lower()
        for grammar in Q.GRAMMARS.values()
        for cores in grammar.values()
        for core in cores
        if core.heldout
        for part in Q.forms(core.direct)
        if len(part.split("{name}")[0].strip()) > 8
    }
    frames = {f.text.split("{")[0].strip().lower() for f in Q.FRAMES if f.heldout and len(f.text.split("{")[0]) > 8}
    assert len(cores) > 10 and len(frames) > 5
    for text in texts:
        lowered = text.lower()
        assert not [c for c in cores | frames if c in lowered]
        assert "?" not in text or not any(n in text for n in ("was born in which", "works as what"))
