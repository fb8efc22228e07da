"""tasks/search.py and the search-index flow: passages, the index in the lake (local and S3),
retrieval on real articles, and the flow on a real Prefect server."""

from __future__ import annotations

import json
import re

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models import lake
from models.tools import INDEX_FILE, SearchIndex
from tasks.search import SearchConfig, build_index, passages, split_shard, title_of

CLEAN_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("url", pa.string()),
        ("date", pa.string()),
        ("crawl", pa.string()),
        ("warc", pa.string()),
        ("text", pa.string()),
        ("language", pa.string()),
        ("language_score", pa.float32()),
    ]
)


@pytest.fixture(scope="module")
def pages(shared_data) -> list[tuple[str, str]]:
    """(url, text) of the 181 real articles of the extraction benchmark."""
    truth = json.loads((shared_data / "extraction-benchmark" / "ground-truth.json").read_text())
    return [(truth[k]["url"], truth[k]["articleBody"]) for k in sorted(truth)]


def write_clean(uri: str, pages: list[tuple[str, str | None]], shards: int) -> str:
    size = -(-len(pages) // shards)
    tables = []
    for start in range(0, len(pages), size):
        chunk = pages[start : start + size]
        n = len(chunk)
        tables.append(
            pa.table(
                {
                    "id": [f"<urn:uuid:{start + i:08d}>" for i in range(n)],
                    "url": [u for u, _ in chunk],
                    "date": ["2019-11-19T00:00:00Z"] * n,
                    "crawl": ["news"] * n,
                    "warc": ["crawls/news/a.warc.gz"] * n,
                    "text": [t for _, t in chunk],
                    "language": ["en"] * n,
                    "language_score": [0.9] * n,
                },
                schema=CLEAN_SCHEMA,
            )
        )
    lake.write_dataset(uri, tables, kind="curated")
    return uri


def build(root: str, pages, config: SearchConfig, shards: int = 3) -> tuple[str, dict]:
    """The flow's two steps, called as plain functions."""
    clean = write_clean(lake.join(root, "curated", "news", "clean"), pages, shards)
    out = lake.join(root, "search", "news")
    parts = [split_shard.fn(s, out, f"part-{i:05d}", config) for i, s in enumerate(lake.shard_uris(clean))]
    return out, build_index.fn(clean, out, parts, config)


# -- passages ----------------------------------------------------------------------------


def test_passages_pack_whole_paragraphs_up_to_the_limit():
    text = "First para.\n\nSecond para here.\nThird.\n\n\n" + "Long sentence one. " * 3 + "\nEnd."
    out = passages(text, 40)
    assert out[0] == "First para.\nSecond para here.\nThird."  # 36 chars: three paragraphs fit
    assert all(len(p) <= 40 for p in out)
    assert out[-1].endswith("End.")


def test_a_paragraph_too_long_is_cut_at_sentences_then_spaces():
    paragraph = "One two three. Four five six seven eight nine ten eleven twelve. Short."
    assert passages(paragraph, 20) == [
        "One two three.",
        "Four five six seven",
        "eight nine ten",
        "eleven twelve.",
        "Short.",
    ]
    assert passages("x" * 45, 20) == ["x" * 20, "x" * 20, "x" * 5]  # no space: cut anyway


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet=st.sampled_from("ab .!?\n\t"), max_size=400), limit=st.integers(5, 60))
def test_passages_lose_nothing_but_whitespace_and_respect_the_limit(text, limit):
    out = passages(text, limit)
    assert all(0 < len(p) <= limit for p in out)
    assert "".join("".join(out).split()) == "".join(text.split())


def test_titles_come_from_a_heading_line_or_the_url():
    assert title_of("Lake Varn\nLake Varn is deep.", "https://x.org/a") == ("Lake Varn", "Lake Varn is deep.")
    # A first line that is a sentence, or the only line, is body text: the title is the URL's.
    assert (
        title_of("It rained all day.\nThen it stopped.", "https://x.org/wiki/Old_Mill-history.html")[0]
        == "Old Mill history"
    )
    assert title_of("Only one line", "https://news.example.com/")[0] == "news.example.com"
    assert title_of("x", "https://n.in/fact-check-oxygen-bar-244592.html")[0] == "fact check oxygen bar"
    assert title_of("x", "https://n.in/a/2019_12345_top-10")[0] == "2019 top 10"


