"""The docs say what is true: every relative link and #anchor in README.md and docs/*.md
resolves, every `crawl2chat` flag and `--set` key they name exists, and the worked examples of
docs/extending.md run against the code as it is."""

from __future__ import annotations

import json
import re
import shlex
import sys
import unicodedata
from pathlib import Path

import pyarrow as pa
import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^(```|~~~)([^\n]*)\n(.*?)^\1[ \t]*$", re.M | re.S)
CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.S)
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$", re.M)


def prose(text: str) -> str:
    """The text without fenced blocks and code spans: links inside code are not links."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup dropped, lower case, punctuation removed (letters,
    digits, marks, '-' and '_' stay), spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text stays
    text = text.replace("`", "").replace("*", "").lower()
    kept = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LNM")
    return kept.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading's anchor, with GitHub's -1, -2 ... for repeated headings."""
    seen: dict[str, int] = {}
    out = set()
    for _, title in HEADING.findall(FENCE.sub("", page.read_text())):
        base = slug(title)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def links(page: Path) -> list[str]:
    return [target for target in LINK.findall(prose(page.read_text())) if not re.match(r"[a-z][a-z0-9+.-]*:", target)]


def test_the_link_checker_catches_what_it_must(tmp_path):
    """The checker itself, on a page with a good and a bad link of every kind."""
    page = tmp_path / "page.md"
    page.write_text(
        "# A title: with `code`, punctuation & more\n## Repeated\n## Repeated\n\n"
        "[ok](#a-title-with-code-punctuation--more) [ok](#repeated-1) ![img](pic.png) [ext](https://x.org/#no)\n"
        "`[in code](nowhere.md)`\n```\n[in a block](nowhere.md)\n```\n[bad](#missing) [bad](gone.md)\n"
    )
    assert links(page) == ["#a-title-with-code-punctuation--more", "#repeated-1", "pic.png", "#missing", "gone.md"]
    assert {"a-title-with-code-punctuation--more", "repeated", "repeated-1"} <= anchors(page)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_anchor_resolves(page):
    broken = []
    for target in links(page):
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading with that anchor in {dest.relative_to(ROOT)}")
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)


def test_the_readme_stays_short():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 260


# -- what the docs name exists -------------------------------------------------------------


def commands_shown() -> list[tuple[Path, str]]:
    """Every `crawl2chat ...` line of a shell block, and every inline `crawl2chat ...` span."""
    found = []
    for page in PAGES:
        text = page.read_text()
        for fence in FENCE.finditer(text):
            if fence.group(2).strip() in ("bash", "sh", "shell", ""):
                lines = re.sub(r"\\\n\s*", " ", fence.group(3)).splitlines()  # a `\` continues the command
                found += [(page, line) for line in lines if re.search(r"(^|[\s/])crawl2chat\s", line)]
        found += [(page, span) for _, span in CODE_SPAN.findall(FENCE.sub("", text)) if span.startswith("crawl2chat ")]
    return found


def cli_options() -> dict[str, set[str]]:
    import typer.main

    from flows.cli import app

    root = typer.main.get_command(app)
    out: dict[str, set[str]] = {}
    for name, command in root.commands.items():
        subcommands = getattr(command, "commands", {})
        for sub, inner in [("", command), *subcommands.items()]:
            key = f"{name} {sub}".strip()
            out[key] = {o for p in inner.params for o in (*p.opts, *p.secondary_opts)} | {"--help"}
    return out


def test_every_command_and_flag_the_docs_show_exists():
    options = cli_options()
    shown = commands_shown()
    assert len(shown) > 20, "the commands are found"
    wrong = []
    for page, line in shown:
        words = line.split("#", 1)[0].split()
        words = words[[w.rsplit("/", 1)[-1] for w in words].index("crawl2chat") + 1 :]
        if not words:
            continue
        command = " ".join(words[:2]) if " ".join(words[:2]) in options else words[0]
        if command not in options:
            wrong.append(f"{page.name}: unknown command in {line!r}")
            continue
        for flag in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", line.split("#", 1)[0]):
            if flag not in options[command]:
                wrong.append(f"{page.name}: {command} has no {flag} ({line.strip()!r})")
    assert not wrong, "\n".join(wrong)


def test_every_set_override_the_docs_show_is_a_valid_config():
    import yaml

    from tasks.config import load_config

    checked = 0
    for _, line in commands_shown():
        words = shlex.split(line.split(" #", 1)[0])
        for flag, value in zip(words, words[1:]):
            if flag != "--set" or value == "key=value":
                continue
            while value.count("]") > value.count("["):  # `[--set k=v]`: an optional flag in a usage line
                value = value[:-1]
            key, _, raw = value.partition("=")
            load_config("tiny", {key: yaml.safe_load(raw)})  # raises on an unknown key or a bad value
            checked += 1
    assert checked >= 3


# -- the worked examples of docs/extending.md ------------------------------------------------


def example(heading: str, language: str, index: int = 0) -> str:
    """The `index`-th `language` block under `heading` in docs/extending.md."""
    text = (ROOT / "docs" / "extending.md").read_text()
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    blocks = [
        m.group(3) for m in FENCE.finditer(text[start : end if end > 0 else None]) if m.group(2).strip() == language
    ]
    return blocks[index]


def load_module(name: str, source: str, where: Path, monkeypatch) -> object:
    (where / f"{name}.py").write_text(source)
    monkeypatch.syspath_prepend(str(where))
    sys.modules.pop(name, None)
    return __import__(name)


def test_the_custom_filter_example_runs_in_the_chain(tmp_path, monkeypatch):
    from flows.cli import config_from
    from tasks.curate.filters import CustomFilterStep, Doc
    from tasks.curate.text import Text

    load_module("myfilters", example("A custom filter", "python"), tmp_path, monkeypatch)
    words = shlex.split(example("A custom filter", "bash").strip().removeprefix("PYTHONPATH=. "))
    config = config_from("tiny", None, [words[words.index("--set") + 1]])
    steps = [CustomFilterStep(spec) for spec in config.curate.custom]
    long, short = " ".join(["word"] * 200), " ".join(["word"] * 199)
    verdicts = [
        [step(Doc("d", url, Text(text))) for step in steps]
        for url, text in [("https://a.org/x", long), ("https://a.org/x", short), ("https://casino.example/x", long)]
    ]
    assert verdicts == [[None, None], ["MinWords:under_200_words", None], [None, "no_casinos"]]


def test_the_sft_dataset_example_parses(tmp_path):
    from tasks.sft.schema import read_user_dataset

    path = tmp_path / "units.jsonl"
    path.write_text(example("A new SFT source", "json"))
    stats: dict = {}
    rows = list(read_user_dataset(str(path), stats))
    assert len(rows) == 1, stats
    assert [m["role"] for m in rows[0]["messages"]] == ["user", "assistant", "tool", "assistant"]
    assert rows[0]["messages"][1]["tool_calls"] == [{"name": "calculator", "arguments": "42 * 1000"}]


def test_the_sft_source_example_generates_valid_rows(monkeypatch):
    from tasks.sft import generate as gen
    from tasks.sft.schema import parse_messages

    namespace = vars(gen).copy()
    exec(example("A new SFT source", "python"), namespace)  # as if written in tasks/sft/generate.py
    monkeypatch.setitem(gen.SOURCES, "conversions", namespace["conversions"])
    context = gen.Context(seed=0, test_fraction=0.2, entities={}, counts={"conversions": 50})
    rows = gen.generate("conversions", context, val_fraction=0.1)
    assert len(rows["train"]) + len(rows["val"]) == 50 and rows["val"] and not rows["test"]
    again = gen.generate("conversions", context, val_fraction=0.1)
    assert again == rows, "seeded: the same rows again"
    for row in rows["train"]:
        parse_messages(row["messages"])  # raises on anything the renderer would refuse
        km = int(row["messages"][0]["content"].split()[4])
        assert row["messages"][-1]["content"] == f"{km} kilometres are {km * 1000} metres."


def test_the_stage_flow_example_runs_and_is_cached(prefect_server, tmp_path, monkeypatch):
    from models import lake
    from tasks.config import LakeConfig

    # The example's modules, loaded from a temporary folder instead of tasks/ and flows/.
    def source(index: int) -> str:
        return example("A new stage flow", "python", index).replace("tasks.doc_stats", "c2c_doc_stats_task")

    task_module = load_module("c2c_doc_stats_task", source(0), tmp_path, monkeypatch)
    flow_module = load_module("c2c_doc_stats_flow", source(1), tmp_path, monkeypatch)

    root = str(tmp_path / "lake")
    clean = lake.join(root, "curated", "web", "clean")
    texts = [["one two three", "four five"], ["six", "seven eight nine ten"]]
    lake.write_dataset(
        clean,
        [pa.table({"id": [f"{i}-{j}" for j in range(len(t))], "text": t}) for i, t in enumerate(texts)],
        kind="test",
    )

    result = flow_module.doc_stats(lake=LakeConfig(root=root), crawl="web")
    assert result == {"uri": lake.join(root, "stats", "web", "lengths"), "documents": 4, "words": 10}
    table = lake.scan(result["uri"]).collect().sort("id")
    assert table["words"].to_list() == [3, 2, 1, 4]
    assert lake.manifest(result["uri"]).parents == [clean]
    calls: list[str] = []
    monkeypatch.setattr(task_module.lake, "read_shard", lambda *a, **k: calls.append(a[0]))  # a cache hit reads nothing
    assert flow_module.doc_stats(lake=LakeConfig(root=root), crawl="web") == result
    assert calls == []


def test_json_blocks_are_json():
    for page in PAGES:
        for fence in FENCE.finditer(page.read_text()):
            if fence.group(2).strip() == "json":
                block = fence.group(3)
                try:
                    json.loads(block)  # one document
                except json.JSONDecodeError:
                    for line in filter(str.strip, block.splitlines()):  # or JSON Lines
                        json.loads(line)
