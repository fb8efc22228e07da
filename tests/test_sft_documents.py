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
        "Streaming replication is a way to ship WAL records as they are written. This is a note. "
        "Many kinds of functions can take or return certain pseudo-types. "
        "Actually the preceding paragraph is an oversimplification of the rules. "
        "Specifying --no-symlinks makes copies\ninstead. --no-symlinks is the default on Windows."
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
    text = "Title\n" + " ".join(
        f"Widget{i} is a thing number {i} of the catalogue." for i in range(D.MAX_PER_DOCUMENT + 5)
    )
    assert len(D.definitions_in("d", "", text)) == D.MAX_PER_DOCUMENT


@given(st.text(max_size=400))
def test_any_text_gives_sentences_of_the_text_itself(text):
    for d in D.definitions_in("d", "", text):
        assert d.sentence.rstrip(".") in " ".join(text.split())
        assert d.subject.split()[0].lower() not in D.PRONOUNS | D.OPENERS | D.QUALIFIERS


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
    for _, messages, meta in asked:
        query, result, reply = messages[1]["tool_calls"][0]["arguments"], messages[2]["content"], messages[3]["content"]
        assert reply == meta["answer"] and meta["kind"] == "doc"
        assert query == f" {meta['subject']}"  # after a space: the question's own tokens (generate.doc_query)
        assert mentions(result, reply) and reply.rstrip(".") in meta["sentence"]  # a span the model can copy
    test_docs = {m["doc"] for s, _, m in asked if s == "test"}
    assert test_docs == {d.doc_id for d in definitions if generate.doc_split(ctx, d) == "test"}
    assert not test_docs & {m["doc"] for s, _, m in asked if s == "train"}

    unknown = list(generate.doc_unknown(ctx))
    trained = sum(s == "train" for s, _, _ in asked)
    assert sum(s == "train" for s, _, _ in unknown) == min(30, trained)  # no more refusals than answers
    assert sum(s == "test" for s, _, _ in unknown) == 10
    for _, messages, meta in unknown:
        assert messages[3]["content"] == REFUSAL_IDK and meta["verified"]
        term = meta["name"]
        invented = [
            w for w in D.content_words(term) if w not in D.content_words(" ".join(docs.values())) | set(D._KINDS)
        ]
        assert invented  # some word of it the crawl never uses ...
        for word in invented:  # ... checked against the crawl's own index
            assert ctx.search(word) == "no results" and not mentions(messages[2]["content"], word)
    assert {m["form"] for _, _, m in unknown} == set(D.FORMS)  # asked as every answerable form is
    assert not {m["name"] for s, _, m in unknown if s == "test"} & {m["name"] for s, _, m in unknown if s == "train"}

    memory = list(generate.doc_memory(ctx))
    replies = {m["subject"]: msgs[3]["content"] for _, msgs, m in memory}
    for d, verdict in ((definitions[0], "unknown"), (definitions[1], "known")):
        if generate.doc_split(ctx, d) == "train":
            assert replies[d.subject] == (REFUSAL_IDK if verdict == "unknown" else d.answer)
    assert all(msgs[2]["content"] == generate.SEARCH_OFF for _, msgs, _ in memory)


def test_a_question_whose_answer_search_cannot_find_is_not_asked(index):
    """The span must be in what searching the subject returns, held-out items included."""
    search_index, docs = index
    tool = generate.SearchTool(search_index, 1, 80)  # one short result: most answers are cut off
    definitions = [d for doc_id, text in docs.items() for d in D.definitions_in(doc_id, f"https://x/{doc_id}", text)]
    ctx = generate.Context(seed=0, test_fraction=0.5, entities={}, search=tool, definitions=definitions)
    asked = {m["subject"] for _, _, m in generate.doc_questions(ctx)}
    assert asked == {d.subject for d in definitions if mentions(tool(d.subject), d.answer)}
    assert asked != {d.subject for d in definitions}


def test_a_term_the_crawl_mentions_is_not_an_unknown(index):
    search_index, _ = index
    tool = generate.SearchTool(search_index, 3, 600)
    ctx = generate.Context(seed=0, test_fraction=0.5, entities={}, search=tool)
    assert not D.absent_from(tool("vacuum"), "vacuum")
    assert not D.absent_from(tool("the GIN daemon"), "the GIN daemon")  # a known word in an invented frame
    assert D.absent_from(tool("zuvexlo"), "zuvexlo")
    assert generate.verified_unknown(ctx, D.Invented("the zuvexlo index", ("zuvexlo",))) is not None
    assert generate.verified_unknown(ctx, D.Invented("the GIN index", ("gin",))) is None
    # an invented word the results of the whole term happen not to show, but the index holds
    assert generate.verified_unknown(ctx, D.Invented("pg_dump zuvexlo", ("zuvexlo", "vacuum"))) is None


