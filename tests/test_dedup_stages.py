"""The exact, bucket and cluster stages against a plain in-memory computation, automatic
splits at the budget's edges, and the index's per-crawl parts (concurrent commits, re-runs)."""

from __future__ import annotations

import threading

import numpy as np
import pyarrow as pa
import pytest

from models import lake
from tasks.dedup import DedupConfig
from tasks.dedup.stages import (
    band_columns,
    band_pairs,
    cluster_pairs,
    commit_index,
    exact_groups,
    index_part,
    index_parts,
    shared_keys,
    sign_shard,
)
from tasks.dedup.synthetic import FILTERED_SCHEMA, documents

CONFIG = DedupConfig()
PARAMS = CONFIG.signature_params()


# -- a generated corpus and a straightforward reference ----------------------------------


def write_docs(uri: str, shards: list[list[dict]]) -> str:
    written = [
        lake.write_shard(uri, f"warc-{i:03d}", pa.Table.from_pylist(rows, schema=FILTERED_SCHEMA))
        for i, rows in enumerate(shards)
    ]
    lake.commit(uri, written, kind="curated-filtered")
    return uri


def signed(root: str, crawl: str, shards: list[list[dict]], out: str) -> list[dict]:
    filtered = write_docs(lake.join(root, f"curated/{crawl}/filtered"), shards)
    return [sign_shard.fn(u, out, crawl, PARAMS) for u in lake.shard_uris(filtered)]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict:
    """Crawl c1 (3 shards) and an index part of crawl c0: exact and near duplicates within
    each and across them (the generator copies recent documents), index-only duplicate
    groups, documents too short for a shingle (null band hashes) and a missing date."""
    root = str(tmp_path_factory.mktemp("lake"))
    rows = [
        r
        for b in documents(240, crawl="c1", seed=5, words=(30, 60), near_duplicates=0.3, exact_duplicates=0.15)
        for r in b.to_pylist()
    ]
    old, new = [dict(r, crawl="c0") for r in rows[:80]], rows[80:]
    new += [dict(new[0], id=f"<short-{i}>", text=t) for i, t in enumerate(["Hello world", "hello, WORLD!", "one two"])]
    new[5]["date"] = None
    old += [dict(old[3], id="<old-copy>")]  # a duplicate group made only of index documents
    index = index_part(root, "c0")
    commit_index(index, "c0", signed(root, "c0", [old], index), PARAMS)
    sources = lake.join(root, "dedup/c1/signatures")
    committed(sources, signed(root, "c1", [new[0::3], new[1::3], new[2::3]], sources), "dedup-signatures")
    return {"root": root, "sources": [sources], "index": [index]}


def committed(uri: str, results: list[dict], kind: str) -> str:
    lake.commit(
        uri,
        [lake.Shard(**{k: r[k] for k in ("path", "rows", "bytes", "sha256")}) for r in results],
        kind=kind,
        stats={"signature": PARAMS},
    )
    return uri


def rows_of(uris: list[str], from_index: bool) -> list[dict]:
    return [dict(r, from_index=from_index) for u in uris for r in lake.scan(u).collect().to_dicts()]


def keep_order(row: dict) -> tuple:
    return (not row["from_index"], row["date"] is None, row["date"] or "", row["id"])


def reference(sources: list[str], index: list[str]) -> tuple[dict, set, dict]:
    """Exact groups (id -> kept id), candidate pairs (a, b, band) and MinHash clusters
    (id -> kept id), computed the plain way: every row in memory, Python dicts."""
    rows = rows_of(sources, False) + rows_of(index, True)
    by_id = {r["id"]: r for r in rows}

    def settle(groups) -> dict[str, str]:
        kept = {}
        for members in groups:
            if len(members) > 1 and any(not m["from_index"] for m in members):
                best = min(members, key=keep_order)["id"]
                kept.update({m["id"]: best for m in members})
        return kept

    exact: dict[tuple, list] = {}
    for r in rows:
        exact.setdefault((r["exact_hi"], r["exact_lo"]), []).append(r)
    exact_kept = settle(exact.values())
    left = [r for r in rows if exact_kept.get(r["id"], r["id"]) == r["id"]]
    pairs = set()
    for band, column in enumerate(band_columns(CONFIG.bands)):
        buckets: dict[int, list] = {}
        for r in left:
            if r[column] is not None:
                buckets.setdefault(r[column], []).append(r)
        for members in buckets.values():
            if len(members) > 1 and any(not m["from_index"] for m in members):
                ids = sorted(m["id"] for m in members)
                pairs |= {(ids[0], b, band) for b in ids[1:]}
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            x = parent[x]
        return x

    for a, b, _ in pairs:
        parent[max(find(a), find(b))] = min(find(a), find(b))
    components: dict[str, list] = {}
    for x in list(parent):
        components.setdefault(find(x), []).append(by_id[x])
    return exact_kept, pairs, settle(components.values())


