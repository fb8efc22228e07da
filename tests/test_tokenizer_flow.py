"""tasks/tokenize.py and the tokenizer/tokenize flows: the split, the bounded sample, token
shards (exact, streaming, deterministic), manifests, and both flows on a real Prefect server."""

from __future__ import annotations

import hashlib
import json
import uuid

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from models import lake
from models.tokenizer import Tokenizer
from tasks.curate.stage import CLEAN_SCHEMA
from tasks.tokenize import (
    TokenizeConfig,
    TokenizerConfig,
    doc_hash,
    is_validation,
    sample_documents,
    token_type,
    tokenize_shard,
    train_tokenizer,
)


def record_id(i: int) -> str:
    return f"<urn:uuid:{uuid.UUID(int=i * 7919 + 1)}>"


def clean_table(texts: list[str | None], start: int = 0) -> pa.Table:
    n = len(texts)
    ids = [record_id(start + i) for i in range(n)]
    return pa.table(
        {
            "id": ids,
            "url": [f"https://example.com/{start + i}" for i in range(n)],
            "date": ["2024-05-01T00:00:00Z"] * n,
            "crawl": ["test"] * n,
            "warc": ["s3://crawls/test/a.warc.gz"] * n,
            "text": texts,
            "language": ["en"] * n,
            "language_score": [0.9] * n,
            "quality_score": [None] * n,
        },
        schema=CLEAN_SCHEMA,
    )


