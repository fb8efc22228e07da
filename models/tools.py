"""The tools the model may call while it generates: a calculator and a search engine.

Everything these functions receive was written by the model, so it is hostile input: it may be
a megabyte long, try to reach Python (`__import__('os')`), ask for a number with billions of
digits (`9**9**9**9`), or carry query-language or SQL syntax. Each tool bounds its input
before it looks at it, does work that is bounded by construction (checked *before* the
expensive step, never by interrupting it), and fails only with `ToolError`. No signals: the
engine runs inside Prefect's worker threads, where SIGALRM cannot be used.

Calculator: `ast.parse` of the expression, then our own evaluator over a whitelist of nodes
(numeric literals, + - * / // % **, unary + -, parentheses). Python's semantics exactly (int
arithmetic is exact, `/` gives a float), within bounds on integer size and node count.

Search: BM25 (SQLite FTS5, in the standard library) over passages of the curated corpus. The
query's words are extracted by us and each is passed as a quoted string in a bound parameter,
so no model text is ever FTS5 syntax or SQL; the index is opened read-only, and a progress
handler aborts any query that runs past its deadline.
"""

from __future__ import annotations

import ast
import hashlib
import math
import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from models import lake, storage


class ToolError(ValueError):
    """A tool refused its input or failed; the message is safe to show the model."""


# -- the calculator ----------------------------------------------------------------------

MAX_EXPRESSION_CHARS = 256
MAX_NODES = 128  # AST nodes, which also bounds the nesting depth of the evaluator's recursion
MAX_INT_BITS = 512  # about 154 decimal digits; larger integers (operands or results) are refused
CALC_DEADLINE_S = 0.5  # never reached with the bounds above; a second line of defence

_BINARY = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.FloorDiv: lambda a, b: a // b,
    ast.Mod: lambda a, b: a % b,
    ast.Pow: lambda a, b: a**b,
}
_UNARY = {ast.UAdd: lambda a: +a, ast.USub: lambda a: -a}

Number = int | float


def _check(value: Number) -> Number:
    if isinstance(value, int):
        if value.bit_length() > MAX_INT_BITS:
            raise ToolError(f"number too large (over {MAX_INT_BITS} bits)")
    elif not math.isfinite(value):
        raise ToolError("result is not a finite number")
    return value


def _power(base: Number, exponent: Number) -> Number:
    """`base ** exponent`, refused before computing when the result would be too large.

    An integer power |b|^e has at least (bits(b) - 1) * e bits, so that product bounds the
    work exactly; float powers cost nothing but may overflow, which Python reports.
    """
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0 and abs(base) > 1:
        if (abs(base).bit_length() - 1) * exponent > MAX_INT_BITS:
            raise ToolError(f"power too large (over {MAX_INT_BITS} bits)")
    if isinstance(base, float) or isinstance(exponent, float):
        if base < 0 and not float(exponent).is_integer():
            raise ToolError("fractional power of a negative number")  # Python would give a complex
    return base**exponent


def evaluate(expression: str) -> Number:
    """The value of an arithmetic expression, as Python computes it, or ToolError."""
    if not isinstance(expression, str):
        raise ToolError("expression must be text")
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise ToolError(f"expression longer than {MAX_EXPRESSION_CHARS} characters")
    text = expression.strip().replace("×", "*").replace("÷", "/").replace("^", "**")
    if not text:
        raise ToolError("empty expression")
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise ToolError("not an arithmetic expression") from exc
    if sum(1 for _ in ast.walk(tree)) > MAX_NODES:
        raise ToolError(f"expression has more than {MAX_NODES} parts")
    deadline = time.monotonic() + CALC_DEADLINE_S

    def value(node: ast.AST) -> Number:
        if time.monotonic() > deadline:
            raise ToolError("expression took too long")
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):  # not bool, complex
            return _check(node.value)
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            return _check(_UNARY[type(node.op)](value(node.operand)))
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            left, right = value(node.left), value(node.right)
            try:
                if isinstance(node.op, ast.Pow):
                    return _check(_power(left, right))
                return _check(_BINARY[type(node.op)](left, right))
            except ZeroDivisionError:
                raise ToolError("division by zero") from None
            except OverflowError:
                raise ToolError("number too large") from None
        raise ToolError(f"not allowed in an expression: {type(node).__name__}")

    return value(tree.body)


def format_number(value: Number) -> str:
    """How a result is shown to the model: integers in full, floats to 12 significant digits
    (so 0.1 + 0.2 reads 0.3), integral floats without the ".0"."""
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 2**53:
            return str(int(value))
        return f"{value:.12g}"
    return str(value)


def calculate(expression: str) -> str:
    return format_number(evaluate(expression))


# -- search ------------------------------------------------------------------------------

MAX_QUERY_CHARS = 512  # a longer query is cut here, before anything else looks at it
MAX_QUERY_TERMS = 16
MAX_TERM_CHARS = 40
MAX_RESULTS = 10
SEARCH_DEADLINE_S = 1.0
INDEX_FILE = "index.sqlite"
_WORD = re.compile(r"[^\W_]+")  # letters and digits: what FTS5's unicode61 tokenizer keeps