# -- the index in the lake ---------------------------------------------------------------


def test_the_index_is_built_in_the_lake_and_finds_each_article(lake_root, pages, tmp_path):
    config = SearchConfig(passage_chars=400, batch_docs=50)
    docs = pages[:60]
    out, stats = build(lake_root, docs + [("https://empty.example.com/", "  \n ")], config)
    manifest = lake.manifest(out)
    assert manifest.kind == "search-index" and manifest.parents == [lake.join(lake_root, "curated", "news", "clean")]
    assert all(s.sha256 for s in manifest.shards)  # the passages' content identity
    assert stats["documents"] == 60 and stats["skipped_empty"] == 1 and manifest.rows == stats["passages"] > 60
    frame = lake.scan(out).collect()  # the passages are an ordinary dataset
    assert frame["text"].str.len_chars().max() <= 400 and set(frame["url"]) == {u for u, _ in docs}

    index = SearchIndex.open(out, cache_dir=tmp_path / "cache")  # on S3: downloaded into the cache
    assert len(index) == stats["passages"]
    if lake.is_remote(out):
        assert list((tmp_path / "cache").rglob(INDEX_FILE))
    # Retrieval: a sentence-sized query from inside each article finds that article first.
    found = 0
    for url, text in docs:
        sentence = max(re.split(r"(?<=[.!?])\s+", text), key=len)[:200]
        hits = index.search(sentence, k=3)
        found += hits[0].url == url
    assert found / len(docs) >= 0.9


def test_rebuilding_replaces_the_index_and_the_cache_follows_the_manifest(s3_bucket, pages, tmp_path):
    config = SearchConfig()
    out, first = build(s3_bucket, pages[:10], config, shards=1)
    assert len(SearchIndex.open(out, cache_dir=tmp_path)) == first["passages"]
    out, second = build(s3_bucket, pages[:20], config, shards=2)
    assert second["passages"] > first["passages"]
    assert len(SearchIndex.open(out, cache_dir=tmp_path)) == second["passages"]  # not the stale copy


def test_an_index_without_a_manifest_is_not_an_index(s3_bucket, tmp_path):
    with pytest.raises(FileNotFoundError, match="no search index"):
        SearchIndex.open(s3_bucket + "/search/none", cache_dir=tmp_path)


# -- the flow ----------------------------------------------------------------------------


def test_search_index_flow_on_a_real_server(prefect_server, tmp_path, pages):
    from prefect.artifacts import Artifact

    from flows.search_index import search_index
    from tasks.config import LakeConfig

    root = str(tmp_path / "lake")
    write_clean(lake.join(root, "curated", "news", "clean"), pages[:30], shards=2)
    stats = search_index(lake=LakeConfig(root=root), config=SearchConfig(passage_chars=300), crawl="news")
    assert stats["uri"] == lake.join(root, "search", "news") and stats["documents"] == 30
    again = search_index(lake=LakeConfig(root=root), config=SearchConfig(passage_chars=300), crawl="news")
    assert again == stats  # every task a cache hit: same manifest, same stats
    examples = Artifact.get("search-index-examples-news")
    assert examples is not None and "passages" in examples.data
    assert SearchIndex.open(stats["uri"]).search("Delhi air quality", k=1)
    # another config (say another preset's passages) never replaces the index of this one
    before = lake.manifest(stats["uri"]).created_at
    other = search_index(lake=LakeConfig(root=root), config=SearchConfig(passage_chars=600), crawl="news")
    assert other["uri"] == lake.join(root, "search", "news-p600") and other["documents"] == 30
    assert lake.manifest(stats["uri"]).created_at == before and other["passages"] < stats["passages"]
    # ... while a setting that does not shape the passages keeps the index's name
    batched = search_index(
        lake=LakeConfig(root=root), config=SearchConfig(passage_chars=300, batch_docs=7), crawl="news"
    )
    assert batched["uri"] == stats["uri"] and batched["passages"] == stats["passages"]
