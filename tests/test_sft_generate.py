"""tasks/sft/generate.py and probe.py: reproducible conversations, held-out splits that never
leak into training, tool results exactly as the engine produces them, probe verdicts."""

from __future__ import annotations

import json

import pytest

from models.chat import render_conversation
from models.engine import Engine
from models.gpt import GPT
from models.tokenizer import Tokenizer
from models.tools import SearchIndex
from tasks import mathgen
from tasks.sft import documents as D
from tasks.sft import generate as G
from tasks.sft import probe
from tasks.sft import templates as T
from tasks.sft.answers import REFUSAL_IDK, extract_answer, mentions
from tests.support import sft_world


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return sft_world.build(str(tmp_path_factory.mktemp("lake")))


@pytest.fixture(scope="module")
def index(tiny):
    found = SearchIndex.open(tiny["search"])
    yield found
    found.close()


def context(tiny, index, seed=0, probe_verdicts=None):
    return G.Context(
        seed=seed,
        test_fraction=0.3,
        entities=G.load_entities(tiny["facts"]),
        search=G.SearchTool(index, 2, 300),
        probe=probe_verdicts or {},
        counts={
            "unknown": 30,
            "echo": 30,
            "math": 20,
            "math_test": 10,
            "math_heldout": 8,
            "private": 10,
            "harmful": 10,
            "benign": 10,
        },
    )


def everything(ctx):
    return {source: G.generate(source, ctx, 0.1) for source in G.SOURCES}


def test_the_same_seed_gives_identical_conversations_and_another_seed_does_not(tiny, index):
    first, again = everything(context(tiny, index)), everything(context(tiny, index))
    assert first == again
    other = everything(context(tiny, index, seed=1))
    assert other["math"]["train"] != first["math"]["train"] and other["facts_search"] != first["facts_search"]
    assert sum(len(rows) for splits in first.values() for rows in splits.values()) > 200


def test_held_out_entities_phrasings_names_and_problems_never_reach_training(tiny, index):
    data = everything(context(tiny, index))
    train = [r for splits in data.values() for s in ("train", "val") for r in splits[s]]
    test = [r for splits in data.values() for r in splits["test"]]
    meta = lambda r: json.loads(r["meta"])  # noqa: E731
    question = lambda r: r["messages"][0]["content"]  # noqa: E731
    assert {meta(r)["split"] for r in test} == {"test"}
    train_entities = {meta(r)["entity"] for r in train if "entity" in meta(r)}
    test_entities = {meta(r)["entity"] for r in test if "entity" in meta(r)}
    assert train_entities and test_entities and not train_entities & test_entities

    def distinctive(rows):  # an unknown person's surname, the invented or town word of the others
        m = [meta(r) for r in rows if meta(r)["kind"] == "unknown"]
        return {w for x in m for w in x["term"].split()[x["entity_kind"] == "person" :]}

    assert distinctive(train) and distinctive(test) and not distinctive(train) & distinctive(test)
    assert not {question(r) for r in train} & {question(r) for r in test}
    # Questions about entities: the test split asks in the training grammar and in the held-out
    # one; no held-out skeleton is ever trained on, and both groups are there to be measured.
    asked = [r for r in test if meta(r)["kind"] in ("fact", "unknown")]
    trained = {meta(r)["template"] for r in train if meta(r)["kind"] in ("fact", "unknown")}
    held_out = {meta(r)["template"] for r in asked if meta(r)["heldout"]}
    assert held_out and {meta(r)["template"] for r in asked if not meta(r)["heldout"]}
    assert not held_out & trained
    assert not any(meta(r).get("heldout") for r in train)


def test_search_results_and_the_search_off_error_are_what_the_real_engine_forces(tiny, index):
    tok = Tokenizer.load(tiny["tokenizer"])
    model = GPT(sft_world.MODEL)
    tool = G.SearchTool(index, 2, 300)
    for query in ("Ashby town", "nobody here at all", "?!"):
        engine = Engine(model, tok, search=index, search_results=2, result_chars=300)
        assert engine.run_tool("search", query).result == tool(query)
    assert Engine(model, tok).run_tool("search", "anything").result == G.SEARCH_OFF


