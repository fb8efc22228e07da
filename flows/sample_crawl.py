"""Placeholder until the sample-crawl generator lands (tasks/sample_crawl)."""

from __future__ import annotations

from prefect import flow

from tasks.config import LakeConfig, SampleCrawlConfig


@flow(name="sample-crawl")
def sample_crawl(lake: LakeConfig = LakeConfig(), config: SampleCrawlConfig = SampleCrawlConfig()) -> dict:
    raise NotImplementedError("the sample crawl generator is being written")
