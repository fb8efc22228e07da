"""The curate flow on the real Prefect test server, on local disk and S3: every shared WARC file
goes through it, nothing is lost (docs in = clean + removed, per shard), a re-run is all cache
hits, and the dedup slot moves the ids it is given into `removed`."""

from __future__ import annotations

import pyarrow as pa
import pytest

from flows.curate import curate, expand
from models import lake
from tasks.config import LakeConfig
from tasks.curate.config import CurateConfig, CustomFilter, ReadConfig
from tasks.curate.stage import curate_warc_fn, finalize_shard_fn
from tasks.curate.warc import read_warc

pytestmark = pytest.mark.slow


def upload(shared_data, lake_root: str) -> str:
    """The shared WARC files, copied under the lake root (S3 or disk) as a crawl folder."""
    target = lake.join(lake_root, "incoming", "shared")
    fs, path = lake.filesystem(target)
    fs.makedirs(path, exist_ok=True)
    for src in sorted((shared_data / "warc").glob("*/*")):
        if src.name != "LICENSE":
            fs.pipe_file(f"{path}/{src.parent.name}--{src.name}", src.read_bytes())
    return target


def by(table: pa.Table, *columns: str) -> dict:
    out: dict = {}
    for row in table.select(list(columns)).to_pylist():
        key = tuple(row[c] for c in columns)
        out[key] = out.get(key, 0) + 1
    return out


def test_flow_on_every_shared_warc_file_and_cache_hit(prefect_server, shared_data, lake_root):
    folder = upload(shared_data, lake_root)
    # dedup on S3 is tests/test_dedup_flow.py's; here it would double the run time
    config = CurateConfig(extract={"extractor": "resiliparse"}, dedup_enabled=not lake.is_remote(lake_root))
    result = curate(warcs=[folder + "/*"], lake=LakeConfig(root=lake_root), config=config)
    assert result["crawl"] == "shared" and result["warc_files"] == 19

    clean = lake.scan(result["clean_uri"]).collect().to_arrow()
    removed = lake.scan(result["removed_uri"]).collect().to_arrow()
    filtered = lake.manifest(result["filtered_uri"])
    # every response record (and every unreadable file) is a row, somewhere
    assert result["docs_in"] == 16 + 29 + 1 + 4 + 1 + 1 + 2 + 1 + 1 + 1 + 1 + 1 + 3 == clean.num_rows + removed.num_rows
    reasons = by(removed, "step", "reason")
    assert reasons[("read", "arc_format_unsupported")] == 4
    assert reasons[("read", "not_html:application/json")] == 3
    assert reasons[("read", "digest_mismatch")] == 2
    assert reasons[("read", "truncated")] == 1
    assert reasons[("read", "http_status_302")] == 1
    assert sum(v for (step, reason), v in reasons.items() if step == "language") >= 30  # ja, zh, ru, de ...
    # per shard: docs in = clean + removed
    per_warc_in = {}
    for row in removed.select(["warc"]).to_pylist() + clean.select(["warc"]).to_pylist():
        per_warc_in[row["warc"]] = per_warc_in.get(row["warc"], 0) + 1
    assert sum(per_warc_in.values()) == result["docs_in"]
    for warc, rows in per_warc_in.items():  # per shard: records in = clean + removed
        assert rows == sum(1 for _ in read_warc(warc, ReadConfig())), warc
    assert clean.schema.field("language_score").type == pa.float32()
    assert set(clean.column_names) == {
        "id",
        "url",
        "date",
        "crawl",
        "warc",
        "text",
        "language",
        "language_score",
        "quality_score",
    }
    assert clean["quality_score"].null_count == clean.num_rows  # the quality step is off
    assert set(removed.column_names) == set(clean.column_names) | {"step", "reason"}
    assert all(lang == "en" for lang in clean["language"].to_pylist())
    funnel = lake.manifest(result["clean_uri"]).stats["funnel"]["steps"]
    assert funnel["read"]["docs_in"] == result["docs_in"]
    assert funnel["pii"]["docs_out"] == clean.num_rows
    assert filtered.rows == clean.num_rows + sum(v for (step, _), v in reasons.items() if step.startswith("dedup"))
    assert result["dedup"] == ("off" if lake.is_remote(lake_root) else "on")
    report = lake.filesystem(result["report"])[0].cat_file(lake.filesystem(result["report"])[1]).decode()
    assert "## Removed examples" in report and "### language" in report
    from prefect.artifacts import Artifact

    funnel_artifact = Artifact.get("curate-funnel-shared")
    assert funnel_artifact is not None and '"step": "language"' in funnel_artifact.data
    assert "### language" in Artifact.get("curate-report-shared").data

    # a re-run: every task is a cache hit, so no shard is rewritten
    fs, path = lake.filesystem(result["filtered_uri"])
    before = {p: fs.info(p).get("ETag") or fs.info(p).get("mtime") for p in fs.find(path)}
    again = curate(warcs=[folder + "/*"], lake=LakeConfig(root=lake_root), config=config)
    fs.invalidate_cache()
    after = {
        p: fs.info(p).get("ETag") or fs.info(p).get("mtime") for p in fs.find(path) if not p.endswith("_manifest.json")
    }
    assert again["clean"] == result["clean"]
    assert all(before[p] == v for p, v in after.items())