def test_trained_answers_are_grounded_and_unknown_entities_are_refused(tiny, index):
    ctx = context(tiny, index)
    facts = G.generate("facts_search", ctx, 0.0)
    assert facts["train"]
    for r in facts["train"]:
        result, reply = r["messages"][2]["content"], r["messages"][3]["content"]
        values = json.loads(r["meta"])["answer"]
        assert all(mentions(result, v) for v in values)  # the answer is a span of what the model reads
        assert all(mentions(reply, v) for v in values)  # and the reply copies it
    unknown = G.generate("unknown", ctx, 0.0)
    for r in unknown["train"] + unknown["test"]:
        m = json.loads(r["meta"])
        result = r["messages"][2]["content"]
        assert r["messages"][3]["content"] == REFUSAL_IDK
        # What the model read says nothing of it: no results, the tool failing, or passages about others.
        if D.absent_from(ctx.search(m["term"]), m["term"]):  # not even its distinctive word alone
            assert result == G.SEARCH_OFF or D.absent_from(result, m["term"])
        else:  # a new pairing of known names: passages about others, none naming it
            assert m["entity_kind"] == "person" and not mentions(result, m["name"])


def test_unknown_entities_are_of_every_kind_and_verified_absent_from_the_index(tiny, index):
    ctx = context(tiny, index)
    ctx.counts["unknown"] = 200
    rows = G.generate("unknown", ctx, 0.0)
    kinds = {split: {json.loads(r["meta"])["entity_kind"] for r in rows[split]} for split in ("train", "test")}
    assert kinds["train"] == kinds["test"] == {"person", "town", "org", "thing"}
    known_words = {w.lower() for e in ctx.entities.values() for w in e.name.split()}
    known_names = {e.name for e in ctx.entities.values()}
    paired = 0
    for r in rows["train"] + rows["test"]:
        m = json.loads(r["meta"])
        words = {w.lower() for w in m["term"].split()}
        if m["entity_kind"] == "person" and words <= known_words:
            # A new pairing of known first names and surnames: the index has no passage naming it.
            paired += 1
            assert m["name"] not in known_names and r in rows["train"] + rows["val"]
            hits = index.search(m["name"], k=10, max_chars=8000)
            assert not any(mentions(f"{p.title}: {p.text}", m["name"]) for p in hits)
        else:
            assert m["verified"] and not words & known_words
    assert paired  # the copy-or-fail cases are there
    train_names = {json.loads(r["meta"])["name"] for r in rows["train"] + rows["val"]}
    assert not train_names & {json.loads(r["meta"])["name"] for r in rows["test"]}


def test_the_query_carries_the_name_in_the_question_s_own_tokens(tiny, index):
    """The search query is the entity's name, verbatim, and tokenized exactly as it is in the
    question (a leading space: BPE spells a word at the start of a text differently)."""
    tok = Tokenizer.load(tiny["tokenizer"])
    ctx = context(tiny, index, probe_verdicts={})
    rows = [
        r for source in ("facts_search", "unknown") for s in ("train", "test") for r in G.generate(source, ctx, 0)[s]
    ]
    assert len(rows) > 50
    for r in rows:
        name = json.loads(r["meta"])["name"]
        question, query = r["messages"][0]["content"], r["messages"][1]["tool_calls"][0]["arguments"]
        assert name in question and query.startswith(f" {name}")
        if question.startswith(name):
            continue  # "Ashby. Which river is it on?": the one shape that must respell the name
        spelled = tok.encode(f" {name}")
        in_question = tok.encode(question[: question.index(name) + len(name)])
        assert in_question[-len(spelled) :] == spelled == tok.encode(query)[: len(spelled)]


def test_memory_answers_follow_the_probe(tiny, index):
    entities = G.load_entities(tiny["facts"])
    person = next(e for e in entities.values() if e.kind == "person" and G.entity_split(e.id, 0, 0.3) == "train")
    verdicts = {
        (person.id, "birth_year"): "known",
        (person.id, "birthplace"): "unknown",
        (person.id, "profession"): "unsure",
    }
    rows = G.generate("facts_memory", context(tiny, index, probe_verdicts=verdicts), 0.0)["train"]
    by_attribute = {json.loads(r["meta"])["attribute"]: r for r in rows}
    assert set(by_attribute) == {"birth_year", "birthplace"}  # unsure: trained neither way
    assert by_attribute["birth_year"]["messages"][3]["content"] == f"Born in the year {person.facts['birth_year']}."
    assert by_attribute["birthplace"]["messages"][3]["content"] == REFUSAL_IDK
    assert all(r["messages"][2]["content"] == G.SEARCH_OFF for r in rows)


