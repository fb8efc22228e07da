"""The curate stage's Prefect tasks: one per WARC file, then one per shard after dedup.

- `curate_warc`: read -> url -> extract -> language -> Gopher -> C4 -> FineWeb -> custom over
  one WARC file; writes its kept documents (pre-PII) as a shard of `curated/{crawl}/filtered`
  and its removed ones as a shard of `curated/{crawl}/removed`.
- `quality_shard` (when `quality.model` is set): scores every filtered document with the
  quality model (tasks/curate/quality.py), keeps those at or above the threshold as a shard of
  `curated/{crawl}/quality`, moves the rest to `removed` with step `quality`; every row
  carries its `quality_score`. Its config is its own, so a new threshold re-runs this task
  and what follows it, never the extraction.
- `finalize_shard`: drops the ids the dedup stage listed (moving them to `removed` with their
  step and reason), scrubs PII, writes the shard of `curated/{crawl}/clean`.

Both check that nothing is lost: documents in = kept + removed, per shard.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
import time
from typing import Any

import pyarrow as pa

from models import lake
from tasks.curate import quality
from tasks.curate.chain import Chain, Funnel, Outcome
from tasks.curate.config import CurateConfig, PiiConfig, QualityConfig
from tasks.curate.pii import PiiScrubber
from tasks.runtime import lake_task

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
        (
            "quality_score",
            pa.float32(),
        ),  # the quality step's score; null when the step is off or removed the doc earlier
    ]
)
REMOVED_SCHEMA = CLEAN_SCHEMA.append(pa.field("step", pa.string())).append(pa.field("reason", pa.string()))
DEDUP_STEPS = ("dedup_exact", "dedup_minhash")
CODE = ("tasks.curate",)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def shard_name(warc: str) -> str:
    """A stable, readable shard name for a WARC file: its stem plus a hash of its full URI."""
    stem = warc.rstrip("/").rsplit("/", 1)[-1]
    for suffix in (".gz", ".warc"):
        stem = stem.removesuffix(suffix)
    digest = hashlib.sha256(lake.normalize(warc).encode()).hexdigest()[:8]
    return f"{_UNSAFE.sub('-', stem)[:80]}-{digest}"


def _table(rows: list[Outcome], crawl: str, warc: str, schema: pa.Schema) -> pa.Table:
    columns: dict[str, list[Any]] = {
        "id": [r.id for r in rows],
        "url": [r.url for r in rows],
        "date": [r.date for r in rows],
        "crawl": [crawl] * len(rows),
        "warc": [warc] * len(rows),
        "text": [r.text for r in rows],
        "language": [r.language for r in rows],
        "language_score": [r.language_score for r in rows],
        "quality_score": [None] * len(rows),
    }
    if "step" in schema.names:
        columns["step"] = [r.step for r in rows]
        columns["reason"] = [r.reason for r in rows]
    return pa.table(columns, schema=schema)


def curate_warc_fn(warc: str, filtered_uri: str, removed_uri: str, crawl: str, config: CurateConfig) -> dict[str, Any]:
    """Run the chain over one WARC file and write its two shards (the task's logic)."""
    funnel = Funnel(config.examples_per_step)
    kept: list[Outcome] = []
    removed: list[Outcome] = []
    for outcome in Chain(config).run(warc, funnel):
        (removed if outcome.step else kept).append(outcome)
    name = shard_name(warc)
    filtered_shard = lake.write_shard(filtered_uri, name, _table(kept, crawl, warc, CLEAN_SCHEMA))
    removed_shard = lake.write_shard(removed_uri, f"{name}-filters", _table(removed, crawl, warc, REMOVED_SCHEMA))
    docs_in = len(kept) + len(removed)
    records = funnel.extra.get("records_response", 0) + sum(v for k, v in funnel.extra.items() if k.startswith("file_"))
    if docs_in != records or filtered_shard.rows + removed_shard.rows != docs_in:
        raise RuntimeError(f"{warc}: {records} documents in, {filtered_shard.rows} kept + {removed_shard.rows} removed")
    return {
        "warc": warc,
        "name": name,
        "docs_in": docs_in,
        "filtered": dataclasses.asdict(filtered_shard),
        "removed": dataclasses.asdict(removed_shard),
        "funnel": funnel.to_dict(),
    }


@lake_task(inputs=("warc",), code=CODE, task_run_name="curate-{warc}")
def curate_warc(warc: str, filtered_uri: str, removed_uri: str, crawl: str, config: CurateConfig) -> dict[str, Any]:
    return curate_warc_fn(warc, filtered_uri, removed_uri, crawl, config)


def quality_shard_fn(
    filtered_shard: str, name: str, quality_uri: str, removed_uri: str, config: QualityConfig
) -> dict[str, Any]:
    """Score one filtered shard, write its kept and removed rows (the task's logic)."""
    rows = lake.read_shard(filtered_shard).to_pylist()
    scorer = quality.scorer(config)
    started = time.perf_counter()
    scores = scorer.score([r["text"] for r in rows])
    seconds = time.perf_counter() - started
    funnel = Funnel()
    histogram = quality.Histogram.for_scorer(config, scorer.range)
    kept: list[dict[str, Any]] = []
    removed: list[dict[str, Any]] = []
    for row, score in zip(rows, scores.tolist()):
        row["quality_score"] = score
        histogram.add(score)
        chars = len(row["text"])
        if score >= config.threshold:
            funnel.passed("quality", chars, chars)
            kept.append(row)
        else:
            reason = "no_score" if math.isnan(score) else "below_threshold"
            funnel.dropped("quality", chars, reason, row["url"], row["text"])
            removed.append({**row, "step": "quality", "reason": reason})
    funnel.step("quality").seconds = seconds
    funnel.histograms["quality"] = histogram.counts
    kept_shard = lake.write_shard(quality_uri, name, pa.Table.from_pylist(kept, schema=CLEAN_SCHEMA))
    removed_shard = lake.write_shard(
        removed_uri, f"{name}-quality", pa.Table.from_pylist(removed, schema=REMOVED_SCHEMA)
    )
    if kept_shard.rows + removed_shard.rows != len(rows):
        raise RuntimeError(f"{filtered_shard}: {len(rows)} in, {kept_shard.rows} kept + {removed_shard.rows} removed")
    return {
        "name": name,
        "kept": dataclasses.asdict(kept_shard),
        "removed": dataclasses.asdict(removed_shard),
        "funnel": funnel.to_dict(),
    }


@lake_task(inputs=("filtered_shard",), code=CODE, task_run_name="quality-{name}")
def quality_shard(
    filtered_shard: str, name: str, quality_uri: str, removed_uri: str, config: QualityConfig, model_id: str
) -> dict[str, Any]:
    """`model_id` (`quality.resolve(config).identity`) is for the cache key: a retrained model
    under the same path is a new model."""
    return quality_shard_fn(filtered_shard, name, quality_uri, removed_uri, config)


def _dedup_removals(dedup_uri: str | None, name: str) -> dict[str, tuple[str, str]]:
    """id -> (step, reason) for this shard's documents that dedup removes: its shard of the
    removal dataset (same name as the filtered shard), cluster and kept id folded into the reason."""
    if not dedup_uri:
        return {}
    from tasks.dedup.apply import removals

    out: dict[str, tuple[str, str]] = {}
    for row in removals(dedup_uri, name).to_pylist():
        step = row.get("step") or "dedup_minhash"
        if step not in DEDUP_STEPS:
            raise ValueError(f"dedup removal step must be one of {DEDUP_STEPS}, got {step!r}")
        detail = ", ".join(f"{c}={row[c]}" for c in ("cluster", "kept_id") if row.get(c) is not None)
        reason = row.get("reason") or "duplicate"
        out[row["id"]] = (step, f"{reason} ({detail})" if detail else reason)
    return out


def finalize_shard_fn(
    filtered_shard: str, name: str, clean_uri: str, removed_uri: str, dedup_uri: str | None, pii: PiiConfig
) -> dict[str, Any]:
    table = lake.read_shard(filtered_shard)
    removals = _dedup_removals(dedup_uri, name)
    funnel = Funnel()
    scrub = PiiScrubber(pii)
    clean_rows: list[dict[str, Any]] = []
    removed_rows: list[dict[str, Any]] = []
    changed = 0
    for row in table.to_pylist():
        hit = removals.get(row["id"])
        if hit:
            funnel.dropped(hit[0], len(row["text"] or ""), hit[1].split(" (")[0], row["url"], row["text"])
            removed_rows.append({**row, "step": hit[0], "reason": hit[1]})
            continue
        for step in DEDUP_STEPS if dedup_uri else ():
            funnel.passed(step, len(row["text"]), len(row["text"]))
        text = scrub(row["text"])
        changed += text != row["text"]
        funnel.passed("pii", len(row["text"]), len(text))
        clean_rows.append({**row, "text": text})
    clean = lake.write_shard(clean_uri, name, pa.Table.from_pylist(clean_rows, schema=CLEAN_SCHEMA))
    removed = lake.write_shard(removed_uri, f"{name}-dedup", pa.Table.from_pylist(removed_rows, schema=REMOVED_SCHEMA))
    if clean.rows + removed.rows != table.num_rows:
        raise RuntimeError(f"{filtered_shard}: {table.num_rows} in, {clean.rows} clean + {removed.rows} removed")
    funnel.extra.update({f"pii_{k}": v for k, v in scrub.counts.items()})
    funnel.extra["pii_docs_changed"] = changed
    return {
        "name": name,
        "clean": dataclasses.asdict(clean),
        "removed": dataclasses.asdict(removed),
        "funnel": funnel.to_dict(),
    }


@lake_task(inputs=("filtered_shard", "dedup_uri"), code=CODE, task_run_name="finalize-{name}")
def finalize_shard(
    filtered_shard: str, name: str, clean_uri: str, removed_uri: str, dedup_uri: str | None, pii: PiiConfig
) -> dict[str, Any]:
    return finalize_shard_fn(filtered_shard, name, clean_uri, removed_uri, dedup_uri, pii)