def test_dedup_slot_moves_listed_ids_into_removed(tmp_path, shared_data):
    """finalize_shard with a removal dataset shaped as the dedup flow writes it (one shard per
    filtered shard, same name; id, step, reason, cluster, kept_id)."""
    from tasks.dedup.stages import REMOVE_SCHEMA

    root = str(tmp_path / "lake")
    warc = str(shared_data / "warc/edge-cases/example.warc.gz")
    config = CurateConfig(
        language={"enabled": False},
        gopher_repetition={"enabled": False},
        gopher_quality={"enabled": False},
        c4={"enabled": False},
        fineweb_quality={"enabled": False},
        extract={"extractor": "resiliparse"},
    )
    first = curate_warc_fn(warc, f"{root}/filtered", f"{root}/removed", "t", config)
    assert first["filtered"]["rows"] == 1
    kept_id = lake.read_shard(f"{root}/filtered/{first['filtered']['path']}")["id"][0].as_py()
    removals = pa.table(
        {
            "id": [kept_id],
            "step": ["dedup_minhash"],
            "reason": ["near_duplicate"],
            "cluster": [7],
            "kept_id": ["<urn:uuid:other>"],
        },
        schema=REMOVE_SCHEMA,
    )
    lake.commit(f"{root}/dups", [lake.write_shard(f"{root}/dups", first["name"], removals)], kind="dedup-remove")
    second = finalize_shard_fn(
        f"{root}/filtered/{first['filtered']['path']}",
        first["name"],
        f"{root}/clean",
        f"{root}/removed",
        f"{root}/dups",
        config.pii,
    )
    assert second["clean"]["rows"] == 0 and second["removed"]["rows"] == 1
    row = lake.read_shard(f"{root}/removed/{second['removed']['path']}").to_pylist()[0]
    assert row["step"] == "dedup_minhash" and row["reason"] == "near_duplicate (cluster=7, kept_id=<urn:uuid:other>)"
    assert second["funnel"]["steps"]["dedup_minhash"]["reasons"] == {"near_duplicate": 1}


def test_custom_filter_from_config_drops_with_its_reason(tmp_path, shared_data):
    root = str(tmp_path / "lake")
    config = CurateConfig(
        extract={"extractor": "resiliparse"},
        language={"enabled": False},
        gopher_repetition={"enabled": False},
        gopher_quality={"enabled": False},
        c4={"enabled": False},
        fineweb_quality={"enabled": False},
        custom=[CustomFilter(path="tests.test_curate_filters:MinWords", options={"n": 10_000})],
    )
    out = curate_warc_fn(str(shared_data / "warc/edge-cases/example.warc.gz"), f"{root}/f", f"{root}/r", "t", config)
    rows = lake.read_shard(f"{root}/r/{out['removed']['path']}").to_pylist()
    assert [(r["step"], r["reason"]) for r in rows] == [("custom", "MinWords:under_10000_words")]