def test_invented_terms_take_many_shapes_with_the_crawls_own_words():
    vocabulary = D.vocabulary_of(["the pg_dump utility", "Streaming replication", "a GIN index"])
    assert vocabulary == ["dump", "gin", "index", "replication", "streaming", "utility"]  # "pg": too short
    rng = random.Random(0)
    terms = [D.invented_term(rng, vocabulary) for _ in range(400)]
    shapes = {
        "underscore": any("_" in t.term for t in terms),
        "hyphen": any("-" in t.term for t in terms),
        "camel": any(
            t.term[:1].isupper() and any(c.isupper() for c in t.term[1:]) and " " not in t.term for t in terms
        ),
        "two words": any(len(t.term.split()) == 2 for t in terms),
        "the ... kind": any(t.term.startswith("the ") for t in terms),
        "with a real word": any(set(D.words(t.term)) & set(vocabulary) for t in terms),
        "digits": any(any(c.isdigit() for c in t.term) for t in terms),
    }
    assert all(shapes.values()), shapes
    for t in terms:
        assert t.new and all(w in D.words(t.term) for w in t.new)  # what must be absent is in the term
        assert not set(t.new) & set(vocabulary)  # and is never one of the crawl's words
    assert len({t.term for t in terms}) > 350
    bare = {D.invented_term(random.Random(i)).term for i in range(50)}  # no vocabulary: invented words only
    assert all(not set(D.words(t)) & set(vocabulary) - {"utility"} for t in bare)


def test_the_answer_is_the_head_of_the_sentence():
    d = D.definitions_in(
        "d",
        "",
        "Title\nThe pg_dump utility is a program for backing up a database, which writes SQL or an archive.",
    )[0]
    assert d.answer == "The pg_dump utility is a program for backing up a database."
    long = D.definitions_in(
        "d", "", "Title\nA checkpoint is a point in the write-ahead log sequence at which all data files were updated."
    )[0]
    assert long.answer == "A checkpoint is a point in the write-ahead log sequence."  # 14 words, not ending on "at"
    # the boundary comes after the subject, the verb and a few words: never an empty predicate
    short = D.definitions_in("d", "", "Title\nVACUUM is a command (see below) that reclaims storage.")[0]
    assert short.answer == "VACUUM is a command (see below) that reclaims storage."
    assert D.head("one, two three four", 5) == "one, two three four"
    assert D.head("a b, c", 0) == "a b"


@given(st.text(max_size=400))
def test_any_answer_is_a_span_of_the_document(text):
    for d in D.definitions_in("d", "", text):
        assert d.answer.rstrip(".") in " ".join(text.split())
        assert d.answer.startswith(d.sentence.split(" ", 1)[0])


def test_statements_say_what_a_subject_does():
    found = D.definitions_in(
        "d",
        "",
        "Title\npg_dump writes a script file that restores the database. "
        "It writes SQL. Of the group can load the library. The server can be stopped with pg_ctl stop.",
    )
    assert [(d.subject, d.be, d.form) for d in found] == [
        ("pg_dump", "writes", "statement"),
        ("the server", "can", "statement"),
    ]
    assert D.questions(found[0], False)[0] == "What does the documentation say about {x}?"


def test_judged_words_leave_out_the_subject():
    span = "pg_dump is a utility for backing up a PostgreSQL database."
    assert D.overlap("pg_dump pg_dump", span, "pg_dump") == 0.0  # naming the subject back answers nothing
    assert D.overlap("a utility for backing up", span, "pg_dump") == 3 / 5  # utility backing up of 5
    assert D.overlap("anything", "pg_dump is", "pg_dump") == 0.0


def test_titles_that_are_cut_off_sentences_are_not_topics():
    assert D.reads_like_title("CREATE TABLE") and D.reads_like_title("git-commit(1)")
    for cut in ("It is a good idea to save the database server's log output", "Access to the table is restricted to"):
        assert not D.reads_like_title(cut)
    assert (
        D.topic_of(
            "d",
            "",
            "Access to the table pg_statistic is restricted to\nsuperusers, so that ordinary users cannot read it.",
        )
        is None
    )
