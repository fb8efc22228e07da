"""Pretrain: token shards in, a base model out.

    tokens/{tokenizer}/{crawl}/train, val + tokenizers/{tokenizer} --train_model (gpu pool)--> checkpoints/{name}/step-N

Deployed on the `gpu` work pool; the training task holds a slot of the `gpu` concurrency limit
and resumes from the run's newest checkpoint when retried. While it runs, a progress artifact
(`pretrain-progress`) follows the steps; at the end a markdown artifact (`pretrain-report`)
holds the metrics table, the sampled text and the loss curve (a PNG beside the checkpoints).
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from flows.dispatch import record_result
from tasks import lake as lakes
from tasks.config import LakeConfig
from tasks.pretrain import PretrainConfig, train_model, write_report
from tasks.runtime import declare, in_lake
from tasks.tracking import TrackingConfig, track


@flow(name="pretrain", log_prints=True, on_completion=[record_result])
def pretrain(
    lake: LakeConfig = LakeConfig(),
    config: PretrainConfig = PretrainConfig(),
    tokenizer: str = "bpe-4k",
    tokens: list[str] | None = None,
    resume: bool = False,
    tracking: TrackingConfig = TrackingConfig(),
) -> dict[str, Any]:
    """Train `checkpoints/{config.name}` on `tokens` (folders `tokens/{tokenizer}/{crawl}`
    holding train/ and val/; default the sample crawl's) with `tokenizer` (a name under
    tokenizers/ or a URI). A run of the same configuration on the same data resumes by
    itself; `resume` continues one of another configuration (say, more steps); without it
    such a run moves aside to checkpoints/{name}-{its hashes} and a new run starts."""
    root = lake.open()
    tok_uri = tokenizer if "/" in tokenizer else lakes.join(root, "tokenizers", tokenizer)
    lakes.manifest(tok_uri)  # a clear error now when the tokenizer was never trained
    tokens = tokens or [lakes.join(root, "tokens", tok_uri.rstrip("/").rsplit("/", 1)[-1], "sample")]
    train_data = [lakes.join(t, "train") for t in tokens]
    val_data = [lakes.join(t, "val") for t in tokens]
    for uri in train_data + val_data:
        lakes.manifest(uri)
    run = lakes.join(root, "checkpoints", config.name)

    summary = in_lake(root, train_model)(train_data, val_data, tok_uri, run, config, resume)
    declare(summary["checkpoint"])
    mlflow_run = track(tracking, "pretrain", summary["checkpoint"])

    markdown, curve_uri = write_report(run, summary)
    create_markdown_artifact(markdown, key="pretrain-report", description=f"pretraining {config.name}")
    print(
        f"{config.name}: val {summary['val_bpb']:.4f} bits/byte (unigram {summary['unigram_bpb']:.4f}), "
        f"{summary['tokens_per_s']:,.0f} tokens/s; {summary['checkpoint']}"
    )
    return {"run": run, "loss_curve": curve_uri, **summary, **({"mlflow_run": mlflow_run} if mlflow_run else {})}
