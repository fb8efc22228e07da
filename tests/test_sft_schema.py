"""tasks/sft/schema.py: the messages parser and the readers of users' JSONL and Parquet."""

from __future__ import annotations

import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models import lake
from models.chat import render_conversation
from tasks.sft.schema import (
    SCHEMA,
    BadConversation,
    dataset_files,
    parse_messages,
    parse_tool_call,
    read_user_dataset,
    to_table,
)
from tests.support import sft_world

GOOD = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "What is 6 * 7?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"type": "function", "function": {"name": "calculator", "arguments": '{"expression": "6 * 7"}'}}
        ],
    },
    {"role": "tool", "content": "42"},
    {"role": "assistant", "content": "Answer: 42"},
]


def test_common_spellings_are_normalised():
    messages = parse_messages(GOOD)
    assert messages[2] == {
        "role": "assistant",
        "content": "",
        "tool_calls": [{"name": "calculator", "arguments": "6 * 7"}],
    }
    assert parse_tool_call({"name": "Search", "arguments": {"query": "Ashby"}}) == {
        "name": "search",
        "arguments": "Ashby",
    }
    assert parse_tool_call({"name": "calc", "arguments": "1 + 1"}) == {"name": "calculator", "arguments": "1 + 1"}
    assert parse_messages(json.dumps(GOOD)) == messages  # messages stored as JSON text


@pytest.mark.parametrize(
    "messages, reason",
    [
        ("not json", "messages are not JSON"),
        ({"role": "user"}, "messages are not a list"),
        ([], "no messages"),
        (["hi"], "message is not an object"),
        ([{"role": "bot", "content": "x"}], "unknown role"),
        ([{"role": "user", "content": "q"}], "ends without an assistant reply"),
        ([{"role": "user", "content": "q"}, {"role": "user", "content": "q"}], "turns do not alternate"),
        ([{"role": "assistant", "content": "a"}], "turns do not alternate"),
        (
            [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": "a"},
                {"role": "system", "content": "s"},
            ],
            "system message not first",
        ),
        ([{"role": "user", "content": ["q"]}, {"role": "assistant", "content": "a"}], "content is not text"),
        ([{"role": "user", "content": "  "}, {"role": "assistant", "content": "a"}], "empty user message"),
        ([{"role": "user", "content": "q"}, {"role": "tool", "content": "r"}], "tool message without a call"),
        (
            [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": "", "tool_calls": [{"name": "search", "arguments": "x"}]},
                {"role": "assistant", "content": "a"},
            ],
            "missing tool result",
        ),
        (
            [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": "", "tool_calls": [{"name": "javascript", "arguments": "x"}]},
            ],
            "unknown tool",
        ),
        (
            [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": "", "tool_calls": [{"name": "search", "arguments": {"a": 1, "b": 2}}]},
            ],
            "bad tool arguments",
        ),
        (
            [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": "", "tool_calls": [{"name": "search", "arguments": "{oops"}]},
            ],
            "bad tool arguments",
        ),
        ([{"role": "user", "content": "q"}, {"role": "assistant", "content": ""}], "empty assistant message"),
        ([{"role": "user", "content": "x" * 100_001}, {"role": "assistant", "content": "a"}], "message too long"),
    ],
)
def test_each_broken_shape_has_its_reason(messages, reason):
    with pytest.raises(BadConversation) as caught:
        parse_messages(messages)
    assert caught.value.reason == reason


ROLE = st.sampled_from(["system", "user", "assistant", "tool", "other", None])
CALL = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["search", "calculator", "calc", "python", "javascript"]),
        "arguments": st.one_of(
            st.text(max_size=8), st.dictionaries(st.sampled_from(["query", "x"]), st.text(max_size=5), max_size=2)
        ),
    }
)
MESSAGE = st.fixed_dictionaries(
    {"role": ROLE, "content": st.one_of(st.none(), st.text(max_size=12), st.integers())},
    optional={"tool_calls": st.lists(CALL, max_size=2)},
)


