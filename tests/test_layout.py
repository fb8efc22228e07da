"""The lake's layout: one module builds every path, resolves what a user names, and finds a
model's search index from its lineage."""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa
import pytest

from models import checkpoint, lake
from tasks import crawls
from tasks.layout import Layout, artifact_key, safe_name

REPO = Path(__file__).resolve().parent.parent
KINDS = (
    "crawls",
    "curated",
    "dedup",
    "search",
    "tokenizers",
    "tokens",
    "checkpoints",
    "conversations",
    "rollouts",
    "evals",
    "reports",
)


def test_no_lake_path_is_built_outside_the_layout():
    """Flows and tasks ask the layout: no lake folder named in a join, no path cut with rsplit."""
    named = re.compile(r"(?:lakes?|storage)\.join\([^)]*[\"'](" + "|".join(KINDS) + r")[\"']")
    sample_default = re.compile(r"(=|\bor)\s*[\"']sample[\"']")
    offenders = []
    for folder in ("flows", "tasks"):
        for path in sorted((REPO / folder).rglob("*.py")):
            if path.name == "layout.py":
                continue
            text = path.read_text()
            for n, line in enumerate(text.splitlines(), 1):
                if (
                    named.search(line)
                    or (folder == "flows" and 'rsplit("/"' in line)
                    or (sample_default.search(line) and path.name != "config.py")
                ):
                    offenders.append(f"{path.relative_to(REPO)}:{n}: {line.strip()}")
    assert offenders == []


def test_paths_by_crawl_and_by_run(tmp_path):
    layout = Layout(str(tmp_path / "lake"))
    root = layout.root
    assert (
        layout.curated("c").clean == f"{root}/curated/c/clean"
        and layout.curated("c").report == f"{root}/curated/c/report.md"
    )
    assert (
        layout.tokenizer("r", "bpe") == f"{root}/tokenizers/r/bpe"
        and layout.tokenizer(None, "bpe") == f"{root}/tokenizers/bpe"
    )
    assert layout.tokens(layout.tokenizer("r", "bpe"), "c") == f"{root}/tokens/r/bpe/c"
    assert layout.checkpoints("r", "sft") == f"{root}/checkpoints/r/sft"
    assert layout.evals(f"{root}/checkpoints/r/sft/step-000004") == f"{root}/evals/r/sft/step-000004"
    assert layout.crawl_of(layout.curated("my.crawl").clean) == "my.crawl"
    with pytest.raises(ValueError, match="not a curated clean dataset"):
        layout.crawl_of(f"{root}/elsewhere/x/clean")
    with pytest.raises(ValueError, match="not under"):
        layout.tokens("/somewhere/else/tok", "c")  # a tokenizer outside the lake has no name here
    with pytest.raises(ValueError, match="index"):
        layout.dedup_index("index")


def test_artifact_keys_are_per_run_and_valid():
    assert artifact_key("evaluate-before-after", "My_Crawl.2026") == "evaluate-before-after-my-crawl-2026"
    assert artifact_key("evaluate-before-after", None) == "evaluate-before-after"
    assert artifact_key("k", "a") != artifact_key("k", "b")
    assert safe_name("my crawl/2") == "my-crawl-2"


def test_every_command_names_a_run_as_the_pipeline_does_and_never_outside_the_lake():
    """A run or crawl named on any command is the name the pipeline gives it; one that would
    leave its folder is refused with a usage error, not a traceback."""
    import typer
    from typer.testing import CliRunner

    from flows.cli import app, config_from

    assert config_from("tiny", None, None, run="my run").run == "my-run"
    assert config_from("tiny", None, None, run="a/b").run == "a-b"
    assert config_from("tiny", None, ["crawls=[x y, z]"]).crawls == ["x-y", "z"]
    assert config_from("tiny", None, ["crawls=['*']"]).crawls == ["*"]
    for fields in ({"run": ".."}, {"crawls": ["a", "*"]}, {"rl.iterations": -1}):
        with pytest.raises(typer.BadParameter, match=next(iter(fields)).split(".")[-1]):
            config_from("tiny", None, None, **fields)
    result = CliRunner().invoke(app, ["rl", "--run", "..", "--lake", "/nonexistent/lake"])
    assert result.exit_code == 2 and "no usable name" in result.output and "Traceback" not in result.output


def _save(folder: str, step: int, parents: list[str], tok: str) -> str:
    from models.gpt import GPT, GPTConfig

    model = GPT(GPTConfig(vocab_size=64, seq_len=8, n_layer=1, n_head=1, n_kv_head=1, n_embd=8))
    return checkpoint.save(
        folder, step, model=model.state_dict(), config={"tokenizer": tok}, lineage={"parents": parents}
    )


def _dataset(uri: str, kind: str, parents: list[str]) -> str:
    lake.write_dataset(uri, [pa.table({"x": [1]})], kind=kind, parents=parents)
    return uri


