"""Training metrics to MLflow, beside the lake, when the config asks for it.

    --set tracking.mlflow_uri=./mlruns                 # an MLflow file store (a folder)
    --set tracking.mlflow_uri=sqlite:///mlflow.db      # or any tracking URI: a database, http(s)://server

Off by default, and `mlflow` is an optional extra (`pip install 'crawl2chat[mlflow]'`). After
each training stage (pretrain, SFT, RL) its flow logs one MLflow run: every metric the
trainer recorded, at its step (loss, learning rate, gradient norm, tokens/s, MFU; validation
loss and bits per byte; RL's rewards and held-out pass@1 per iteration), the model and
training settings as parameters, and as tags the lake URIs of the checkpoint, its data,
validation data, tokenizer and parent checkpoint: from an MLflow run one finds the lake's
datasets, and `crawl2chat lineage` goes on from there to the WARC files.

The metrics come from the checkpoint's metrics.json once the stage has finished, so a run
trained by torchrun's processes is logged the same way as one trained in the flow's.
A tracking server that fails does not fail the training: the flow says "not logged: why".
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import Field

from models import storage
from tasks.runtime import StageConfig, log

MAX_METRICS, MAX_PARAMS = 1000, 100  # MLflow's limits per log_batch call
MAX_VALUE = 5000  # characters of a tag or parameter value kept (MLflow rejects longer ones)


class TrackingConfig(StageConfig):
    mlflow_uri: str | None = Field(
        None,
        description="MLflow tracking URI: a folder (file store), sqlite:///file.db or http(s)://server; unset: off",
    )
    experiment: str = Field("crawl2chat", description="MLflow experiment the runs go to")


def tracking_uri(value: str) -> str:
    """A folder becomes a file-store URI (absolute, so every process means the same one)."""
    if "://" in value or value.startswith(("sqlite:", "databricks")):
        return value
    return Path(value).expanduser().resolve().as_uri()


def training_metrics(metrics: dict[str, Any]) -> list[tuple[str, float, int]]:
    """(key, value, step) for every number in a checkpoint's metrics.json: the trainer's
    `train` and `eval` rows, and RL's `updates` (step = the policy step the update made)."""
    out = []
    for section, prefix in (("train", "train/"), ("eval", "")):
        for row in metrics.get(section) or []:
            out += [(prefix + k, float(v), int(row["step"])) for k, v in row.items() if k != "step" and _is_number(v)]
    for row in metrics.get("updates") or []:
        out += [
            (f"rl/{k}", float(v), int(row["iteration"]) + 1)
            for k, v in row.items()
            if k != "iteration" and _is_number(v)
        ]
    if _is_number(metrics.get("unigram_bpb")):
        out.append(("unigram_bpb", float(metrics["unigram_bpb"]), 0))
    return out


def lineage_tags(stage: str, ckpt: str, config: dict[str, Any], data: Iterable[str] = ()) -> dict[str, str]:
    """The lake URIs a run came from, as MLflow tags; `data`, when given, is what the stage
    trained on (RL's problems) in place of the data its checkpoint's config names."""
    tags = {"crawl2chat.stage": stage, "crawl2chat.checkpoint": ckpt}
    for key in ("data", "val", "tokenizer", "init_from"):
        value = config.get(key)
        if value:
            tags[f"crawl2chat.{key}"] = ",".join(value) if isinstance(value, list) else str(value)
    data = list(data)
    if data:  # the stage trained on these, not on what the checkpoint it started from names
        tags["crawl2chat.data"] = ",".join(data)
        tags.pop("crawl2chat.val", None)
    return {k: v[:MAX_VALUE] for k, v in tags.items()}


def params_of(config: dict[str, Any]) -> dict[str, str]:
    """The model's shape and the training (or RL) settings, flattened: model.n_layer, train.lr, rl.algorithm."""
    out: dict[str, str] = {}

    def flatten(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                flatten(f"{prefix}.{k}" if prefix else k, v)
        else:
            out[prefix] = str(value)[:MAX_VALUE]

    # RL's checkpoints carry the SFT run's `train` section beside their own `rl` one.
    for section in ("model", "rl") if "rl" in config else ("model", "train"):
        if section in config:
            flatten(section, config[section])
    return out


def log_stage(
    tracking: TrackingConfig,
    stage: str,
    ckpt: str,
    *,
    data: Iterable[str] = (),
    extra: Iterable[tuple[str, float, int]] = (),
) -> str | None:
    """Log a finished stage's checkpoint `ckpt` as one MLflow run; its id, or None when
    tracking is off. `data`: lake URIs the checkpoint's config does not name (RL's problems),
    `extra`: more (key, value, step) metrics (RL's held-out pass@1)."""
    if not tracking.mlflow_uri:
        return None
    try:
        from mlflow.entities import Metric, Param
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise RuntimeError(
            "tracking.mlflow_uri is set but mlflow is not installed: pip install 'crawl2chat[mlflow]'"
        ) from None
    uri = tracking_uri(tracking.mlflow_uri)
    if uri.startswith("file:"):
        # MLflow 3 keeps its file store in maintenance mode behind this switch; a folder is
        # what the user asked for.
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    config = storage.read_json(storage.join(ckpt, "config.json"))
    try:
        metrics = storage.read_json(storage.join(ckpt, "metrics.json"))
    except FileNotFoundError:  # a checkpoint saved without metrics (RL's step 0)
        metrics = {}
    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(tracking.experiment)
    experiment = found.experiment_id if found else client.create_experiment(tracking.experiment)
    name = ckpt.rstrip("/").split("/")[-2]
    run = client.create_run(experiment, run_name=f"{stage} {name}", tags=lineage_tags(stage, ckpt, config, data))
    now = int(time.time() * 1000)
    rows = [Metric(k, v, now, s) for k, v, s in [*training_metrics(metrics), *extra]]
    params = [Param(k, v) for k, v in params_of(config).items()]
    for i in range(0, len(params), MAX_PARAMS):
        client.log_batch(run.info.run_id, params=params[i : i + MAX_PARAMS])
    for i in range(0, len(rows), MAX_METRICS):
        client.log_batch(run.info.run_id, metrics=rows[i : i + MAX_METRICS])
    client.set_terminated(run.info.run_id)
    log.info("MLflow: %s run %s in %s (experiment %s)", stage, run.info.run_id, uri, tracking.experiment)
    return run.info.run_id


def track(tracking: TrackingConfig, stage: str, ckpt: str, **options: Any) -> str | None:
    """`log_stage` for a flow: a tracking server that fails is reported, not fatal (the
    training it describes is done and in the lake). Returns the run id or "not logged: why"."""
    try:
        return log_stage(tracking, stage, ckpt, **options)
    except Exception as exc:  # the server, the network, a missing package: say so, keep the checkpoint
        log.warning("MLflow: %s was not logged: %s", ckpt, exc)
        return f"not logged: {exc}"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value