def write_clean(uri: str, texts: list[str | None], shards: int = 3) -> str:
    """A `curated/{crawl}/clean` dataset of `texts`, split into `shards` shards."""
    size = -(-len(texts) // shards)
    tables = [clean_table(texts[i : i + size], start=i) for i in range(0, len(texts), size)]
    lake.write_dataset(uri, tables, kind="curated.clean")
    return uri


@pytest.fixture(scope="module")
def texts(shared_data) -> list[str]:
    truth = json.loads((shared_data / "extraction-benchmark" / "ground-truth.json").read_text())
    return [truth[k]["articleBody"] for k in sorted(truth)]


SMALL = TokenizerConfig(name="t", vocab_size=2048, sample_chars=400_000, doc_chars=5000, threads=1)


# -- the split ---------------------------------------------------------------------------


def test_split_depends_on_the_id_alone_and_follows_the_fraction():
    ids = [record_id(i) for i in range(20_000)]
    assert all(0.0 <= doc_hash(i) < 1.0 for i in ids[:100])
    assert not any(is_validation(i, 0.0) for i in ids)
    share = sum(is_validation(i, 0.1) for i in ids) / len(ids)
    assert 0.09 < share < 0.11
    smaller = {i for i in ids if is_validation(i, 0.05)}
    assert smaller <= {i for i in ids if is_validation(i, 0.1)}  # growing the fraction only adds
    # The edge: a document is held out exactly when the fraction exceeds 1 - its hash.
    h = doc_hash(ids[0])
    assert is_validation(ids[0], 1 - h + 1e-9) and not is_validation(ids[0], 1 - h - 1e-9)


# -- the sample --------------------------------------------------------------------------


def test_sample_is_bounded_excludes_validation_and_ignores_shard_layout(tmp_path, texts):
    a = write_clean(str(tmp_path / "a"), texts, shards=1)
    b = write_clean(str(tmp_path / "b"), texts, shards=5)
    cfg = SMALL.model_copy(update={"sample_chars": 100_000, "doc_chars": 3000})
    docs, stats = sample_documents(a, cfg, holdout=0.2)
    assert sample_documents(b, cfg, holdout=0.2)[0] == docs
    rows = clean_table(texts)
    backwards = rows.take(list(range(rows.num_rows - 1, -1, -1)))  # the same documents, the other way round
    c = str(tmp_path / "c")
    lake.write_dataset(c, [backwards.slice(0, 50), backwards.slice(50)], kind="curated.clean")
    assert sample_documents(c, cfg, holdout=0.2)[0] == docs
    assert stats["chars_sampled"] == sum(map(len, docs)) <= 100_000
    assert all(len(d) <= 3000 for d in docs)
    val = {texts[i][:3000] for i in range(len(texts)) if is_validation(record_id(i), 0.2)}
    assert stats["documents_held_out"] == len(val) > 0 and not val & set(docs)
    # The budget's edge: exactly the sample's size keeps it whole; one character less drops one.
    exact = cfg.model_copy(update={"sample_chars": stats["chars_sampled"]})
    assert sample_documents(a, exact, holdout=0.2)[0] == docs
    short = cfg.model_copy(update={"sample_chars": stats["chars_sampled"] - 1})
    assert sample_documents(a, short, holdout=0.2)[0] == docs[:-1]
    other_seed = cfg.model_copy(update={"seed": 1})
    assert sample_documents(a, other_seed, holdout=0.2)[0] != docs


def test_config_refuses_a_budget_smaller_than_one_document():
    with pytest.raises(ValueError, match="sample_chars must be at least doc_chars"):
        TokenizerConfig(sample_chars=1000, doc_chars=2000)


# -- training ----------------------------------------------------------------------------


def test_train_tokenizer_commits_model_vocab_and_lineage(lake_root, texts):
    clean = write_clean(lake.join(lake_root, "curated", "test", "clean"), texts)
    out = lake.join(lake_root, "tokenizers", "t")
    stats = train_tokenizer.fn(clean, out, SMALL, 0.1)
    m = lake.manifest(out)
    assert m.kind == "tokenizer" and m.parents == [lake.normalize(clean)]
    assert m.stats["vocab_size"] == stats["vocab_size"] == 2048 and m.stats["bytes_per_token"] > 2
    tok = Tokenizer.load(out)
    vocab = lake.scan(out).sort("id").collect()
    assert vocab["bytes"].to_list() == tok.token_bytes.tolist()
    assert vocab.filter(vocab["kind"] == "special")["piece"].to_list()[:2] == ["<|bos|>", "<|user_start|>"]
    assert (vocab["kind"] == "byte").sum() == 256
    # Same sample and config: the same model, byte for byte.
    again = lake.join(lake_root, "tokenizers", "t2")
    train_tokenizer.fn(clean, again, SMALL, 0.1)
    assert Tokenizer.load(again).model_proto == tok.model_proto


def test_train_tokenizer_on_nothing_is_a_clear_error(tmp_path):
    clean = write_clean(str(tmp_path / "clean"), ["", None], shards=1)
    with pytest.raises(ValueError, match="no training documents"):
        train_tokenizer.fn(clean, str(tmp_path / "tok"), SMALL, 0.0)


# -- tokenizing --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory, texts) -> tuple[str, str]:
    root = tmp_path_factory.mktemp("lake")
    clean = write_clean(str(root / "curated" / "test" / "clean"), ["", None] + texts[:60], shards=2)
    out = str(root / "tokenizers" / "t")
    train_tokenizer.fn(clean, out, SMALL, 0.1)
    return clean, out


def read_split(uri: str, shard: str) -> pa.Table:
    return pq.read_table(f"{uri}/{shard}")


def test_token_shards_decode_to_the_documents_and_split_by_id(tmp_path, trained):
    clean, tok_uri = trained
    tok = Tokenizer.load(tok_uri)
    cfg = TokenizeConfig(val_fraction=0.2, batch_docs=7)
    shard = lake.shard_uris(clean)[0]
    result = tokenize_shard.fn(shard, tok_uri, str(tmp_path / "train"), str(tmp_path / "val"), "part-00000", cfg)
    source = {r["id"]: r["text"] for r in lake.read_shard(shard).to_pylist()}
    seen = {}
    for split in ("train", "val"):
        table = read_split(str(tmp_path / split), result[split]["shard"]["path"])
        assert (
            table.schema.field("tokens").type == pa.list_(pa.uint16())
            and table.schema.field("count").type == pa.int32()
        )
        for row in table.to_pylist():
            assert tok.decode(row["tokens"]) == source[row["id"]] and row["count"] == len(row["tokens"])
            assert is_validation(row["id"], 0.2) == (split == "val")
            seen[row["id"]] = split
        assert result[split]["documents"] == table.num_rows == result[split]["shard"]["rows"]
        assert (
            result[split]["shard"]["sha256"]
            == hashlib.sha256((tmp_path / split / result[split]["shard"]["path"]).read_bytes()).hexdigest()
        )
        assert result[split]["tokens"] == sum(table.column("count").to_pylist())
    assert set(seen) == {i for i, t in source.items() if t}  # every document once; empty ones skipped
    assert result["train"]["skipped_empty"] + result["val"]["skipped_empty"] == 2
    assert result["val"]["documents"] > 0 and result["train"]["documents"] > 0


def test_token_shards_stream_in_batches_and_are_deterministic(tmp_path, trained):
    clean, tok_uri = trained
    shard = lake.shard_uris(clean)[0]

    def run(name: str, batch_docs: int) -> str:
        cfg = TokenizeConfig(val_fraction=0.2, batch_docs=batch_docs)
        result = tokenize_shard.fn(
            shard, tok_uri, str(tmp_path / name / "train"), str(tmp_path / name / "val"), "part-00000", cfg
        )
        return str(tmp_path / name / "train" / result["train"]["shard"]["path"])

    small, again, large = run("a", 5), run("b", 5), run("c", 10_000)
    assert open(small, "rb").read() == open(again, "rb").read()  # identical bytes on a re-run
    assert pq.read_table(small).equals(pq.read_table(large))  # the batch size changes nothing but memory
    meta = pq.ParquetFile(small).metadata  # written batch by batch: no row group above batch_docs
    assert meta.num_row_groups > 3 and all(meta.row_group(i).num_rows <= 5 for i in range(meta.num_row_groups))


def test_token_type_is_the_smallest_that_fits():
    assert token_type(65_536) == pa.uint16()
    assert token_type(65_537) == pa.uint32()


# -- the flows on a real Prefect server --------------------------------------------------


@pytest.mark.slow
def test_tokenizer_then_tokenize_flows_end_to_end_with_cache_hits(prefect_server, lake_root, texts):
    from prefect.artifacts import Artifact

    from flows.tokenize import tokenize
    from flows.tokenizer import tokenizer
    from tasks.config import LakeConfig

    lake_cfg = LakeConfig(root=lake_root)
    clean = write_clean(lake.join(lake_root, "curated", "test", "clean"), texts[:80], shards=3)
    tok_stats = tokenizer(lake=lake_cfg, config=SMALL, crawl="test", holdout=0.1)
    assert tok_stats["uri"] == lake.join(lake_root, "tokenizers", "t") and tok_stats["documents_seen"] == 80

    cfg = TokenizeConfig(val_fraction=0.1, batch_docs=16)
    out = tokenize(lake=lake_cfg, config=cfg, tokenizer="t", crawl="test")
    train_m = lake.manifest(out["train"]["uri"])
    val_m = lake.manifest(out["val"]["uri"])
    assert out["train"]["uri"] == lake.join(lake_root, "tokens", "t", "test", "train")
    assert len(train_m.shards) == len(val_m.shards) == 3 and train_m.kind == "tokens"
    assert train_m.rows + val_m.rows == 80 and val_m.rows == sum(is_validation(record_id(i), 0.1) for i in range(80))
    assert train_m.parents == sorted([lake.normalize(clean), tok_stats["uri"]])
    assert (
        train_m.stats["tokens"]
        == out["train"]["tokens"]
        == int(lake.scan(out["train"]["uri"]).select("count").sum().collect().item())
    )
    assert train_m.stats["dtype"] == "uint16" and 2 < train_m.stats["bytes_per_token"] < 8
    table = json.loads(Artifact.get("tokenize-counts").data)
    total = next(r for r in table if r["shard"] == "total" and r["split"] == "train")
    assert total["tokens"] == train_m.stats["tokens"] and len(table) == 2 * 3 + 2
    assert "<|assistant_end|>" in Artifact.get("tokenizer-report").data

    # A re-run on the same inputs is all cache hits: no shard is rewritten.
    fs, _ = lake.filesystem(out["train"]["uri"])
    before = {
        p: fs.info(p).get("mtime") or fs.info(p).get("LastModified") for p in lake.shard_uris(out["train"]["uri"])
    }
    again = tokenize(lake=lake_cfg, config=cfg, tokenizer="t", crawl="test")
    assert again == out
    assert {p: fs.info(p).get("mtime") or fs.info(p).get("LastModified") for p in before} == before


def test_tokenize_without_a_tokenizer_says_so(prefect_server, tmp_path, texts):
    from flows.tokenize import tokenize
    from tasks.config import LakeConfig

    root = str(tmp_path / "lake")
    write_clean(lake.join(root, "curated", "test", "clean"), texts[:5], shards=1)
    with pytest.raises(lake.DatasetNotFound, match="tokenizers/nope"):
        tokenize(lake=LakeConfig(root=root), tokenizer="nope", crawl="test")


@pytest.mark.slow
def test_cli_trains_and_tokenizes_with_the_preset_and_flags(prefect_server, tmp_path, texts):
    from prefect.settings import PREFECT_API_URL
    from typer.testing import CliRunner

    from flows.cli import app

    root = str(tmp_path / "lake")
    write_clean(lake.join(root, "curated", "mycrawl", "clean"), texts[:40], shards=2)
    env = {"PREFECT_API_URL": PREFECT_API_URL.value()}
    runner = CliRunner()
    trained = runner.invoke(
        app, ["tokenizer", "--lake", root, "--crawl", "mycrawl", "--vocab-size", "1024", "--name", "cli"], env=env
    )
    assert trained.exit_code == 0, trained.output
    assert json.loads(trained.output)["vocab_size"] == 1024
    clean = lake.join(root, "curated", "mycrawl", "clean")
    encoded = runner.invoke(
        app,
        ["tokenize", "--lake", root, "--clean", clean, "--tokenizer", "cli", "--set", "tokenize.val_fraction=0.25"],
        env=env,
    )
    assert encoded.exit_code == 0, encoded.output
    out = json.loads(encoded.output)
    assert out["train"]["uri"] == lake.join(root, "tokens", "cli", "mycrawl", "train")  # crawl read off the clean URI
    assert out["train"]["documents"] + out["val"]["documents"] == 40
    assert out["val"]["documents"] == sum(is_validation(record_id(i), 0.25) for i in range(40))


def write_articles_warc(path, shared_data, n: int) -> None:
    """A WARC of the first `n` extraction-benchmark pages: real English (and other) news HTML."""
    import gzip
    import io

    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    bench = shared_data / "extraction-benchmark"
    truth = json.loads((bench / "ground-truth.json").read_text())
    with open(path, "wb") as f:
        writer = WARCWriter(f, gzip=True)
        for key in sorted(truth)[:n]:
            html = gzip.decompress((bench / "html" / f"{key}.html.gz").read_bytes())
            http = StatusAndHeaders("200 OK", [("Content-Type", "text/html; charset=utf-8")], protocol="HTTP/1.1")
            writer.write_record(
                writer.create_warc_record(truth[key]["url"], "response", payload=io.BytesIO(html), http_headers=http)
            )


@pytest.mark.slow
def test_pipeline_curates_real_pages_then_trains_and_tokenizes(prefect_server, shared_data, tmp_path):
    from prefect import flow

    from flows.curate import curate
    from flows.tokenize import tokenize
    from flows.tokenizer import tokenizer
    from tasks.config import load_config

    crawl = tmp_path / "crawls" / "news"
    crawl.mkdir(parents=True)
    write_articles_warc(crawl / "articles.warc.gz", shared_data, 30)
    overrides = {
        "lake.root": str(tmp_path / "lake"),
        "curate.extract.extractor": "resiliparse",
        "tokenizer.vocab_size": 1024,
    }
    cfg = load_config("tiny", overrides)

    @flow
    def curate_then_tokenize() -> dict:  # the pipeline's first stages, as it wires them
        out = {"curate": curate(warcs=[str(crawl / "*.warc.gz")], lake=cfg.lake, config=cfg.curate, dedup=cfg.dedup)}
        clean, name = out["curate"]["clean_uri"], out["curate"]["crawl"]
        out["tokenizer"] = tokenizer(
            lake=cfg.lake, config=cfg.tokenizer, clean=clean, holdout=cfg.tokenize.val_fraction
        )
        out["tokenize"] = tokenize(
            lake=cfg.lake, config=cfg.tokenize, tokenizer=out["tokenizer"]["uri"], clean=clean, crawl=name
        )
        return out

    out = curate_then_tokenize()
    clean = {r["id"]: r["text"] for r in lake.scan(out["curate"]["clean_uri"]).collect().to_dicts()}
    assert len(clean) >= 10 and out["tokenizer"]["documents_seen"] == len(clean)
    tok = Tokenizer.load(out["tokenizer"]["uri"])
    rows = []
    for split in ("train", "val"):
        assert lake.manifest(out["tokenize"][split]["uri"]).parents == sorted(
            [out["curate"]["clean_uri"], out["tokenizer"]["uri"]]
        )
        rows += lake.scan(out["tokenize"][split]["uri"]).collect().to_dicts()
    assert sorted(r["id"] for r in rows) == sorted(clean)  # every curated document, once
    assert all(tok.decode(r["tokens"]) == clean[r["id"]] for r in rows)  # exactly its text