@pytest.fixture(scope="module")
def tok():
    return sft_world.tokenizer(sft_world.world())


@settings(max_examples=200, deadline=None)
@given(value=st.one_of(st.lists(MESSAGE, max_size=7), st.text(max_size=20), st.integers()))
def test_the_parser_accepts_exactly_what_the_renderer_renders(tok, value):
    """Any input: either BadConversation, or messages that render without error, end with an
    assistant reply and train on at least that reply's end token."""
    try:
        messages = parse_messages(value)
    except BadConversation as bad:
        assert bad.reason and "\n" not in bad.reason
        return
    assert messages[-1]["role"] == "assistant" and not messages[-1]["tool_calls"]
    assert parse_messages(messages) == messages  # normalised is a fixed point
    ids, mask = render_conversation(tok, messages)
    assert len(ids) == len(mask) and mask[-1] == 1


def write_jsonl(path, lines, gz=False):
    data = "\n".join(lines).encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return str(path)


def test_jsonl_reader_keeps_good_rows_and_counts_bad_ones_by_reason(tmp_path):
    lines = [
        json.dumps({"id": "a", "messages": GOOD}),
        "{not json",
        json.dumps([1, 2]),
        json.dumps({"text": "no messages"}),
        "",
        json.dumps({"messages": [{"role": "user", "content": "q"}]}),
        json.dumps({"messages": GOOD[1:]}),
    ]
    uri = write_jsonl(tmp_path / "chats.jsonl.gz", lines, gz=True)
    stats: dict = {}
    rows = list(read_user_dataset(uri, stats))
    assert [r["id"] for r in rows] == ["a", f"{uri}#chats.jsonl.gz line 7"]
    assert rows[0]["source"] == uri and rows[0]["messages"][0]["role"] == "system"
    assert stats["rows"] == 6 and stats["conversations"] == 2
    assert stats["skipped"] == {
        "bad JSON": 1,
        "row is not an object": 1,
        "no messages column": 1,
        "ends without an assistant reply": 1,
    }
    assert len(stats["examples"]) == 4 and stats["examples"][0].startswith("chats.jsonl.gz line 2: bad JSON")
    to_table(rows)  # the rows fit the dataset schema


def test_parquet_reader_takes_struct_or_json_messages(tmp_path):
    structs = pa.Table.from_pylist(
        [{"messages": parse_messages(GOOD)}, {"messages": [{"role": "user", "content": "q", "tool_calls": []}]}]
    )
    pq.write_table(structs, tmp_path / "a.parquet")
    pq.write_table(pa.table({"messages": [json.dumps(GOOD), "[]"], "id": ["x", "y"]}), tmp_path / "b.parquet")
    stats: dict = {}
    files = dataset_files(str(tmp_path / "*.parquet"))
    rows = [r for f in files for r in read_user_dataset(f, stats)]
    assert [r["id"].rsplit("#", 1)[-1] for r in rows] == ["a.parquet row 0", "x"]
    assert stats["skipped"] == {"ends without an assistant reply": 1, "no messages": 1} and stats["conversations"] == 2


def test_dataset_files_of_a_lake_dataset_a_missing_file_and_a_bare_folder(tmp_path):
    uri = str(tmp_path / "convs")
    lake.write_dataset(uri, [to_table([])], kind="conversations")
    assert dataset_files(uri) == lake.shard_uris(uri)
    assert lake.read_shard(dataset_files(uri)[0]).schema.equals(SCHEMA)
    with pytest.raises(FileNotFoundError):
        dataset_files(str(tmp_path / "missing.jsonl"))
    with pytest.raises(FileNotFoundError, match="no files match"):
        dataset_files(str(tmp_path / "*.jsonl"))
    (tmp_path / "folder").mkdir()
    with pytest.raises(ValueError, match="without a _manifest"):
        dataset_files(str(tmp_path / "folder"))
