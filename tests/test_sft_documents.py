"""Questions from what a crawl's documents define (tasks/sft/documents.py) and the SFT sources
built on them: on hand-written sentences, on real documentation HTML, and with a real index."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.tools import SearchIndex, create_index
from tasks.search import passages, title_of
from tasks.sft import documents as D
from tasks.sft import generate
from tasks.sft.answers import REFUSAL_IDK, mentions

POSTGRES_HTML = Path("/usr/share/doc/postgresql-doc-15/html")


def test_a_definition_is_a_named_subject_then_a_predicate():
    text = (
        "Backups\nThe pg_dump utility is a program for backing up a database. It is a good idea to test it. "
        "If NOWAIT is specified, it waits. The latter is the same as the former. "
        "Streaming replication is a way to ship WAL records as they are written. This is a note."
    )
    found = D.definitions_in("d1", "https://x/backup.html", text)
    assert [(d.subject, d.be) for d in found] == [("the pg_dump utility", "is"), ("Streaming replication", "is")]
    assert found[0].sentence == "The pg_dump utility is a program for backing up a database."
    assert found[0].cloze == "The pg_dump utility is" and found[0].key == "a program for backing"
    assert found[0].title == "Backups" and found[0].id == "d1:0:0"


def test_a_page_is_about_its_title_and_opens_with_what_it_is():
    topic = D.topic_of(
        "d9",
        "https://x/app-pgdump.html",
        "pg_dump\nName\npg_dump — extract a PostgreSQL database into a script file or other archive file.",
    )
    assert topic is not None and topic.form == "topic" and topic.subject == "pg_dump"
    assert topic.sentence == "pg_dump — extract a PostgreSQL database into a script file or other archive file."
    assert topic.cloze == "pg_dump\n" and D.questions(topic, False)[0] == "What is {x} about?"
    assert D.topic_of("d", "", "Title\nshort.") is None  # no sentence that reads like one
    assert (
        D.topic_of("d", "", "DROP LANGUAGE\nor the owner of the language to use DROP LANGUAGE, or a superuser.") is None
    )  # a fragment


def test_at_most_a_few_definitions_per_document():
    text = "Title\n" + " ".join(f"Widget{i} is a thing number {i} of the catalogue." for i in range(10))
    assert len(D.definitions_in("d", "", text)) == D.MAX_PER_DOCUMENT


@given(st.text(max_size=400))
def test_any_text_gives_sentences_of_the_text_itself(text):
    for d in D.definitions_in("d", "", text):
        assert d.sentence.rstrip(".") in " ".join(text.split())
        assert d.subject.split()[0].lower() not in D.PRONOUNS | D.OPENERS


def test_overlap_counts_content_words_of_the_span():
    assert D.overlap("pg_dump backs up", "pg_dump is a utility") == 2 / 3  # pg, dump of pg, dump, utility
    assert D.overlap("anything", "the a of") == 0.0


def test_real_documentation_pages_define_things():
    """On real HTML (PostgreSQL's manual, extracted as curation does), definitions are found and
    every one is a sentence of its page; nothing about the pages is assumed."""
    if not POSTGRES_HTML.is_dir():  # a missing install fails, as the other real-HTML tests do
        pytest.fail("postgresql-doc-15 is not installed: run `make system-packages`")
    from resiliparse.extract.html2text import extract_plain_text

    pages = sorted(POSTGRES_HTML.glob("*.html"))
    random.Random(0).shuffle(pages)
    found = []
    for page in pages[:80]:
        text = extract_plain_text(page.read_text(errors="replace"), main_content=True)
        for d in D.definitions_in(page.name, f"https://www.postgresql.org/docs/15/{page.name}", text):
            assert d.sentence.rstrip(".") in " ".join(text.split())
            found.append(d)
    assert len(found) >= 20 and len({d.doc_id for d in found}) >= 10


@pytest.fixture
def index(tmp_path):
    docs = {
        "d1": "Backups\nThe pg_dump utility is a program for backing up a database. It writes SQL.",
        "d2": "Replication\nStreaming replication is a way to ship WAL records as they are written.",
        "d3": "Vacuum\nVACUUM is a command that reclaims storage occupied by dead tuples.",
        "d4": "Indexes\nA GIN index is an inverted index for composite values such as arrays.",
    }
    rows = [
        (title, p, f"https://x/{doc_id}", doc_id)
        for doc_id, text in docs.items()
        for title, body in [title_of(text, "")]
        for p in passages(body, 300)
    ]
    path = tmp_path / "index.sqlite"
    create_index(str(path), rows)
    found = SearchIndex(path)
    yield found, docs
    found.close()


def test_doc_sources_answer_from_results_and_refuse_verified_unknowns(index):
    search_index, docs = index
    definitions = [d for doc_id, text in docs.items() for d in D.definitions_in(doc_id, f"https://x/{doc_id}", text)]
    ctx = generate.Context(
        seed=0,
        test_fraction=0.5,
        entities={},
        search=generate.SearchTool(search_index, 3, 600),
        counts={"doc_questions": 2, "doc_unknown": 30, "doc_unknown_test": 10},
        definitions=definitions,
        probe={(definitions[0].id, "definition"): "unknown", (definitions[1].id, "definition"): "known"},
    )
    asked = list(generate.doc_questions(ctx))
    splits = {generate.doc_split(ctx, d) for d in definitions}
    assert splits == {"train", "test"}  # whole documents held out
    for split, messages, meta in asked:
        result, reply = messages[2]["content"], messages[3]["content"]
        assert reply == meta["answer"] and meta["kind"] == "doc"
        if split == "train":
            assert mentions(
                result, " ".join(meta["answer"].split(" is ", 1)[1].split()[:4])
            )  # grounded in what the model reads
    test_docs = {m["doc"] for s, _, m in asked if s == "test"}
    assert test_docs == {d.doc_id for d in definitions if generate.doc_split(ctx, d) == "test"}
    assert not test_docs & {m["doc"] for s, _, m in asked if s == "train"}

    unknown = list(generate.doc_unknown(ctx))
    answerable = 2 * sum(
        generate.doc_split(ctx, d) == "train" for d in definitions
    )  # doc_questions' phrasings per definition
    assert (
        sum(s == "train" for s, _, _ in unknown) == min(30, answerable)
        and sum(s == "test" for s, _, _ in unknown) == 10
    )
    for _, messages, meta in unknown:
        assert messages[3]["content"] == REFUSAL_IDK and meta["verified"]
        assert D.absent_from(ctx.search(meta["name"]), meta["name"])  # checked against the crawl's own index
    assert not {m["name"] for s, _, m in unknown if s == "test"} & {m["name"] for s, _, m in unknown if s == "train"}

    memory = list(generate.doc_memory(ctx))
    replies = {m["subject"]: msgs[3]["content"] for _, msgs, m in memory}
    for d, verdict in ((definitions[0], "unknown"), (definitions[1], "known")):
        if generate.doc_split(ctx, d) == "train":
            assert replies[d.subject] == (REFUSAL_IDK if verdict == "unknown" else d.sentence)
    assert all(msgs[2]["content"] == generate.SEARCH_OFF for _, msgs, _ in memory)


def test_a_term_the_crawl_mentions_is_not_an_unknown(index):
    search_index, _ = index
    tool = generate.SearchTool(search_index, 3, 600)
    assert not D.absent_from(tool("vacuum"), "vacuum")
    assert not D.absent_from(tool("the GIN daemon"), "the GIN daemon")  # a known word in an invented frame
    assert D.absent_from(tool("zuvexlo"), "zuvexlo")
