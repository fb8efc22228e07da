"""Named runs: two pipelines at once, on different crawls and on one crawl, each keep their
own tokenizer, tokens, checkpoints, conversations, rollouts, evals, reports and artifacts, and
the datasets they share (the crawl's curation and search index) stay whole.

Every stage runs, for real, on sample crawls with a one-layer model (tests/support/micro.py)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from flows.pipeline import pipeline
from models import lake, storage
from models.tokenizer import Tokenizer
from models.tools import SearchIndex
from tasks.layout import Layout, artifact_key
from tests.support.micro import micro_config


def at_once(*configs: Any) -> list[dict[str, Any]]:
    with ThreadPoolExecutor(len(configs)) as pool:
        return [f.result() for f in [pool.submit(pipeline, config=c) for c in configs]]


def check_run(layout: Layout, result: dict[str, Any], run: str, crawl: str) -> None:
    assert result["run"] == run and result["crawls"] == [crawl]
    for stage, name in (("pretrain", "base"), ("sft", "sft"), ("rl", "rl")):
        assert result[stage]["checkpoint"].startswith(layout.checkpoints(run, name) + "/"), stage
    sft = result["sft"]["checkpoint"]
    tokenizer = layout.tokenizer(run, "bpe-4k")
    assert storage.read_json(storage.join(sft, "config.json"))["tokenizer"] == tokenizer  # its own, not the other run's
    stats = lake.manifest(tokenizer).stats
    fs, path = storage.filesystem(storage.join(tokenizer, stats["model_file"]))
    assert fs.exists(path) and Tokenizer.load(tokenizer).model_proto == fs.cat_file(path)  # the committed version
    assert (
        layout.search_for(sft) == layout.search(crawl) == result["search_index"]["uri"]
    )  # the lineage leads to the crawl's index
    assert layout.search_for(result["rl"]["checkpoint"]) == layout.search(crawl)
    assert result["evaluate"]["results"]["sft"] == layout.evals(sft)
    assert f"run {run}" in storage.read_bytes(lake.join(layout.reports(run), "latest.md")).decode()
    assert result["sft"]["conversations"]["test"] == layout.conversations_for(sft)


def written_by_the_layout(layout: Layout, runs: dict[str, str], results: list[dict[str, Any]]) -> list[str]:
    """Datasets in the lake that are not where the layout puts a run's or a crawl's datasets."""
    allowed = [layout.task_results()]
    for (run, crawl), result in zip(runs.items(), results):
        allowed += [layout.crawl(crawl) + "/", layout.curated(crawl).base + "/", layout.search(crawl)]
        allowed += [layout.tokenizer(run, "bpe-4k"), f"{layout.tokens(layout.tokenizer(run, 'bpe-4k'), crawl)}/"]
        allowed += [layout.checkpoints(run, s) + "/" for s in ("base", "sft", "rl")]
        allowed += [layout.conversations(run, "sft") + "/", layout.rollouts(run, "rl") + "/"]
        allowed += [layout.evals(result[s]["checkpoint"]) for s in ("pretrain", "sft")]
    return [u for u in lake.list_datasets(layout.root) if not any(u == a or u.startswith(a) for a in allowed)]


@pytest.mark.slow
def test_two_runs_at_once_on_two_crawls_and_on_one_crawl(prefect_server, tmp_path):
    from prefect.artifacts import Artifact

    root = str(tmp_path / "lake")
    layout = Layout(root)
    runs = {"alpha": "alpha", "beta": "beta", "gamma-x": "gamma", "gamma-y": "gamma"}
    first = at_once(
        micro_config(root, **{"sample_crawl.name": "alpha", "sample_crawl.seed": 1}),
        micro_config(root, **{"sample_crawl.name": "beta", "sample_crawl.seed": 2}),
    )
    # One crawl, two runs at once (another SFT seed): both curate and index the crawl at the same time.
    second = at_once(
        *(
            micro_config(root, run=run, **{"sample_crawl.name": "gamma", "sample_crawl.seed": 3, "sft.seed": seed})
            for run, seed in (("gamma-x", 1), ("gamma-y", 2))
        )
    )
    for result, (run, crawl) in zip(first + second, runs.items()):
        check_run(layout, result, run, crawl)
    assert SearchIndex.open(layout.search("gamma")).search("the", k=1)  # the shared index: one whole version
    x, y = (lake.manifest(lake.join(r["sft"]["conversations"]["train"])) for r in second)
    assert x.fingerprint() != y.fingerprint()  # each run kept its own conversations
    for run in runs:
        table = Artifact.get(artifact_key("evaluate-before-after", run))
        assert table is not None and f"run {run}" in (table.description or "")
        assert Artifact.get(artifact_key("pipeline-report-card", run)) is not None
    assert written_by_the_layout(layout, runs, first + second) == []
