"""Deduplication as FineWeb does it, over Parquet in the lake, one Prefect task per shard/band.

- `minhash`: normalisation, word shingles, datasketch MinHash for a batch at a time, band hashes.
- `clusters`: groups of equal keys → candidate pairs; union-find; the keep rule.
- `stages`: the Prefect tasks (signatures, exact, buckets, clusters, removals) and the scopes.
- `report`: stats and the run's markdown artifacts.
- `apply`: what the curate flow calls to drop the removed documents from one shard.

`flows/dedup.py` chains the stages; the curate flow calls it between the filters and PII.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from tasks.runtime import StageConfig


class DedupConfig(StageConfig):
    """FineWeb's MinHash parameters (datatrove `MinhashConfig` as examples/fineweb.py sets it)
    and where duplicates are looked for."""

    scope: Literal["crawl", "lake", "index"] = Field(
        "crawl",
        description="crawl: within this crawl (FineWeb's choice); lake: against every crawl's signatures in "
        "the lake, earliest fetch kept globally; index: against the index of documents kept by earlier runs "
        "(dedup/index/{crawl}, one part per crawl), to which this crawl's kept documents are then added",
    )
    exact: bool = Field(True, description="Drop exact duplicates (same normalised text) before MinHash")
    n_grams: int = Field(5, ge=1, description="Words per shingle")
    bands: int = Field(14, ge=1, description="LSH bands (datatrove num_buckets)")
    rows: int = Field(8, ge=1, description="Minima per band (datatrove hashes_per_bucket); bands x rows permutations")
    seed: int = Field(1, description="Seed of datasketch's permutations; must match across crawls for lake/index scope")
    splits: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        "auto",
        description="Tasks per band (and for exact dedup), each over a slice of the hash range: bounds their memory. "
        "auto: enough slices that none holds more than rows_per_task of the compared documents",
    )
    rows_per_task: int = Field(
        4_000_000,
        ge=1,
        description="With splits: auto, the most documents an exact or bucket task takes (~16 bytes each in memory); "
        "every slice re-reads the hash column, so fewer rows per task means more reading",
    )
    batch_size: int = Field(1024, ge=1, description="Documents hashed together in the signature stage")
    examples: int = Field(3, ge=0, description="Duplicate clusters shown side by side in the run's artifact")

    @property
    def num_perm(self) -> int:
        return self.bands * self.rows

    def splits_for(self, rows: int) -> int:
        """Slices of the hash range for `rows` compared documents (the new ones: index rows
        stream past a task and cost reading, not memory)."""
        return self.splits if self.splits != "auto" else max(1, -(-rows // self.rows_per_task))

    def signature_params(self) -> dict[str, int]:
        """What a signature depends on: signatures (and the index) are comparable across
        runs exactly when these match."""
        return {"n_grams": self.n_grams, "bands": self.bands, "rows": self.rows, "seed": self.seed}
