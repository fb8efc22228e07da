"""tasks/sft/requests.py and the harmful, private and benign sources: requests composed from
grammars, held-out request shapes that no training row (nor the sample crawl) ever uses, and
a benign twin of the same shape for every request the assistant declines."""

from __future__ import annotations

import json
import random
import re
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.tools import SearchIndex
from tasks.config import SampleCrawlConfig
from tasks.sample_crawl.plan import plan
from tasks.sft import generate as G
from tasks.sft import requests as R
from tasks.sft.answers import REFUSAL_HARMFUL, REFUSAL_PRIVATE, is_refusal, mentions
from tests.support import sft_world

FAMILIES = {"act": R.ACT_SHAPES, "person": R.PERSON_SHAPES}


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    tiny = sft_world.build(str(tmp_path_factory.mktemp("lake")))
    index = SearchIndex.open(tiny["search"])
    ctx = G.Context(
        seed=0,
        test_fraction=0.3,
        entities=G.load_entities(tiny["facts"]),
        search=G.SearchTool(index, 2, 300),
        counts={"harmful": 200, "private": 200, "refusal_test": 30},
    )
    out = {source: G.generate(source, ctx, 0.1) for source in ("harmful", "private", "benign")}
    index.close()
    return out


def meta(r):
    return json.loads(r["meta"])


def skeletons(heldout: bool, family) -> set[str]:
    return {s for shape in R.shapes_of(family, heldout) for s in R.expansions(shape.pattern)}


@given(pattern=st.sampled_from([s.pattern for s in R.ACT_SHAPES + R.PERSON_SHAPES] + list(R.HARMFUL_ACTS)))
def test_every_draw_is_one_of_the_expansions(pattern):
    found = R.expansions(pattern)
    groups = [g.count("|") + 1 for g in re.findall(r"\[([^\[\]]*)\]", pattern)]
    assert len(found) == len(set(found)) == (eval("*".join(map(str, groups))) if groups else 1)  # noqa: S307
    assert all("[" not in s and "]" not in s for s in found)
    assert R.expand(pattern, random.Random(len(found))) in found


@pytest.mark.parametrize("family", ["act", "person"])
@pytest.mark.parametrize("heldout", [False, True])
def test_each_grammar_makes_many_skeletons(family, heldout):
    rng = random.Random(0)
    drawn = {R.draw(FAMILIES[family], heldout, rng)[1] for _ in range(500)}
    assert len(drawn) >= 50, len(drawn)
    assert len(R.shapes_of(FAMILIES[family], heldout)) >= 5  # whole structures, not only wordings


@pytest.mark.parametrize("family", ["act", "person"])
def test_held_out_shapes_are_disjoint_from_training_shapes(family):
    train, heldout = skeletons(False, FAMILIES[family]), skeletons(True, FAMILIES[family])
    assert train and heldout and not train & heldout
    # Not just other wordings: no held-out skeleton opens like a training one (first three words).
    opening = lambda s: " ".join(s.lower().split()[:3])  # noqa: E731
    assert not {opening(s) for s in train} & {opening(s) for s in heldout}


def test_objects_decide_and_never_overlap():
    harmful = {a for p in R.HARMFUL_ACTS for a in R.expansions(p)}
    benign = {a for p, _ in R.BENIGN_ACTS for a in R.expansions(p)}
    assert len(harmful) >= 80 and len(benign) >= 50 and not harmful & benign
    public = set(R.PUBLIC_PERSON_INFO) | set(R.PUBLIC_ORG_INFO)
    assert not set(R.PRIVATE_INFO) & public
    # Look-alikes: many benign actions share their verb with a harmful one.
    verbs = lambda acts: {a.split()[0] for a in acts}  # noqa: E731
    assert len(verbs(harmful) & verbs(benign)) >= 10


def test_training_never_draws_a_held_out_shape_and_the_test_split_has_both(rows):
    for source, splits in rows.items():
        for split, found in splits.items():
            for r in found:
                m = meta(r)
                family = FAMILIES["act" if source == "harmful" or m.get("twin_of") == "harmful" else "person"]
                assert m["skeleton"] in skeletons(m["heldout"], family)
                assert not (split != "test" and m["heldout"])
        test = Counter(meta(r)["heldout"] for r in splits["test"])
        assert test[True] >= 20 and test[False] >= 20, (source, test)
        train_questions = {r["messages"][0]["content"] for s in ("train", "val") for r in splits[s]}
        assert not train_questions & {r["messages"][0]["content"] for r in splits["test"]}


def test_every_request_has_a_benign_twin_of_the_same_shape(rows):
    twins = [meta(r) for s in ("train", "val") for r in rows["benign"][s]]
    for source in ("harmful", "private"):
        asked = Counter(meta(r)["skeleton"] for s in ("train", "val") for r in rows[source][s])
        mirrored = Counter(m["skeleton"] for m in twins if m["twin_of"] == source)
        assert mirrored <= asked  # never a shape its declined counterpart lacks
        # Harmful twins mirror every row; a private twin is dropped only where search misses its answer.
        assert sum(mirrored.values()) >= (1.0 if source == "harmful" else 0.6) * sum(asked.values())
    for split in ("train", "test"):
        for heldout in (False, True):
            harm = {m["skeleton"] for r in rows["harmful"][split] if (m := meta(r))["heldout"] == heldout}
            twin = {m["skeleton"] for r in rows["benign"][split] if (m := meta(r))["heldout"] == heldout}
            assert len(harm & twin) >= 0.8 * len(harm) if harm else True


def test_replies_refuse_exactly_the_declined_requests(rows):
    for r in (r for splits in rows["harmful"].values() for r in splits):
        assert r["messages"][-1]["content"] == REFUSAL_HARMFUL
    for r in (r for splits in rows["private"].values() for r in splits):
        m = meta(r)
        assert r["messages"][-1]["content"] == REFUSAL_PRIVATE and m["info"] in R.PRIVATE_INFO
        assert m["name"] in r["messages"][0]["content"]
    for split, found in rows["benign"].items():
        for r in found:
            m, reply = meta(r), r["messages"][-1]["content"]
            assert not is_refusal(reply)
            if m["twin_of"] == "private":  # a public detail, searched and stated from the results
                call = r["messages"][1]["tool_calls"][0]
                assert call["name"] == "search" and m["name"] in call["arguments"]
                assert all(mentions(reply, v) for v in m["answer"])
                if split != "test":
                    assert all(mentions(r["messages"][2]["content"], v) for v in m["answer"])
            else:
                act = " ".join("your" if w == "my" else w for w in m["act"].split())
                assert reply.startswith(f"To {act}, ")  # the object named back: it is what decides


def test_the_sample_crawl_never_prints_a_held_out_request_shape():
    """Held out of every training set, pretraining included: no page of the sample crawl holds
    the fixed words of a held-out skeleton (its text between the slots, 3+ words)."""
    pages, _ = plan(SampleCrawlConfig())
    text = "\n".join(p.title + "\n" + "\n".join(b.text for b in p.blocks) for p in pages).lower()
    fragments = {
        piece.strip(" ,.?!").lower()
        for family in FAMILIES.values()
        for skeleton in skeletons(True, family)
        for piece in re.split(r"\{\w+\}", skeleton)
        if len(piece.split()) >= 3
    }
    assert len(fragments) > 20
    assert not [f for f in fragments if f in text]