SCHEMA = """
CREATE VIRTUAL TABLE passages USING fts5(
    title, text, url UNINDEXED, doc_id UNINDEXED,
    tokenize = 'porter unicode61 remove_diacritics 2'
);
"""


def query_terms(query: str) -> list[str]:
    """The words of a model-written query: letters and digits only, lower-cased, unique, in
    order; at most MAX_QUERY_TERMS of at most MAX_TERM_CHARS. Nothing else survives, so no
    quote, operator, column filter or keyword of FTS5's query language can."""
    if not isinstance(query, str):
        return []
    terms: list[str] = []
    for match in _WORD.finditer(query[:MAX_QUERY_CHARS]):
        term = match.group().lower()
        if len(term) <= MAX_TERM_CHARS and term not in terms:
            terms.append(term)
            if len(terms) == MAX_QUERY_TERMS:
                break
    return terms


def match_expression(terms: Iterable[str]) -> str:
    """An FTS5 MATCH string: each term a quoted string, any of them may match (OR; bare
    terms side by side would mean AND). Quotes are doubled, though `query_terms` leaves none."""
    return " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)


@dataclass(frozen=True)
class Passage:
    title: str
    url: str
    text: str
    score: float  # BM25, higher is better


class SearchIndex:
    """A read-only BM25 index of passages in one SQLite file (see tasks/search.py)."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"no search index at {self.path}")
        # mode=ro: nothing done through this connection can change the file.
        self._db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False)
        self._lock = threading.Lock()

    @classmethod
    def open(cls, uri: str, cache_dir: str | os.PathLike[str] | None = None) -> SearchIndex:
        """The index in a lake folder (`search/{crawl}`) or at a file URI. On S3 the file is
        downloaded once into a local cache, keyed by the folder's manifest (so a rebuilt index
        is fetched again)."""
        uri = storage.normalize(uri)
        file_uri = uri if uri.endswith(".sqlite") else lake.committed_file(uri, "index_file", INDEX_FILE)
        if not storage.is_remote(file_uri):
            return cls(file_uri)
        folder = file_uri.rsplit("/", 1)[0]
        try:
            tag = hashlib.sha256(storage.read_bytes(storage.join(folder, storage.MANIFEST))).hexdigest()[:16]
        except FileNotFoundError:
            raise FileNotFoundError(f"no search index at {uri} (no {storage.MANIFEST})") from None
        cache = Path(cache_dir or os.environ.get("CRAWL2CHAT_CACHE", "~/.cache/crawl2chat")).expanduser()
        local = cache / "search" / f"{hashlib.sha256(file_uri.encode()).hexdigest()[:16]}-{tag}" / INDEX_FILE
        if not local.exists():
            local.parent.mkdir(parents=True, exist_ok=True)
            tmp = local.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
            tmp.write_bytes(storage.read_bytes(file_uri))
            os.replace(tmp, local)
        return cls(local)

    def close(self) -> None:
        self._db.close()

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT count(*) FROM passages").fetchone()[0]

    def search(self, query: str, k: int = 3, max_chars: int = 400) -> list[Passage]:
        """The `k` best passages for `query` (each cut to `max_chars`), best first.

        Raises ToolError when the query has no words or the search passes its deadline.
        """
        terms = query_terms(query)
        if not terms:
            raise ToolError("the query has no words to search for")
        k = max(1, min(int(k), MAX_RESULTS))
        deadline = time.monotonic() + SEARCH_DEADLINE_S
        with self._lock:
            # Called every 1000 SQLite VM instructions; a true return aborts the statement.
            self._db.set_progress_handler(lambda: time.monotonic() > deadline, 1000)
            try:
                rows = self._db.execute(
                    "SELECT title, url, substr(text, 1, ?), bm25(passages) AS rank "
                    "FROM passages WHERE passages MATCH ? ORDER BY rank LIMIT ?",
                    (max_chars, match_expression(terms), k),
                ).fetchall()
            except sqlite3.OperationalError as exc:
                if "interrupted" in str(exc):
                    raise ToolError("search took too long") from None
                raise
            finally:
                self._db.set_progress_handler(None, 0)
        return [Passage(title, url, text, -rank) for title, url, text, rank in rows]


def create_index(path: str | os.PathLike[str], passages: Iterable[tuple[str, str, str, str]]) -> int:
    """Write a new index file from (title, text, url, doc_id) rows; returns the row count.

    The file is built then compacted (FTS5 'optimize' merges its segments into one b-tree,
    which makes queries faster and the file smaller)."""
    path = Path(path)
    if path.exists():
        path.unlink()
    db = sqlite3.connect(path)
    try:
        db.executescript(SCHEMA)
        count = 0
        with db:
            for row in passages:
                db.execute("INSERT INTO passages (title, text, url, doc_id) VALUES (?, ?, ?, ?)", row)
                count += 1
            db.execute("INSERT INTO passages (passages) VALUES ('optimize')")
        db.execute("VACUUM")
    finally:
        db.close()
    return count


def format_passages(passages: list[Passage], max_chars: int = 600) -> str:
    """Search results as the model reads them: one passage a paragraph, after its title;
    at most `max_chars` in all (the model's context is short)."""
    if not passages:
        return "no results"
    return "\n\n".join(f"{p.title}: {p.text}" if p.title else p.text for p in passages)[:max_chars]