def test_expand_globs_and_missing_files(tmp_path):
    (tmp_path / "a.warc.gz").write_bytes(b"x")
    (tmp_path / "b.warc.gz").write_bytes(b"x")
    assert expand([str(tmp_path / "*.warc.gz"), str(tmp_path / "a.warc.gz")]) == [
        str(tmp_path / "a.warc.gz"),
        str(tmp_path / "b.warc.gz"),
    ]
    with pytest.raises(FileNotFoundError):
        expand([str(tmp_path / "nope.warc.gz")])


def test_files_named_after_their_folder_never_take_over_its_other_files_crawl(tmp_path):
    """`pipeline dir/a.warc.gz` then `pipeline dir/b.warc.gz` are two crawls of one default
    name: the second is refused (name it); the same files again, or more, are that crawl."""
    from flows.curate import refuse_another_crawls_name

    a, b = str(tmp_path / "dir" / "a.warc.gz"), str(tmp_path / "dir" / "b.warc.gz")
    filtered = str(tmp_path / "lake" / "curated" / "dir" / "filtered")
    refuse_another_crawls_name("dir", filtered, [b])  # nothing curated yet
    lake.write_dataset(filtered, [pa.table({"id": ["x"]})], kind="curated-filtered", parents=[a])
    refuse_another_crawls_name("dir", filtered, [a])
    refuse_another_crawls_name("dir", filtered, [a, b])  # the crawl grew
    with pytest.raises(FileExistsError, match="--crawl"):
        refuse_another_crawls_name("dir", filtered, [b])


def test_sample_crawl_planted_pages_are_removed_by_their_step(prefect_server, tmp_path):
    """The sample crawl's ground truth: each planted page is removed by the step it was planted
    for (and no other), every clean page survives, and the planted PII is scrubbed."""
    from flows.sample_crawl import sample_crawl
    from tasks.config import SampleCrawlConfig

    root = str(tmp_path / "lake")
    crawl = sample_crawl(lake=LakeConfig(root=root), config=SampleCrawlConfig(pages=60, files=2))
    result = curate(warcs=crawl["warcs"], lake=LakeConfig(root=root), config=CurateConfig())
    truth = lake.scan(lake.join(root, "crawls", "sample", "truth")).collect().to_dicts()
    removed = {r["id"]: r for r in lake.scan(result["removed_uri"]).collect().to_dicts()}
    clean = {r["id"]: r for r in lake.scan(result["clean_uri"]).collect().to_dicts()}
    wrong = []
    for page in truth:
        got = removed.get(page["record_id"])
        step = got["step"] if got else None
        if step != page["expected_step"]:
            wrong.append((page["kind"], page["url"], page["expected_step"], step, got and got["reason"]))
    assert not wrong, wrong
    scrubbed = [p for p in truth if p["pii"]]
    assert scrubbed
    for page in scrubbed:
        text = clean[page["record_id"]]["text"]
        assert not any(secret in text for secret in page["pii"]), page["url"]


def test_cli_curate_with_extractor_flag_and_config_file(prefect_server, tmp_path, shared_data):
    import json

    import yaml
    from prefect.settings import PREFECT_API_URL
    from typer.testing import CliRunner

    from flows.cli import app
    from tasks.config import load_config

    config = load_config("tiny").model_dump(mode="json")
    config["curate"]["dedup_enabled"] = False
    config["curate"]["language"]["threshold"] = 0.5
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(config))
    root = str(tmp_path / "lake")
    warcs = str(shared_data / "warc/commoncrawl-sample/warcfile.warc.gz")
    out = CliRunner().invoke(
        app,
        ["curate", warcs, "--lake", root, "--extractor", "resiliparse", "--config", str(path)],
        env={"PREFECT_API_URL": PREFECT_API_URL.value()},
    )
    assert out.exit_code == 0, out.output
    result = json.loads(out.output)
    assert (result["crawl"], result["extractor"], result["dedup"], result["docs_in"]) == (
        "commoncrawl-sample",
        "resiliparse",
        "off",
        16,
    )
    assert lake.manifest(result["clean_uri"]).rows + lake.manifest(result["removed_uri"]).rows == 16
