"""The dedup flow end to end on a real Prefect server, on local disk and S3: planted duplicates
found with the right kept document, deterministic under re-sharding and runners, and the
three scopes."""

from __future__ import annotations

import asyncio

import numpy as np
import polars as pl
import pyarrow as pa
import pytest

from flows.dedup import dedup
from models import lake
from tasks.config import LakeConfig
from tasks.dedup import DedupConfig
from tasks.dedup.apply import removals, split_removed
from tasks.dedup.stages import index_parts
from tasks.dedup.synthetic import FILTERED_SCHEMA, random_words
from tasks.runtime import RunnerConfig

pytestmark = pytest.mark.slow
PARAMS = DedupConfig().signature_params()


def text(rng: np.random.Generator, words: int = 200) -> list[str]:
    return random_words(rng, words, length=7)


def edit(words: list[str], at: int, rng: np.random.Generator) -> str:
    changed = list(words)
    changed[at] = random_words(rng, 1, length=7)[0]
    return " ".join(changed)


def doc(id_: str, body: str, date: str, crawl: str = "c1") -> dict:
    return {
        "id": id_,
        "url": f"https://example.com/{id_}",
        "date": date,
        "crawl": crawl,
        "warc": f"{crawl}.warc.gz",
        "text": body,
        "language": "en",
        "language_score": 0.9,
    }


def planted(crawl: str = "c1", seed: int = 0) -> tuple[list[dict], dict[str, tuple[str, str]]]:
    """Documents with known duplicates, and the expected removals: id -> (step, kept id).

    Near-duplicates differ in one word of 200 (Jaccard ~0.95: found with probability
    > 0.9999); exact ones differ only in case, punctuation and spacing.
    """
    rng = np.random.default_rng(seed)
    p = f"{crawl}-"
    n, e, m = text(rng), text(rng), text(rng)
    docs = [
        # near: the earliest of three kept
        doc(p + "n1", " ".join(n), "2024-01-03T00:00:00Z", crawl),
        doc(p + "n2", edit(n, 10, rng), "2024-01-01T00:00:00Z", crawl),
        doc(p + "n3", edit(n, 150, rng), "2024-01-02T00:00:00Z", crawl),
        # exact: case, punctuation and whitespace do not matter; the earliest is kept
        doc(p + "e1", " ".join(e), "2024-01-05T00:00:00Z", crawl),
        doc(p + "e2", " ".join(e).upper() + "!!", "2024-01-05T00:00:00Z", crawl),
        doc(p + "e3", ",  ".join(e) + ".", "2024-01-04T00:00:00Z", crawl),
        # exact first, then MinHash among the survivors; a date tie goes to the smaller id
        doc(p + "m2", " ".join(m), "2024-01-01T00:00:00Z", crawl),
        doc(p + "m1", " ".join(m).title(), "2024-01-02T00:00:00Z", crawl),
        doc(p + "m0", edit(m, 100, rng), "2024-01-01T00:00:00Z", crawl),
        # too short for a 5-gram: only exact dedup sees them
        doc(p + "s1", "Hello world", "2024-01-01T00:00:00Z", crawl),
        doc(p + "s2", "hello, WORLD", "2024-01-02T00:00:00Z", crawl),
    ] + [doc(p + f"u{i}", " ".join(text(rng)), "2024-01-01T00:00:00Z", crawl) for i in range(6)]
    expected = {
        p + "n1": ("dedup_minhash", p + "n2"),
        p + "n3": ("dedup_minhash", p + "n2"),
        p + "e1": ("dedup_exact", p + "e3"),
        p + "e2": ("dedup_exact", p + "e3"),
        p + "m1": ("dedup_exact", p + "m2"),
        p + "m2": ("dedup_minhash", p + "m0"),
        p + "s2": ("dedup_exact", p + "s1"),
    }
    return docs, expected


def write_filtered(uri: str, shards: list[list[dict]], names: list[str] | None = None) -> str:
    names = names or [f"warc-{i:03d}" for i in range(len(shards))]
    written = [
        lake.write_shard(uri, name, pa.Table.from_pylist(rows, schema=FILTERED_SCHEMA))
        for name, rows in zip(names, shards)
    ]
    lake.commit(uri, written, kind="curated-filtered")
    return uri


def run(root: str, filtered: str, crawl: str, workers: int = 2, **config) -> dict:
    return dedup(
        filtered=filtered,
        crawl=crawl,
        lake=LakeConfig(root=root),
        config=DedupConfig(**config),
        runner=RunnerConfig(max_workers=workers),
    )


def index_ids(root: str) -> set[str]:
    """The ids in the index: the union of every crawl's part."""
    return {i for uri in index_parts(root, PARAMS) for i in lake.scan(uri).collect()["id"]}


