"""models/tools.py: the calculator and the search client, fed what a hostile model could write."""

from __future__ import annotations

import ast
import json
import math
import sqlite3
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models import tools
from models.tools import (
    MAX_EXPRESSION_CHARS,
    MAX_INT_BITS,
    MAX_NODES,
    MAX_QUERY_TERMS,
    MAX_TERM_CHARS,
    SearchIndex,
    ToolError,
    calculate,
    create_index,
    evaluate,
    format_number,
    format_passages,
    match_expression,
    query_terms,
)

FAST = 2.0  # seconds: a generous bound for anything a tool does with hostile input

# -- the calculator ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "expression, value",
    [
        ("12*34", 408),
        ("(1 + 2) * -3", -9),
        ("7 // 2", 3),
        ("-7 // 2", -4),
        ("7 % -3", -2),
        ("7 / 2", 3.5),
        ("2 ** 10", 1024),
        ("2 ** -2", 0.25),
        ("2^10", 1024),  # what people (and models) write for a power
        ("3 × 4 ÷ 2", 6.0),
        ("1.5e3 + 0.25", 1500.25),
        ("  +5  ", 5),
    ],
)
def test_arithmetic_is_pythons(expression, value):
    result = evaluate(expression)
    assert result == value and type(result) is type(value)


@pytest.mark.parametrize(
    "expression",
    [
        "__import__('os')",
        "__import__('os').system('echo pwned')",
        "().__class__.__bases__[0].__subclasses__()",
        "open('/etc/passwd').read()",
        "x + 1",
        "abs(-1)",
        "'a' * 3",
        "True + 1",
        "1j * 1j",
        "1 < 2",
        "1 if 1 else 2",
        "[1, 2][0]",
        "lambda: 1",
        "1; 2",
        "f'{1}'",
        "(1).real",
        "...",
        "",
        "   ",
        "1 +",
        "\x00",
    ],
)
def test_anything_but_arithmetic_is_refused(expression):
    with pytest.raises(ToolError):
        evaluate(expression)


@pytest.mark.parametrize(
    "expression",
    [
        "9**9**9**9",
        "9**9**9",
        "10**10**10",
        "2**(2**64)",
        "(10**100)**(10**100)",
        "-(9**9**9)",
        "9.0**9**9",
        "1e308*10",
        "10.0**400",
    ],
)
def test_explosive_numbers_are_refused_fast(expression):
    started = time.perf_counter()
    with pytest.raises(ToolError):
        evaluate(expression)
    assert time.perf_counter() - started < FAST


def test_integer_size_bound_at_its_edge():
    assert evaluate(f"2**{MAX_INT_BITS - 1}") == 2 ** (MAX_INT_BITS - 1)  # MAX_INT_BITS bits: allowed
    with pytest.raises(ToolError, match="too large"):
        evaluate(f"2**{MAX_INT_BITS}")  # one bit more
    half = MAX_INT_BITS // 2
    assert evaluate(f"2**{half} * 2**{half - 1}") == 2 ** (MAX_INT_BITS - 1)
    with pytest.raises(ToolError):
        evaluate(f"2**{half} * 2**{half}")
    # Powers of 0, 1 and -1 are small whatever the exponent: computed, not refused.
    assert (
        evaluate("1 ** (10**100)") == 1 and evaluate("(-1) ** (10**100 + 1)") == -1 and evaluate("0 ** (10**100)") == 0
    )


def test_length_and_node_bounds_at_their_edges():
    assert evaluate("1+1" + " " * (MAX_EXPRESSION_CHARS - 3)) == 2
    with pytest.raises(ToolError, match="longer than"):
        evaluate("1+1" + " " * (MAX_EXPRESSION_CHARS - 2))
    # "1+1+...+1" with k additions has 3k + 2 AST nodes (Expression, k BinOps, k Adds, k+1 ones).
    k = (MAX_NODES - 2) // 3
    assert evaluate("+".join(["1"] * (k + 1))) == k + 1
    with pytest.raises(ToolError, match="parts"):
        evaluate("+".join(["1"] * (k + 2)))
    # Deep nesting: parentheses make no nodes (harmless); unary minus signs do.
    assert evaluate("(" * 127 + "1" + ")" * 127) == 1
    with pytest.raises(ToolError, match="parts"):
        evaluate("-" * 200 + "1")


def test_megabyte_expression_is_refused_without_parsing_it():
    started = time.perf_counter()
    with pytest.raises(ToolError, match="longer than"):
        evaluate("1+" * 500_000 + "1")
    assert time.perf_counter() - started < 0.1


