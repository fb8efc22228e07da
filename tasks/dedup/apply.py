"""Dropping dedup's removals from a shard: what the curate flow's finalize task calls.

The `remove` dataset has one shard per input shard, with the same name, so finalizing shard
`part-00003` reads only the removal shard of that name (a few columns, only the
removed rows), never the whole removal list.
"""

from __future__ import annotations

import polars as pl
import pyarrow as pa

from models import lake
from tasks.dedup.stages import REMOVE_SCHEMA


def removals(remove_uri: str, shard: str) -> pa.Table:
    """The removal rows (id, step, reason, cluster, kept_id) of one input shard, by its name
    (`part-00003` or `part-00003.parquet`); empty when dedup removed nothing there."""
    try:
        uri = lake.shard_uri(remove_uri, lake.shard_name(shard))
    except KeyError as exc:
        raise KeyError(f"{exc.args[0]}: was it deduplicated from the same input?") from None
    return lake.read_shard(uri).cast(REMOVE_SCHEMA)


def split_removed(docs: pa.Table, removed: pa.Table) -> tuple[pa.Table, pa.Table]:
    """(kept documents, removed documents + step and reason), matched by id, in input order."""
    frame = pl.from_arrow(docs)
    why = pl.from_arrow(removed.select(["id", "step", "reason"]))
    kept = frame.join(why, on="id", how="anti", maintain_order="left")
    gone = frame.join(why, on="id", how="inner", maintain_order="left")
    with_why = docs.schema.append(pa.field("step", pa.string())).append(pa.field("reason", pa.string()))
    return kept.to_arrow().cast(docs.schema), gone.to_arrow().cast(with_why)