def removal_map(uri: str) -> dict[str, tuple[str, str]]:
    return {r["id"]: (r["step"], r["kept_id"]) for r in lake.scan(uri).collect().to_dicts()}


def test_planted_duplicates_found_with_the_kept_document(prefect_server, lake_root):
    docs, expected = planted()
    # Duplicates spread over shards: each cluster crosses a shard boundary.
    filtered = write_filtered(lake.join(lake_root, "curated/c1/filtered"), [docs[0::3], docs[1::3], docs[2::3]])
    result = run(lake_root, filtered, "c1")

    assert removal_map(result["removals"]) == expected
    stats = result["stats"]
    assert (stats["docs_in"], stats["removed_exact"], stats["removed_minhash"], stats["docs_out"]) == (17, 4, 3, 10)
    assert stats["too_short_for_minhash"] == 2
    assert (
        stats["minhash_clusters"] == 2
        and stats["minhash_cluster_sizes"]["3"] == 1
        and stats["minhash_cluster_sizes"]["2"] == 1
    )
    assert stats["exact_clusters"] == 3 and stats["exact_largest_cluster"] == 3

    rows = lake.scan(result["removals"]).collect()
    assert set(rows.columns) == {"id", "step", "reason", "cluster", "kept_id"}
    assert rows.filter(pl.col("id") == "c1-n1")["reason"].item() == "near-duplicate of c1-n2"
    assert rows.filter(pl.col("id") == "c1-e2")["reason"].item() == "exact duplicate of c1-e3"
    assert rows.filter(pl.col("id").is_in(["c1-n1", "c1-n3"]))["cluster"].n_unique() == 1

    # Every stage's dataset is committed with its lineage; the removals mirror the input shards.
    for name in ("signatures", "exact", "pairs", "clusters", "remove"):
        found = lake.manifest(lake.join(lake_root, "dedup/c1", name))
        assert found.parents and found.config_hash and found.code_version
    names = lambda uri: [lake.shard_name(s.path) for s in lake.manifest(uri).shards]  # noqa: E731
    assert names(result["removals"]) == names(filtered)
    assert len(lake.manifest(lake.join(lake_root, "dedup/c1/pairs")).shards) == 14  # one per band

    # What the curate flow does per shard: read that shard's removals and split.
    for shard_uri in lake.shard_uris(filtered):
        name = shard_uri.rsplit("/", 1)[-1]
        table = lake.read_shard(shard_uri)
        kept, gone = split_removed(table, removals(result["removals"], name))
        assert kept.num_rows + gone.num_rows == table.num_rows
        assert set(gone["id"].to_pylist()) == {i for i in table["id"].to_pylist() if i in expected}
        assert gone.column_names == table.column_names + ["step", "reason"]


def test_run_report_is_a_markdown_artifact(prefect_server, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    root = str(tmp_path / "lake")
    docs, _ = planted()
    run(root, write_filtered(lake.join(root, "curated/c1/filtered"), [docs]), "c1")

    async def latest() -> str:
        async with get_client() as client:
            found = await client.read_latest_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["dedup-report-c1"]))
            )
            return found[0].data

    report = asyncio.run(latest())
    assert "| 17 | 4 | 3 | 10 | 2 |" in report  # in, exact, near, out, too short
    assert "kept | removed | removed" in report and "c1-n2" in report


def test_same_documents_kept_whatever_the_sharding_and_runner(prefect_server, tmp_path):
    docs, expected = planted(seed=3)
    order = np.random.default_rng(1).permutation(len(docs))
    shuffled = [docs[i] for i in order]
    a = run(
        str(tmp_path / "a"),
        write_filtered(str(tmp_path / "a/curated/c1/filtered"), [docs[:9], docs[9:]]),
        "c1",
        workers=1,
    )
    b = run(
        str(tmp_path / "b"),
        write_filtered(
            str(tmp_path / "b/curated/c1/filtered"), [shuffled[i::4] for i in range(4)], names=["z", "y", "x", "w"]
        ),
        "c1",
        workers=4,
    )
    columns = ["id", "step", "reason", "cluster", "kept_id"]
    frame_a = lake.scan(a["removals"]).collect().select(columns).sort("id")
    frame_b = lake.scan(b["removals"]).collect().select(columns).sort("id")
    assert frame_a.equals(frame_b)
    assert removal_map(a["removals"]) == expected