def test_division_by_zero_and_complex_results_are_refused():
    for expression in ("1/0", "1//0", "1%0", "0**-1", "1.0/0.0", "(-8)**0.5", "(-8.0)**(1/3)"):
        with pytest.raises(ToolError):
            evaluate(expression)


def test_results_read_well():
    assert calculate("0.1 + 0.2") == "0.3"
    assert calculate("6 / 3") == "2"
    assert calculate("2**100") == str(2**100)
    assert calculate("1 / 3") == "0.333333333333"
    # Integral floats print as integers while they are exact (below 2**53), then in 12 digits.
    assert format_number(float(2**53 - 1)) == str(2**53 - 1)
    assert format_number(2.0**53) == "9.00719925474e+15" and format_number(1e300) == "1e+300"


# Random expression trees: the calculator equals Python's arithmetic wherever every
# intermediate value is within the bounds, and refuses otherwise.

OPS = ["+", "-", "*", "/", "//", "%", "**"]
LEAVES = st.one_of(
    st.integers(-20, 20),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12),
    st.floats(allow_nan=False, allow_infinity=False),
)


def trees(leaves=LEAVES):
    return st.recursive(
        leaves,
        lambda kids: st.one_of(st.tuples(st.sampled_from(OPS), kids, kids), st.tuples(st.sampled_from("+-"), kids)),
        max_leaves=8,
    )


def render(tree) -> str:
    if not isinstance(tree, tuple):
        return repr(tree)
    if len(tree) == 2:
        return f"{tree[0]}({render(tree[1])})"
    return f"({render(tree[1])}) {tree[0]} ({render(tree[2])})"


class OutOfBounds(Exception):
    pass


