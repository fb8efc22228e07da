"""Conversations as Parquet rows, and the readers that turn users' datasets into them.

A conversation dataset (`conversations/{name}/{train,val,test}`) has one row per
conversation: `id`, `source` (the generator, or the URI a user's row came from), `messages`
and `meta` (a JSON object: what kind of item it is, its expected answer, the entity it is
about; the evaluation reads it). Messages follow the common `messages` format:

    {"role": "system" | "user" | "assistant" | "tool", "content": "...",
     "tool_calls": [{"name": "search" | "calculator" | "python", "arguments": "..."}]}

Users bring their own datasets by URI: JSONL files (one {"messages": [...]} object a line)
or Parquet files (a `messages` column of structs or of JSON text), local or s3://, a glob,
or a committed lake dataset. `parse_messages` accepts the spellings seen in the wild (tool
arguments as a JSON object or JSON text, OpenAI's {"type": "function", "function": {...}}
wrapper, `calc` for the calculator, content `null` beside tool calls) and turns anything
else into a `BadConversation` whose reason is a short, countable phrase: a reader skips the
row and counts it, and nothing is lost silently.
"""

from __future__ import annotations

import gzip
import io
import json
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from models import lake
from models.chat import TOOL_TOKENS

TOOL_CALL_TYPE = pa.struct([("name", pa.string()), ("arguments", pa.string())])
MESSAGE_TYPE = pa.struct([("role", pa.string()), ("content", pa.string()), ("tool_calls", pa.list_(TOOL_CALL_TYPE))])
SCHEMA = pa.schema(
    [("id", pa.string()), ("source", pa.string()), ("messages", pa.list_(MESSAGE_TYPE)), ("meta", pa.string())]
)

ROLES = ("system", "user", "assistant", "tool")
TOOL_ALIASES = {
    "search": "search",
    "web_search": "search",
    "calculator": "calculator",
    "calc": "calculator",
    "python": "python",
    "code_interpreter": "python",
    "code": "python",
}
ARGUMENT_KEYS = ("query", "q", "expression", "expr", "code", "input")  # where a JSON object keeps the argument
MAX_MESSAGES = 64
MAX_CHARS = 100_000  # per message: longer text is a broken row, not a conversation
EXAMPLES_KEPT = 5  # skipped rows quoted in the stats, per dataset