@pytest.mark.parametrize("splits", [1, 3])
@pytest.mark.parametrize("scope", ["crawl", "index"])
def test_two_pass_stages_equal_an_in_memory_computation(corpus, tmp_path, splits, scope):
    sources, index = corpus["sources"], corpus["index"] if scope == "index" else []
    exact_kept, pairs, cluster_kept = reference(sources, index)
    assert len(exact_kept) > 10 and len(pairs) > 30 and len(cluster_kept) > 10  # the corpus has what it should
    if scope == "index":  # index documents win clusters, of both kinds
        indexed = {r["id"] for r in rows_of(index, True)}
        assert set(exact_kept.values()) & indexed and set(cluster_kept.values()) & indexed

    out = {name: str(tmp_path / name) for name in ("exact", "pairs", "clusters")}
    committed(
        out["exact"], [exact_groups.fn(sources, index, s, splits, out["exact"]) for s in range(splits)], "dedup-exact"
    )
    found = lake.scan(out["exact"]).collect()
    assert dict(zip(found["id"], found["kept_id"])) == exact_kept

    written = [
        band_pairs.fn(sources, index, out["exact"], b, s, splits, out["pairs"])
        for b in range(CONFIG.bands)
        for s in range(splits)
    ]
    committed(out["pairs"], written, "dedup-pairs")
    found = lake.scan(out["pairs"]).collect()
    assert set(zip(found["a"], found["b"], found["band"])) == pairs

    committed(out["clusters"], [cluster_pairs.fn(out["pairs"], sources, index, out["clusters"])], "dedup-clusters")
    found = lake.scan(out["clusters"]).collect()
    assert dict(zip(found["id"], found["kept_id"])) == cluster_kept


def signature_table(bands: list[list[int | None]]) -> pa.Table:
    return pa.table(
        {
            "id": [f"d{i}" for i in range(len(bands[0]))],
            **{f"band_{i:02d}": pa.array(b, pa.uint64()) for i, b in enumerate(bands)},
        }
    )


def test_shared_keys_new_with_new_or_with_the_index_never_index_only(tmp_path):
    new = lake.write_dataset(
        str(tmp_path / "new"), [signature_table([[1, 2, 2, 3, None, None, 7]]), signature_table([[4, 5]])], kind="t"
    )
    old = lake.write_dataset(str(tmp_path / "old"), [signature_table([[3, 6, 6, 9, 5]])], kind="t")
    assert new and old
    both = shared_keys([str(tmp_path / "new")], [str(tmp_path / "old")], "band_00", 0, 1)
    # 2: twice among the new; 3 and 5: a new document and an index one (across shards);
    # 6: only in the index; nulls never match.
    assert both.tolist() == [2, 3, 5] and both.dtype == np.uint64
    assert shared_keys([str(tmp_path / "new")], [], "band_00", 0, 1).tolist() == [2]
    # Slices partition the keys by hash modulo splits.
    assert [
        shared_keys([str(tmp_path / "new")], [str(tmp_path / "old")], "band_00", s, 2).tolist() for s in (0, 1)
    ] == [[2], [3, 5]]


# -- automatic splits ----------------------------------------------------------------------


def test_auto_splits_at_the_edges_of_the_budget():
    config = DedupConfig(rows_per_task=100)
    assert config.splits == "auto"
    assert [config.splits_for(n) for n in (0, 1, 99, 100, 101, 200, 201, 1000)] == [1, 1, 1, 1, 2, 2, 3, 10]
    assert DedupConfig(splits=5, rows_per_task=100).splits_for(10_000) == 5  # a number is taken as it is
    assert DedupConfig(splits="auto").splits_for(CONFIG.rows_per_task + 1) == 2
    for bad in (0, "some"):
        with pytest.raises(ValueError):
            DedupConfig(splits=bad)


# -- the index: one part per crawl ---------------------------------------------------------