def test_a_model_is_found_by_name_and_its_search_index_by_lineage(tmp_path):
    layout = Layout(str(tmp_path / "lake"))
    clean = _dataset(layout.curated("docs").clean, "curated", ["/warcs/a.warc.gz"])
    tok = _dataset(layout.tokenizer("r", "bpe"), "tokenizer", [clean])
    tokens = _dataset(lake.join(layout.tokens(tok, "docs"), "train"), "tokens", [clean, tok])
    base = _save(layout.checkpoints("r", "base"), 2, [tokens, tok], tok)
    index = _dataset(layout.search("docs"), "search-index", [clean])
    conversations = _dataset(lake.join(layout.conversations("r", "sft"), "train"), "conversations", [index])
    rows = _dataset(
        layout.packed_rows(layout.conversations("r", "sft"), tok, 8, "train"), "sft-rows", [conversations, tok]
    )
    sft = _save(layout.checkpoints("r", "sft"), 4, [rows, tok, base], tok)

    assert layout.model("r") == sft  # a run alone: its most trained model
    assert (
        layout.model("r/base") == base
        and layout.model(layout.checkpoints("r", "sft")) == sft
        and layout.model(sft) == sft
    )
    with pytest.raises(FileNotFoundError, match="no model 'other'"):
        layout.model("other")
    assert layout.search_for(sft) == index  # the index SFT trained with
    assert layout.conversations_for(sft) == lake.join(layout.conversations("r", "sft"), "test")
    assert layout.search_for(base) == index  # a base model: the index of the one crawl it read
    assert layout.conversations_for(base) is None  # no held-out set written yet
    test_split = _dataset(lake.join(layout.conversations("r", "sft"), "test"), "conversations", [index])
    assert layout.conversations_for(base) == test_split  # a base model: its run's SFT held-out set
    lake.write_dataset(layout.curated("news").clean, [pa.table({"x": [2]})], kind="curated")
    two = _dataset(lake.join(layout.tokens(tok, "both"), "train"), "tokens", [clean, layout.curated("news").clean])
    base_of_two = _save(layout.checkpoints("r2", "base"), 1, [two], tok)
    assert layout.search_for(base_of_two) is None  # two crawls, no index of the run
    run_index = _dataset(layout.search("r2"), "search-index", [clean, layout.curated("news").clean])
    assert layout.search_for(base_of_two) == run_index  # ... until the run indexes both, by its name
    assert layout.search_for("/elsewhere/checkpoints/x/step-000001") is None  # outside the lake: no run
    assert layout.crawls() == ["docs", "news"] and layout.crawls_of(sft) == ["docs"]
    # an evaluation on the model's own run's held-out set and index keeps the plain path; on
    # another run's, or with another index, its own, so neither replaces the other
    own, held = layout.evals(sft), layout.conversations_for(sft)

    def evals(model, conversations, search):
        return layout.evals(model, layout.held_out_elsewhere(model, conversations, search))

    assert own == evals(sft, held, index) == f"{layout.root}/evals/r/sft/step-000004"
    assert evals(base, held, index) == f"{layout.root}/evals/r/base/step-000002"  # the pipeline's "before"
    second = lake.join(layout.conversations("r", "sft-faq"), "test")  # a second SFT of the same run
    assert evals(base, second, index) == f"{layout.root}/evals/r/base/on-r-sft-faq/step-000002"
    assert evals(sft, second, index) == f"{layout.root}/evals/r/sft/on-r-sft-faq/step-000004"
    news = _dataset(layout.search("news"), "search-index", [layout.curated("news").clean])
    other = _dataset(lake.join(layout.conversations("r2", "sft"), "test"), "conversations", [news])
    assert evals(sft, other, news) == f"{layout.root}/evals/r/sft/on-r2-sft/step-000004"  # `--on r2`: its index
    assert evals(sft, other, index) == f"{layout.root}/evals/r/sft/on-r2-sft/step-000004"
    assert evals(sft, held, news) == f"{layout.root}/evals/r/sft/on-index-news/step-000004"
    third = _dataset(layout.search("third"), "search-index", [clean])
    assert evals(sft, other, third) == f"{layout.root}/evals/r/sft/on-r2-sft-index-third/step-000004"
    outside = evals(sft, "/elsewhere/held-out", index)
    assert outside.startswith(f"{layout.root}/evals/r/sft/on-external-") and outside != evals(sft, "/x", index)
    assert Path("tests").is_dir()  # pytest runs from the repository root: a run named like a folder there
    named_like_a_folder = _save(layout.checkpoints("tests", "sft"), 1, [rows], tok)
    assert layout.model("tests") == named_like_a_folder  # the lake's name wins over the local folder


def put(path: Path, data: bytes = b"w") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def test_a_folder_of_warc_files_is_one_crawl_and_a_folder_of_folders_many(tmp_path):
    put(tmp_path / "flat" / "a.warc.gz")
    put(tmp_path / "flat" / "b.warc")
    put(tmp_path / "flat" / "notes.txt")
    found = crawls.find(str(tmp_path / "flat"))
    assert found.crawls == {"flat": [str(tmp_path / "flat" / "a.warc.gz"), str(tmp_path / "flat" / "b.warc")]}
    assert "flat (2 WARC files, WARC files in the root)" in found.describe("flat")
    put(tmp_path / "nested" / "one" / "x.warc.gz")
    put(tmp_path / "nested" / "two" / "deep" / "y.warc.gz")
    assert set(crawls.find(str(tmp_path / "nested")).crawls) == {"one", "two"}
    (tmp_path / "empty").mkdir()
    assert "no WARC files" in crawls.find(str(tmp_path / "empty")).describe("empty")
    put(tmp_path / "clash" / "clash" / "x.warc.gz")
    put(tmp_path / "clash" / "y.warc.gz")
    with pytest.raises(ValueError, match="move the files into a folder"):
        crawls.find(str(tmp_path / "clash"))