def test_index_scope_dedups_a_new_crawl_against_what_earlier_crawls_kept(prefect_server, tmp_path):
    lake_root = str(tmp_path / "lake")
    docs1, expected1 = planted("c1", seed=0)
    run(lake_root, write_filtered(lake.join(lake_root, "curated/c1/filtered"), [docs1]), "c1", scope="index")
    kept1 = {d["id"] for d in docs1} - set(expected1)
    assert index_ids(lake_root) == kept1

    # Crawl 2 re-fetches two of crawl 1's kept pages (one edited), earlier than crawl 1 did:
    # the index still wins, since those documents were already published.
    rng = np.random.default_rng(9)
    by_id = {d["id"]: d for d in docs1}
    again = doc("c2-again", by_id["c1-u0"]["text"], "2023-01-01T00:00:00Z", "c2")
    edited = doc("c2-edited", edit(by_id["c1-n2"]["text"].split(), 50, rng), "2023-01-01T00:00:00Z", "c2")
    new = doc("c2-new", " ".join(text(rng)), "2024-02-01T00:00:00Z", "c2")
    filtered2 = write_filtered(lake.join(lake_root, "curated/c2/filtered"), [[again, edited], [new]])
    result = run(lake_root, filtered2, "c2", scope="index")
    assert removal_map(result["removals"]) == {
        "c2-again": ("dedup_exact", "c1-u0"),
        "c2-edited": ("dedup_minhash", "c1-n2"),
    }
    reasons = lake.scan(result["removals"]).collect()["reason"].to_list()
    assert "exact duplicate of c1-u0 in crawl c1" in reasons
    assert index_ids(lake_root) == kept1 | {"c2-new"}
    assert [lake.manifest(u).stats["crawl"] for u in index_parts(lake_root, PARAMS)] == ["c1", "c2"]

    # Re-running crawl 2 does not find it duplicating its own earlier run.
    assert removal_map(run(lake_root, filtered2, "c2", scope="index")["removals"]) == removal_map(result["removals"])
    assert index_ids(lake_root) == kept1 | {"c2-new"}


def test_two_crawls_deduplicated_at_once_both_reach_the_index(prefect_server, tmp_path):
    """Two index-scope runs of different crawls at the same moment (threads): each commits its
    own part of the index, so neither loses the other's documents."""
    from concurrent.futures import ThreadPoolExecutor

    root = str(tmp_path / "lake")
    planted_docs = {c: planted(c, seed=i) for i, c in enumerate(["c1", "c2"])}
    docs2, expected2 = planted_docs["c2"]  # the crawls share no text, so neither removes the other's
    planted_docs["c2"] = (
        [d for d in docs2 if d["id"] not in ("c2-s1", "c2-s2")],
        {k: v for k, v in expected2.items() if k != "c2-s2"},
    )
    filtered = {
        c: write_filtered(lake.join(root, f"curated/{c}/filtered"), [docs]) for c, (docs, _) in planted_docs.items()
    }
    with ThreadPoolExecutor(2) as pool:
        results = dict(zip(filtered, pool.map(lambda c: run(root, filtered[c], c, workers=1, scope="index"), filtered)))
    for crawl, (_docs, expected) in planted_docs.items():
        assert removal_map(results[crawl]["removals"]) == expected
    assert index_ids(root) == {
        d["id"] for c, (docs, expected) in planted_docs.items() for d in docs if d["id"] not in expected
    }


def test_lake_scope_keeps_the_earliest_copy_across_crawls(prefect_server, tmp_path):
    root = str(tmp_path / "lake")
    rng = np.random.default_rng(4)
    older, newer = text(rng), text(rng)
    c1 = [
        doc("c1-a", " ".join(older), "2024-03-01T00:00:00Z", "c1"),
        doc("c1-b", " ".join(newer), "2024-03-01T00:00:00Z", "c1"),
    ]
    c2 = [
        doc("c2-a", edit(older, 7, rng), "2024-04-01T00:00:00Z", "c2"),
        doc("c2-b", edit(newer, 7, rng), "2024-02-01T00:00:00Z", "c2"),
    ]
    run(root, write_filtered(lake.join(root, "curated/c1/filtered"), [c1]), "c1")  # signs crawl 1
    filtered2 = write_filtered(lake.join(root, "curated/c2/filtered"), [c2])
    # Across the lake: c2-a came later than its copy in c1 and goes; c2-b came first and stays
    # (c1-b is the one a lake-scope run of c1 would now drop).
    result = run(root, filtered2, "c2", scope="lake")
    assert removal_map(result["removals"]) == {"c2-a": ("dedup_minhash", "c1-a")}
    assert removal_map(run(root, lake.join(root, "curated/c1/filtered"), "c1", scope="lake")["removals"]) == {
        "c1-b": ("dedup_minhash", "c2-b")
    }


def test_bad_inputs_fail_clearly(prefect_server, tmp_path):
    root = str(tmp_path / "lake")
    with pytest.raises(lake.DatasetNotFound):
        run(root, lake.join(root, "curated/none/filtered"), "none")
    docs, _ = planted()
    filtered = write_filtered(lake.join(root, "curated/c1/filtered"), [docs])
    run(root, filtered, "c1", scope="index")
    with pytest.raises(ValueError, match="signed with"):  # an index signed with other parameters
        run(root, filtered, "c2", scope="index", bands=7, rows=16)