def oracle(tree):
    """Python's own arithmetic over the tree, refusing exactly what the bounds exclude. Powers
    too large to compute cheaply are out of bounds by a margin (their size is at least
    (bits(base) - 1) * exponent > 4 * MAX_INT_BITS)."""

    def bounded(v):
        if isinstance(v, complex) or (isinstance(v, float) and not math.isfinite(v)):
            raise OutOfBounds
        if isinstance(v, int) and v.bit_length() > MAX_INT_BITS:
            raise OutOfBounds
        return v

    if not isinstance(tree, tuple):
        return bounded(tree)
    if len(tree) == 2:
        v = oracle(tree[1])
        return bounded(v if tree[0] == "+" else -v)
    op, a, b = tree[0], oracle(tree[1]), oracle(tree[2])
    if op == "**" and isinstance(a, int) and isinstance(b, int) and abs(a) > 1 and b > 0:
        if (abs(a).bit_length() - 1) * b > 4 * MAX_INT_BITS:
            raise OutOfBounds
    try:
        return bounded(
            {"+": a + b, "-": a - b, "*": a * b}[op]
            if op in "+-*"
            else {"/": lambda: a / b, "//": lambda: a // b, "%": lambda: a % b, "**": lambda: a**b}[op]()
        )
    except (ZeroDivisionError, OverflowError):
        raise OutOfBounds from None


@settings(max_examples=400, deadline=None)
@given(tree=trees())
def test_random_expression_trees_match_python_or_are_refused(tree):
    text = render(tree)
    too_big = len(text) > MAX_EXPRESSION_CHARS or sum(1 for _ in ast.walk(ast.parse(text, mode="eval"))) > MAX_NODES
    try:
        expected = None if too_big else oracle(tree)
    except OutOfBounds:
        expected = None
    started = time.perf_counter()
    try:
        got = evaluate(text)
    except ToolError:
        got = None
    assert time.perf_counter() - started < FAST
    if expected is None:
        assert got is None, f"{text} should be refused, got {got!r}"
    else:
        assert got == expected and type(got) is type(expected), text


@settings(max_examples=500, deadline=None)
@given(text=st.one_of(st.text(max_size=300), st.text(alphabet="0123456789+-*/%()^. e_jxTrue", max_size=300)))
def test_any_text_gives_a_number_or_a_tool_error(text):
    started = time.perf_counter()
    try:
        value = evaluate(text)
    except ToolError:
        return
    finally:
        assert time.perf_counter() - started < FAST
    assert type(value) in (int, float)


# -- the query sanitiser -----------------------------------------------------------------

HOSTILE_QUERIES = [
    '"',
    '"unbalanced',
    "*",
    "capital*",
    "NEAR(",
    "NEAR(a b, 2)",
    "OR",
    "a OR OR b",
    "AND NOT",
    "-",
    "-capital",
    "title:capital",
    "text : x",
    "^capital",
    "{title text}: x",
    "'); DROP TABLE passages; --",
    '"); DELETE FROM passages WHERE 1; --',
    "' OR 1=1 --",
    "capital\x00city",
    "?",
    "what's the capital (city)?",
    "",
    "   ",
    "___",
]


@pytest.mark.parametrize("query", HOSTILE_QUERIES)
def test_query_terms_are_plain_words(query):
    for term in query_terms(query):
        assert term.isalnum() and term == term.lower()


FTS = sqlite3.connect(":memory:", check_same_thread=False)
FTS.execute("CREATE VIRTUAL TABLE t USING fts5(x)")


@settings(max_examples=500, deadline=None)
@given(query=st.one_of(st.text(), st.text(alphabet=" \"*()-:^{}+,.'ORANDNEARNOT;_abc", max_size=200)))
def test_any_query_becomes_a_bounded_list_of_words(query):
    terms = query_terms(query)
    assert len(terms) <= MAX_QUERY_TERMS and len(set(terms)) == len(terms)
    assert all(0 < len(t) <= MAX_TERM_CHARS and t.isalnum() for t in terms)
    # Every term is a quoted string, so the expression is valid FTS5 whatever the words say.
    if terms:
        FTS.execute("SELECT * FROM t WHERE t MATCH ?", (match_expression(terms),)).fetchall()


def test_query_terms_keep_order_and_cap_count_and_length():
    assert query_terms("Capital OF the capital, of France!") == ["capital", "of", "the", "france"]
    words = [f"w{i}" for i in range(MAX_QUERY_TERMS + 5)]
    assert query_terms(" ".join(words)) == words[:MAX_QUERY_TERMS]
    assert query_terms("a" * MAX_TERM_CHARS + " " + "b" * (MAX_TERM_CHARS + 1)) == ["a" * MAX_TERM_CHARS]
    assert query_terms("café Zürich 東京") == ["café", "zürich", "東京"]


# -- the search index --------------------------------------------------------------------


@pytest.fixture(scope="module")
def index(tmp_path_factory, shared_data) -> SearchIndex:
    """Passages of the 181 real articles of the extraction benchmark (paragraphs)."""
    truth = json.loads((shared_data / "extraction-benchmark" / "ground-truth.json").read_text())
    rows = []
    for key in sorted(truth):
        page = truth[key]
        for i, paragraph in enumerate(p for p in page["articleBody"].split("\n") if p.strip()):
            rows.append(("", paragraph, page["url"], f"{key}-{i}"))
    path = tmp_path_factory.mktemp("index") / "index.sqlite"
    assert create_index(path, rows) == len(rows)
    found = SearchIndex(path)
    yield found
    found.close()


def test_search_finds_the_article_a_question_is_about(index):
    hits = index.search("Is an oxygen bar in Delhi offering fresh air?", k=3)
    assert "oxygen-bar" in hits[0].url
    assert hits[0].score >= hits[-1].score > 0  # best first
    assert "wework" in index.search("who is investigating WeWork?", k=1)[0].url


@pytest.mark.parametrize("query", HOSTILE_QUERIES)
def test_hostile_queries_are_answered_or_refused_and_the_index_survives(index, query):
    before = len(index)
    started = time.perf_counter()
    try:
        index.search(query, k=3)
    except ToolError as exc:
        assert "no words" in str(exc)
    assert time.perf_counter() - started < FAST
    assert len(index) == before
    assert index.search("electric vehicles", k=1)


def test_a_megabyte_query_is_bounded(index):
    for query in ("electric " * 120_000, '"' * 1_000_000, "NEAR(" * 200_000, "x" * 1_000_000):
        started = time.perf_counter()
        try:
            hits = index.search(query, k=5)
            assert len(hits) <= 5
        except ToolError:
            pass
        assert time.perf_counter() - started < FAST


def test_result_count_and_size_are_capped(index):
    assert len(index.search("the", k=1000)) == tools.MAX_RESULTS
    assert all(len(p.text) <= 50 for p in index.search("the electric car", k=5, max_chars=50))


def test_the_index_is_opened_read_only(index):
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        index._db.execute("DELETE FROM passages")


def test_a_search_past_its_deadline_is_a_tool_error(index, monkeypatch):
    monkeypatch.setattr(tools, "SEARCH_DEADLINE_S", -1.0)  # already late: the progress handler aborts
    with pytest.raises(ToolError, match="too long"):
        index.search("the of and a to in electric", k=10)
    monkeypatch.undo()
    assert index.search("electric", k=1)


def test_format_passages_bounds_what_the_model_reads(index):
    hits = index.search("electric", k=5)
    text = format_passages(hits, max_chars=300)
    assert len(text) == 300 and text.startswith(hits[0].text[:100])
    assert format_passages([]) == "no results"


def test_a_missing_index_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no search index"):
        SearchIndex.open(str(tmp_path / "nowhere"))