def test_math_conversations_use_the_real_calculator_and_end_in_the_answer_format(tiny, index):
    tok = Tokenizer.load(tiny["tokenizer"])
    rows = G.generate("math", context(tiny, index), 0.0)
    for r in rows["train"] + rows["test"]:
        messages = r["messages"]
        calls = [m["tool_calls"][0]["arguments"] for m in messages if m["tool_calls"]]
        results = [m["content"] for m in messages if m["role"] == "tool"]
        assert calls and [str(int(eval(c))) for c in calls] == results  # noqa: S307 (digits and operators only)
        assert extract_answer(messages[-1]["content"]) == json.loads(r["meta"])["answer"]
        render_conversation(tok, messages)
    # Training draws only the training families; the test split has new seeds of them and,
    # marked heldout, the held-out families (which no training set draws from).
    family = lambda r: json.loads(r["meta"])["template"]  # noqa: E731
    assert {family(r) for r in rows["train"]} <= set(mathgen.TRAIN_FAMILIES)
    heldout = [r for r in rows["test"] if json.loads(r["meta"]).get("heldout")]
    assert {family(r) for r in heldout} == set(mathgen.HELDOUT_FAMILIES)
    assert {family(r) for r in rows["test"] if r not in heldout} <= set(mathgen.TRAIN_FAMILIES)


def test_code_conversations_solve_the_training_problems_with_a_program(tiny, index):
    tok = Tokenizer.load(tiny["tokenizer"])
    ctx = context(tiny, index)
    ctx.counts["code_math"] = 20
    code = G.generate("code_math", ctx, 0.0)
    calc = G.generate("math", ctx, 0.0)
    assert not code["test"] and len(code["train"]) == 20  # evaluated on math's test split, asked with the code tool
    # The same questions as the calculator's training problems: no new overlap with math's test split.
    assert [r["messages"][0]["content"] for r in code["train"]] == [r["messages"][0]["content"] for r in calc["train"]]
    for r in code["train"]:
        user, call, output, reply = r["messages"]
        answer = json.loads(r["meta"])["answer"]
        assert (
            call["tool_calls"][0]["name"] == "python" and call["tool_calls"][0]["arguments"].splitlines()[-1].isalpha()
        )
        assert (output["role"], output["content"], reply["content"]) == ("tool", str(answer), f"Answer: {answer}")
        ids, mask = render_conversation(tok, r["messages"])
        start, end = tok.special("<|python_output_start|>"), tok.special("<|python_output_end|>")
        assert mask[ids.index(start) : ids.index(end) + 1] == [0] * (
            ids.index(end) - ids.index(start) + 1
        )  # output not trained
        assert mask[ids.index(tok.special("<|python_start|>"))] == 1


@pytest.mark.parametrize("correct, verdict", [(4, "known"), (3, "unsure"), (1, "unsure"), (0, "unknown")])
def test_probe_verdicts_at_their_edges(correct, verdict):
    assert probe.verdict(correct, 4) == verdict


def test_who_is_known_only_when_both_parts_are():
    rows = [
        {"entity_id": "a", "attribute": "profession", "verdict": "known"},
        {"entity_id": "a", "attribute": "birthplace", "verdict": "known"},
        {"entity_id": "b", "attribute": "profession", "verdict": "known"},
        {"entity_id": "b", "attribute": "birthplace", "verdict": "unsure"},
        {"entity_id": "c", "attribute": "profession", "verdict": "unsure"},
        {"entity_id": "c", "attribute": "birthplace", "verdict": "unknown"},
    ]
    found = probe.verdicts(rows)
    assert (found[("a", "who")], found[("b", "who")], found[("c", "who")]) == ("known", "unsure", "unknown")


def test_probing_a_real_model_is_reproducible_and_judged_by_the_value(tiny):
    entities = [e for e in G.load_entities(tiny["facts"]).values() if e.kind == "person"][:2]
    items = probe.probe_items(entities)
    assert {i["attribute"] for i in items} == {"birth_year", "birthplace", "profession", "employer"}
    engine = Engine.from_checkpoint(tiny["base"])
    first = probe.probe(engine, items[:3], 3, 1.0, 6, seed=5)
    assert first == probe.probe(engine, items[:3], 3, 1.0, 6, seed=5)
    for row in first:
        assert row["correct"] == sum(mentions(s, row["value"]) for s in row["samples"]) and len(row["samples"]) == 3


def test_echo_repeats_names_of_nobody(tiny, index):
    ctx = context(tiny, index)
    rows = G.generate("echo", ctx, 0.0)["train"]
    real = {e.name for e in ctx.entities.values()}
    assert len(rows) == 30
    for r in rows:
        question, reply = r["messages"][0]["content"], r["messages"][1]["content"]
        said = json.loads(r["meta"])["name"]
        assert reply == T.ECHO_REPLY.format(name=said) and said in question
        names = said.split(", ")
        assert 1 <= len(names) <= 4 and all(n not in real and len(n.split()) == 2 for n in names)
    assert max(len(json.loads(r["meta"])["name"].split(", ")) for r in rows) > 1
