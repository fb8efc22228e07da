"""Pipeline configuration: one pydantic model per stage, composed into `PipelineConfig`.

Each stage defines its config (a `StageConfig`) beside its tasks; this module composes them.
Flows take these models as parameters, so the Prefect UI renders them as forms and the CLI
and deployments share one schema. Presets live in `configs/{tiny,small,large}.yaml`; a preset
name or a YAML path loads one, and `overrides` (dotted keys) adjust it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, field_validator

from models import lake
from tasks.benchmark import BenchmarkConfig
from tasks.curate.config import CurateConfig, QualityConfig
from tasks.dedup import DedupConfig
from tasks.evaluate import EvalConfig
from tasks.layout import safe_name
from tasks.pretrain import PretrainConfig
from tasks.quality_train import QualityTrainConfig
from tasks.rl import RLConfig
from tasks.runtime import RunnerConfig, StageConfig
from tasks.search import SearchConfig
from tasks.sft import SFTConfig
from tasks.tokenize import TokenizeConfig, TokenizerConfig
from tasks.tracking import TrackingConfig

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


class LakeConfig(StageConfig):
    root: str = Field(
        default_factory=lambda: os.environ.get("CRAWL2CHAT_LAKE", "./lake"),
        description="Lake root: a local folder or s3://bucket/prefix (default: $CRAWL2CHAT_LAKE, else ./lake)",
    )
    s3_endpoint_url: str | None = Field(
        None, description="S3 endpoint (MinIO, a local server); credentials come from AWS_* variables"
    )
    s3_region: str | None = None

    def open(self) -> str:
        """Configure storage for this process and return the lake's normalized root URI."""
        lake.configure_storage(self.s3_endpoint_url, self.s3_region)
        return lake.normalize(self.root)


class SampleCrawlConfig(StageConfig):
    pages: int = Field(400, ge=20, description="Pages in the sample crawl (the size knob)")
    seed: int = 0
    files: int = Field(4, ge=1, description="WARC files to spread the pages over")
    name: str = "sample"


class PipelineConfig(StageConfig):
    preset: str = "tiny"
    run: str | None = Field(
        None,
        description="Names everything the pipeline writes after curation (default: the crawl's name; the crawls' names joined by '_')",
    )
    crawls: list[str] = Field(
        default_factory=list,
        description="Curated crawls to train on, by name ('*': every crawl in the lake); empty: the crawl the pipeline curates",
    )
    lake: LakeConfig = LakeConfig()
    runner: RunnerConfig = RunnerConfig()
    sample_crawl: SampleCrawlConfig = SampleCrawlConfig()
    curate: CurateConfig = CurateConfig()
    quality: QualityConfig = QualityConfig()
    quality_train: QualityTrainConfig = QualityTrainConfig()
    dedup: DedupConfig = DedupConfig()
    tokenizer: TokenizerConfig = TokenizerConfig()
    tokenize: TokenizeConfig = TokenizeConfig()
    search: SearchConfig = SearchConfig()
    pretrain: PretrainConfig = PretrainConfig()
    sft: SFTConfig = SFTConfig()
    evaluate: EvalConfig = EvalConfig()
    rl: RLConfig = RLConfig()
    benchmark: BenchmarkConfig = BenchmarkConfig()
    tracking: TrackingConfig = TrackingConfig()

    @field_validator("run")
    @classmethod
    def _run_is_a_name(cls, run: str | None) -> str | None:
        """A run is a folder under every kind of the lake: "my run" is `my-run` in every
        command, and "a/b" or ".." never reaches another folder."""
        return None if run is None else safe_name(run)

    @field_validator("crawls")
    @classmethod
    def _crawls_are_names(cls, crawls: list[str]) -> list[str]:
        if "*" in crawls and len(crawls) > 1:
            raise ValueError(f"'*' is every crawl in the lake: name no other crawl beside it, not {crawls}")
        return crawls if crawls == ["*"] else [safe_name(c) for c in crawls]

    def default_crawl(self) -> str:
        """The crawl a stage command reads when none is named: the first of `crawls`, else the
        sample crawl (the demo)."""
        return self.crawls[0] if self.crawls and self.crawls[0] != "*" else self.sample_crawl.name


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for part in parents:
        tree = tree.setdefault(part, {})
    tree[leaf] = value


def load_config(preset: str | Path = "tiny", overrides: dict[str, Any] | None = None) -> PipelineConfig:
    """A preset by name (`tiny`) or a YAML file by path, then CRAWL2CHAT_LAKE, then dotted-key
    overrides (the CLI's flags and `--set`)."""
    path = Path(preset)
    if not path.suffix:
        path = CONFIG_DIR / f"{preset}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
        raise FileNotFoundError(f"no config {preset!r}: give a path or one of {known}")
    tree = yaml.safe_load(path.read_text()) or {}
    if os.environ.get("CRAWL2CHAT_LAKE"):  # the environment beats the preset, flags beat both
        _set_dotted(tree, "lake.root", os.environ["CRAWL2CHAT_LAKE"])
    for key, value in (overrides or {}).items():
        _set_dotted(tree, key, value)
    return PipelineConfig.model_validate(tree)
