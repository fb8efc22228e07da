"""The end-to-end pipeline: a crawl in, a chat assistant out.

Each stage is a subflow here on the embedded default; stage issues plug their stage in below,
so `make demo` always runs everything that exists.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.sample_crawl import sample_crawl
from tasks.config import PipelineConfig


@flow(name="pipeline", log_prints=True)
def pipeline(config: PipelineConfig = PipelineConfig(), warcs: list[str] | None = None) -> dict[str, Any]:
    """Curate `warcs` (URIs or globs; the sample crawl when empty) and train on the result."""
    out: dict[str, Any] = {}
    if not warcs:
        out["sample_crawl"] = sample_crawl(lake=config.lake, config=config.sample_crawl)
        warcs = out["sample_crawl"]["warcs"]
    return out
