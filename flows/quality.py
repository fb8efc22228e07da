"""`crawl2chat quality train`: a fastText quality classifier from your reference texts against
a curated crawl (tasks/quality_train.py), committed as `quality/{name}` in the lake: the model
file, the held-out precision/recall table (a shard, the manifest's stats, a Prefect artifact
and `report.md`). The curate flow uses it with `--set quality.model=<lake>/quality/{name}`.
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from models import lake as lakes
from tasks.config import LakeConfig
from tasks.curate.quality import TRAINED_KIND
from tasks.layout import Layout
from tasks.quality_train import CODE, QualityTrainConfig, train_quality_model
from tasks.runtime import code_version, config_hash, declare, flow_run_id, in_lake
from tasks.sft.schema import dataset_files


def _pct(value: float | None) -> str:
    return "not measured: nothing kept" if value is None else f"{100 * value:.1f}%"


def report_markdown(uri: str, stats: dict[str, Any]) -> str:
    lines = [
        f"# Quality classifier: {uri}",
        "",
        f"- positives: {stats['positives']} ({stats['train']['positives']} train, {stats['held_out']['positives']} held out); skipped {stats['positives_skipped'] or 'none'}",
        f"- negatives: {stats['negatives']} sampled from {stats['negatives_from']} ({stats['train']['negatives']} train, {stats['held_out']['negatives']} held out)",
        f"- held-out ROC AUC: {stats['roc_auc']:.3f}",
        f"- model: {stats['model_file']} ({stats['model_bytes'] / 1e6:.1f} MB, {stats['trainer']}, {stats['train_seconds']} s)",
        "",
        "Held out: a document is kept when its score (P(hq)) >= the threshold.",
        "",
        "| threshold | precision | recall | F1 | web documents kept |",
        "|---|---|---|---|---|",
    ]
    for row in stats["heldout"]:
        lines.append(
            f"| {row['threshold']:g} | {_pct(row['precision'])} | {_pct(row['recall'])} | {row['f1']:.3f} | {_pct(row['negatives_kept'])} |"
        )
    return "\n".join(lines) + "\n"


@flow(name="quality-train", log_prints=True)
def quality_train(
    positives: list[str],
    lake: LakeConfig = LakeConfig(),
    config: QualityTrainConfig = QualityTrainConfig(),
    crawl: str | None = None,
    negatives: str | None = None,
) -> dict[str, Any]:
    """Train on `positives` (JSONL/Parquet files, globs or lake datasets with a text column)
    against documents of `negatives` (default `curated/{crawl}/clean`)."""
    root = lake.open()
    if not positives:
        raise ValueError("no positives given")
    if negatives is None:
        if crawl is None:
            raise ValueError("give the crawl to sample negatives from (or a clean dataset URI)")
        negatives = Layout(root).curated(crawl).clean
    if not lakes.exists(negatives):
        raise FileNotFoundError(f"no curated dataset at {negatives}: curate a crawl first")
    inputs: list[str] = []  # a lake dataset stays one input (its manifest is its identity); a glob becomes its files
    for uri in positives:
        inputs += [lakes.normalize(uri)] if lakes.exists(uri) else dataset_files(uri)
    out = Layout(root).quality_model(config.name)
    result = in_lake(root, train_quality_model)(inputs, lakes.normalize(negatives), out, config)
    stats = {**result["stats"], "negatives_from": lakes.normalize(negatives)}
    lakes.commit(
        out,
        [lakes.Shard(**result["shard"])],
        kind=TRAINED_KIND,
        flow_run_id=flow_run_id(),
        parents=[*inputs, negatives],
        stats=stats,
        config_hash=config_hash(config),
        code_version=code_version(*CODE),
    )
    declare(out)
    report = report_markdown(out, stats)
    lakes.write_text_atomic(lakes.join(out, "report.md"), report)
    create_table_artifact(
        key="quality-heldout",
        table=stats["heldout"],
        description=f"Quality classifier {config.name}: held-out precision/recall",
    )
    create_markdown_artifact(key="quality-report", markdown=report, description=f"Quality classifier {config.name}")
    print(report)
    return {
        "uri": out,
        **{k: stats[k] for k in ("positives", "negatives", "held_out", "roc_auc", "heldout", "model_file")},
    }