class BadConversation(ValueError):
    """A row that is not a usable conversation. `reason` is short and countable."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def _text(value: Any, where: str, allow_none: bool = False) -> str:
    if value is None and allow_none:
        return ""
    if not isinstance(value, str):
        raise BadConversation("content is not text", f"{where} has {type(value).__name__}")
    if len(value) > MAX_CHARS:
        raise BadConversation("message too long", f"{where} has {len(value):,} characters")
    return value


def parse_tool_call(call: Any, where: str = "tool call") -> dict[str, str]:
    """{"name": "search" | "calculator" | "python", "arguments": the query, expression or program as text}."""
    if not isinstance(call, Mapping):
        raise BadConversation("tool call is not an object", where)
    if isinstance(call.get("function"), Mapping):  # OpenAI's {"type": "function", "function": {...}}
        call = call["function"]
    name = TOOL_ALIASES.get(str(call.get("name", "")).strip().lower())
    if name is None:
        raise BadConversation("unknown tool", f"{where} calls {call.get('name')!r}; tools are {sorted(TOOL_TOKENS)}")
    arguments = call.get("arguments", call.get("args"))
    if isinstance(arguments, str):
        stripped = arguments.strip()
        if stripped.startswith("{"):
            try:
                arguments = json.loads(stripped)
            except json.JSONDecodeError:
                if name != "python":  # a program may start with "{" (a dict or set literal)
                    raise BadConversation(
                        "bad tool arguments", f"{where}: arguments look like JSON but do not parse"
                    ) from None
            if name == "python" and not isinstance(arguments, Mapping):
                arguments = call.get("arguments", call.get("args"))
    if isinstance(arguments, Mapping):
        found = [arguments[k] for k in ARGUMENT_KEYS if k in arguments]
        if len(arguments) != 1 or len(found) != 1:
            raise BadConversation(
                "bad tool arguments", f"{where}: expected one of {ARGUMENT_KEYS}, got {sorted(arguments)}"
            )
        arguments = found[0]
    if not isinstance(arguments, str) or not arguments.strip():
        raise BadConversation("bad tool arguments", f"{where}: the {name} call has no query or expression")
    return {"name": name, "arguments": _text(arguments, where)}


def parse_messages(value: Any) -> list[dict[str, Any]]:
    """Validated, normalised messages (each with role, content, tool_calls), or BadConversation.

    The rules are the renderer's (models/chat.py): an optional system message first, then
    user and assistant turns taking turns; an assistant message with tool calls is followed
    by one tool message per call and then the assistant's continuation; the conversation
    ends with an assistant reply (there must be something to train on).
    """
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise BadConversation("messages are not JSON") from None
    if not isinstance(value, (list, tuple)):
        raise BadConversation("messages are not a list", type(value).__name__)
    if not value:
        raise BadConversation("no messages")
    if len(value) > MAX_MESSAGES:
        raise BadConversation("too many messages", f"{len(value)} > {MAX_MESSAGES}")
    out: list[dict[str, Any]] = []
    pending_results = 0  # tool messages still owed to the last assistant message's calls
    for i, raw in enumerate(value):
        where = f"message {i}"
        if not isinstance(raw, Mapping):
            raise BadConversation("message is not an object", where)
        role = raw.get("role")
        if role not in ROLES:
            raise BadConversation("unknown role", f"{where} has role {role!r}")
        previous = out[-1]["role"] if out else None
        if pending_results and role != "tool":
            raise BadConversation("missing tool result", f"{where} comes before the results of the calls")
        if role == "system":
            if out:
                raise BadConversation("system message not first", where)
            content = _text(raw.get("content"), where)
        elif role == "user":
            if previous not in (None, "system", "assistant"):
                raise BadConversation("turns do not alternate", f"{where}: a user message after {previous}")
            content = _text(raw.get("content"), where)
            if not content.strip():
                raise BadConversation("empty user message", where)
        elif role == "assistant":
            if previous not in ("user", "tool"):
                raise BadConversation("turns do not alternate", f"{where}: an assistant message after {previous}")
            content = _text(raw.get("content"), where, allow_none=True)
        else:  # tool
            if not pending_results:
                raise BadConversation("tool message without a call", where)
            pending_results -= 1
            content = _text(raw.get("content"), where)
        calls = raw.get("tool_calls") or []
        if calls and role != "assistant":
            raise BadConversation("tool calls outside an assistant message", where)
        if not isinstance(calls, (list, tuple)):
            raise BadConversation("tool calls are not a list", where)
        calls = [parse_tool_call(c, f"{where} call {j}") for j, c in enumerate(calls)]
        if role == "assistant" and not calls and not content.strip():
            raise BadConversation("empty assistant message", where)
        pending_results += len(calls)
        out.append({"role": role, "content": content, "tool_calls": calls})
    if pending_results:
        raise BadConversation("missing tool result", "the conversation ends before the results of the calls")
    if out[-1]["role"] != "assistant":
        raise BadConversation("ends without an assistant reply", f"the last message is {out[-1]['role']}")
    return out


def row(id: str, source: str, messages: list[dict[str, Any]], meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """A dataset row; `messages` must already be valid (generators build them valid)."""
    normalised = [
        {"role": m["role"], "content": m.get("content") or "", "tool_calls": list(m.get("tool_calls") or [])}
        for m in messages
    ]
    return {"id": id, "source": source, "messages": normalised, "meta": json.dumps(meta or {}, sort_keys=True)}


def to_table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=SCHEMA)


def meta_of(value: str | None) -> dict[str, Any]:
    return json.loads(value) if value else {}


# -- users' datasets ---------------------------------------------------------------------


def dataset_files(uri: str) -> list[str]:
    """The files behind a user's dataset URI: a lake dataset's shards, a glob's matches
    (sorted), or the file itself."""
    if lake.exists(uri):
        return lake.shard_uris(uri)
    fs, path = lake.filesystem(uri)
    if any(ch in path for ch in "*?["):
        found = sorted(lake.to_uri(fs, p) for p in fs.glob(path))
        if not found:
            raise FileNotFoundError(f"no files match {uri}")
        return found
    if not fs.exists(path):
        raise FileNotFoundError(f"no dataset at {uri}")
    if fs.isdir(path):
        raise ValueError(f"{uri} is a folder without a {lake.MANIFEST}: give a file, a glob or a committed dataset")
    return [lake.normalize(uri)]


def _records(uri: str) -> Iterator[tuple[str, Any]]:
    """(where, record) for every row of one file; a record is a dict, or a BadConversation
    for a line that is not a JSON object (so the caller counts it like any bad row)."""
    fs, path = lake.filesystem(uri)
    name = path.rsplit("/", 1)[-1]
    if name.endswith(".parquet"):
        with fs.open(path, "rb") as f:
            parquet = pq.ParquetFile(f)
            n = 0
            for batch in parquet.iter_batches(batch_size=1024):
                for record in batch.to_pylist():
                    yield f"{name} row {n}", record
                    n += 1
        return
    if not name.endswith((".jsonl", ".jsonl.gz", ".json", ".json.gz")):
        raise ValueError(f"{uri}: a user dataset is .jsonl, .jsonl.gz or .parquet")
    with fs.open(path, "rb") as raw:
        stream = gzip.open(raw) if name.endswith(".gz") else raw
        for n, line in enumerate(io.TextIOWrapper(stream, encoding="utf-8", errors="strict"), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                yield f"{name} line {n}", BadConversation("bad JSON", str(exc))
                continue
            yield f"{name} line {n}", record if isinstance(record, dict) else BadConversation("row is not an object")


def read_user_dataset(uri: str, stats: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Valid conversation rows from a user's file; every other row is counted in
    `stats["skipped"]` by reason (with a few quoted in `stats["examples"]`)."""
    skipped: Counter[str] = Counter(stats.get("skipped", {}))
    examples: list[str] = stats.setdefault("examples", [])
    for where, record in _records(uri):
        stats["rows"] = stats.get("rows", 0) + 1
        try:
            if isinstance(record, BadConversation):
                raise record
            if "messages" not in record:
                raise BadConversation("no messages column", f"keys {sorted(record)[:8]}")
            messages = parse_messages(record["messages"])
        except BadConversation as bad:
            skipped[bad.reason] += 1
            if len(examples) < EXAMPLES_KEPT:
                examples.append(f"{where}: {bad}")
            continue
        stats["conversations"] = stats.get("conversations", 0) + 1
        rid = record.get("id")
        yield row(str(rid) if rid is not None else f"{uri}#{where}", uri, messages, {"kind": "user", "where": where})
    stats["skipped"] = dict(skipped)