def index_shards(root: str, crawl: str, shard: str, ids: list[str]) -> list[dict]:
    table = pa.table({"id": ids, "crawl": [crawl] * len(ids)})
    written = lake.write_shard(index_part(root, crawl), shard, table)
    return [{"path": written.path, "rows": written.rows, "bytes": written.bytes, "sha256": written.sha256}]


def index_ids(root: str) -> dict[str, set[str]]:
    return {lake.manifest(u).stats["crawl"]: set(lake.scan(u).collect()["id"]) for u in index_parts(root, PARAMS)}


def test_index_commits_that_interleave_lose_nothing(lake_root, monkeypatch):
    """Crawl c2's whole commit lands while crawl c1's commit is under way (after anything c1
    could have read, before it writes): both crawls are in the index."""
    one = index_shards(lake_root, "c1", "warc-000", ["a", "b"])
    two = index_shards(lake_root, "c2", "warc-000", ["c"])
    real_commit = lake.commit
    interleaved = []

    def commit_with_c2_in_between(uri, shards, **fields):
        if fields.get("stats", {}).get("crawl") == "c1" and not interleaved:
            interleaved.append(commit_index(index_part(lake_root, "c2"), "c2", two, PARAMS))
        return real_commit(uri, shards, **fields)

    monkeypatch.setattr(lake, "commit", commit_with_c2_in_between)
    commit_index(index_part(lake_root, "c1"), "c1", one, PARAMS)
    assert interleaved and index_ids(lake_root) == {"c1": {"a", "b"}, "c2": {"c"}}


def test_index_commits_from_threads_at_once(tmp_path):
    root = str(tmp_path / "lake")
    crawls = [f"c{i}" for i in range(8)]
    shards = {c: index_shards(root, c, "warc-000", [f"{c}-doc"]) for c in crawls}
    start = threading.Barrier(len(crawls))

    def commit(crawl: str) -> None:
        start.wait()
        commit_index(index_part(root, crawl), crawl, shards[crawl], PARAMS)

    threads = [threading.Thread(target=commit, args=(c,)) for c in crawls]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert index_ids(root) == {c: {f"{c}-doc"} for c in crawls}


def test_rerunning_a_crawl_replaces_only_its_own_part(tmp_path):
    root = str(tmp_path / "lake")
    commit_index(index_part(root, "c1"), "c1", index_shards(root, "c1", "warc-000", ["a", "b"]), PARAMS)
    commit_index(index_part(root, "c2"), "c2", index_shards(root, "c2", "warc-000", ["c"]), PARAMS)
    before = lake.manifest(index_part(root, "c2")).to_json()
    commit_index(index_part(root, "c1"), "c1", index_shards(root, "c1", "warc-000", ["a", "z"]), PARAMS)
    assert index_ids(root) == {"c1": {"a", "z"}, "c2": {"c"}}
    assert lake.manifest(index_part(root, "c2")).to_json() == before  # not even rewritten
    assert index_parts(root, PARAMS, exclude="c1") == [index_part(root, "c2")]


def test_a_crawl_rerun_under_new_parameters_ignores_its_own_part_not_others(lake_root):
    """Its own part is about to be replaced, so its old parameters do not matter; another
    crawl's part signed otherwise still cannot be compared."""
    new_params = DedupConfig(bands=7, rows=16).signature_params()
    commit_index(index_part(lake_root, "c1"), "c1", index_shards(lake_root, "c1", "warc-000", ["a"]), PARAMS)
    assert index_parts(lake_root, new_params, exclude="c1") == []
    commit_index(index_part(lake_root, "c2"), "c2", index_shards(lake_root, "c2", "warc-000", ["b"]), PARAMS)
    with pytest.raises(ValueError, match="c2 was signed with"):
        index_parts(lake_root, new_params, exclude="c1")


def test_index_in_the_old_layout_or_signed_otherwise_or_a_crawl_named_index_fail_clearly(tmp_path):
    root = str(tmp_path / "lake")
    commit_index(index_part(root, "c1"), "c1", index_shards(root, "c1", "warc-000", ["a"]), PARAMS)
    with pytest.raises(ValueError, match="signed with"):
        index_parts(root, DedupConfig(bands=7, rows=16).signature_params())
    with pytest.raises(ValueError, match="named 'index'"):
        index_part(root, "index")
    lake.write_dataset(lake.join(root, "dedup/index"), [pa.table({"id": ["x"]})], kind="dedup-index")
    with pytest.raises(ValueError, match="old layout"):
        index_parts(root, PARAMS)
