"""MLflow tracking of training stages (tasks/tracking.py): the pretrain flow with
`tracking.mlflow_uri` set logs every step's metrics, the settings and the lake URIs; off by
default; a tracking server that does not answer does not fail the training."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from models import checkpoint
from tasks.config import LakeConfig, load_config
from tasks.pretrain import PretrainConfig
from tasks.tracking import TrackingConfig, log_stage, track, tracking_uri, training_metrics
from tests.conftest import free_port
from tests.test_train import MODEL, TRAIN, corpus  # noqa: F401  (the corpus fixture)

mlflow = pytest.importorskip(
    "mlflow", reason="mlflow is an optional extra: pip install 'crawl2chat[mlflow]' (the dev extra has it)"
)
pytestmark = pytest.mark.slow
CONFIG = PretrainConfig(name="tracked", model=MODEL, train=dataclasses.replace(TRAIN, steps=10, checkpoint_every=5))


@pytest.fixture(scope="module")
def tracked(prefect_server, corpus, tmp_path_factory) -> dict:  # noqa: F811
    from flows.pretrain import pretrain

    store = tmp_path_factory.mktemp("mlruns")
    tokens = str(Path(corpus["root"]) / "tokens" / "t" / "articles")
    out = pretrain(
        lake=LakeConfig(root=corpus["root"]),
        config=CONFIG,
        tokenizer="t",
        tokens=[tokens],
        tracking=TrackingConfig(mlflow_uri=str(store), experiment="tests"),
    )
    return {"out": out, "store": str(store)}


def client(store: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri(store))


def test_pretrain_logs_every_step_settings_and_lake_uris(tracked, corpus):  # noqa: F811
    out, store = tracked["out"], tracked["store"]
    mlc = client(store)
    run = mlc.get_run(out["mlflow_run"])
    assert run.info.status == "FINISHED" and run.info.run_name == "pretrain tracked"
    assert mlc.get_experiment(run.info.experiment_id).name == "tests"
    metrics = checkpoint.load(out["checkpoint"]).metrics
    losses = [(m.step, m.value) for m in mlc.get_metric_history(run.info.run_id, "train/loss")]
    assert losses == [(r["step"], pytest.approx(r["loss"])) for r in metrics["train"]] and len(losses) == 10
    bpb = [(m.step, m.value) for m in mlc.get_metric_history(run.info.run_id, "val_bpb")]
    assert bpb == [(e["step"], pytest.approx(e["val_bpb"])) for e in metrics["eval"]] and [s for s, _ in bpb] == [
        0,
        5,
        10,
    ]
    assert run.data.metrics["unigram_bpb"] == pytest.approx(metrics["unigram_bpb"])
    tags = run.data.tags
    assert tags["crawl2chat.stage"] == "pretrain" and tags["crawl2chat.checkpoint"] == out["checkpoint"]
    assert tags["crawl2chat.data"] == corpus["train"] and tags["crawl2chat.val"] == corpus["val"]
    assert tags["crawl2chat.tokenizer"] == corpus["tokenizer"]
    assert run.data.params["model.n_layer"] == str(MODEL.n_layer) and run.data.params["train.lr"] == str(TRAIN.lr)


def test_tracking_is_off_by_default():
    assert load_config("tiny").tracking.mlflow_uri is None
    assert log_stage(TrackingConfig(), "pretrain", "/nowhere/step-000001") is None  # nothing read, nothing imported


def test_rl_updates_and_extra_metrics_are_logged(tracked, corpus, tmp_path):  # noqa: F811
    """RL's checkpoint holds `updates` (one per iteration); held-out scores come as extras;
    its problems are data the checkpoint's config does not name."""
    rows = training_metrics(
        {"updates": [{"iteration": 0, "loss": 0.5, "items": 12}, {"iteration": 1, "loss": 0.25, "items": 8}]}
    )
    assert ("rl/loss", 0.5, 1) in rows and ("rl/items", 8.0, 2) in rows
    store = str(tmp_path / "mlruns")
    run_id = log_stage(
        TrackingConfig(mlflow_uri=store),
        "rl",
        tracked["out"]["checkpoint"],
        data=["lake/rollouts/rl/problems/train"],
        extra=[("heldout/pass1_greedy", 0.35, 0), ("heldout/pass1_greedy", 0.52, 10)],
    )
    run = client(store).get_run(run_id)
    assert [(m.step, m.value) for m in client(store).get_metric_history(run_id, "heldout/pass1_greedy")] == [
        (0, 0.35),
        (10, 0.52),
    ]
    assert (
        run.data.tags["crawl2chat.data"] == "lake/rollouts/rl/problems/train" and "crawl2chat.val" not in run.data.tags
    )


def test_a_server_that_does_not_answer_does_not_fail_training(tracked, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    result = track(
        TrackingConfig(mlflow_uri=f"http://127.0.0.1:{free_port()}"), "pretrain", tracked["out"]["checkpoint"]
    )
    assert result.startswith("not logged: ")
