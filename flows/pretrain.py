"""Pretrain: token shards in, a base model out.

    tokens/{tokenizer}/{crawl}/train, val + tokenizers/{tokenizer} --train_model (gpu pool)--> checkpoints/{run}/{name}/step-N

Deployed on the `gpu` work pool; the training task holds a slot of the `gpu` concurrency limit
and resumes from the run's newest checkpoint when retried. While it runs, a progress artifact
(`pretrain-progress`) follows the steps; at the end a markdown artifact (`pretrain-report`)
holds the metrics table, the sampled text and the loss curve (a PNG beside the checkpoints).
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from flows.dispatch import hand_back
from models import lake as lakes
from tasks.config import LakeConfig
from tasks.layout import Layout, artifact_key
from tasks.pretrain import PretrainConfig, train_model, write_report
from tasks.runtime import declare, in_lake
from tasks.tracking import TrackingConfig, track


@flow(name="pretrain", log_prints=True)
def pretrain(
    lake: LakeConfig = LakeConfig(),
    config: PretrainConfig = PretrainConfig(),
    tokenizer: str = "bpe-4k",
    tokens: list[str] | None = None,
    resume: bool = False,
    run: str | None = None,
    tracking: TrackingConfig = TrackingConfig(),
) -> dict[str, Any]:
    """Train `checkpoints/{run}/{config.name}` (`checkpoints/{config.name}` without a run) on
    `tokens` (folders `tokens/{tokenizer}/{crawl}` holding train/ and val/) with `tokenizer`
    (a name under tokenizers/ or a URI). A run of the same configuration on the same data
    resumes by itself; `resume` continues one of another configuration (say, more steps);
    without it such a run moves aside to `{name}-{its hashes}` and a new run starts."""
    root = lake.open()
    layout = Layout(root)
    tok_uri = tokenizer if layout.is_uri(tokenizer) else layout.tokenizer(None, tokenizer)
    lakes.manifest(tok_uri)  # a clear error now when the tokenizer was never trained
    if not tokens:
        raise ValueError("no tokens to train on: give the token folders (tokens/{tokenizer}/{crawl})")
    train_data = [lakes.join(t, "train") for t in tokens]
    val_data = [lakes.join(t, "val") for t in tokens]
    for uri in train_data + val_data:
        lakes.manifest(uri)
    folder = layout.checkpoints(run, config.name)

    summary = in_lake(root, train_model)(train_data, val_data, tok_uri, folder, config, resume)
    declare(summary["checkpoint"])
    mlflow_run = track(tracking, "pretrain", summary["checkpoint"])

    markdown, curve_uri = write_report(folder, summary)
    create_markdown_artifact(markdown, key=artifact_key("pretrain-report", run), description=f"pretraining {folder}")
    print(
        f"{config.name}: val {summary['val_bpb']:.4f} bits/byte (unigram {summary['unigram_bpb']:.4f}), "
        f"{summary['tokens_per_s']:,.0f} tokens/s; {summary['checkpoint']}"
    )
    tracked = {"mlflow_run": mlflow_run} if mlflow_run else {}
    return hand_back(root, {"run": folder, "loss_curve": curve_uri, **summary, **tracked})
