"""The pretrain flow on a real Prefect server: checkpoints, artifacts, the gpu limit, cache
hits, resuming on purpose and after a crash (Prefect's retry)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from models import checkpoint, storage
from models.train import Trainer
from tasks.config import LakeConfig
from tasks.pretrain import PretrainConfig, train_model
from tests.test_train import MODEL, TRAIN, corpus  # noqa: F401  (the corpus fixture)

pytestmark = pytest.mark.slow
CONFIG = PretrainConfig(name="flow", model=MODEL, train=dataclasses.replace(TRAIN, steps=10, checkpoint_every=5))


def run_flow(corpus: dict[str, str], config: PretrainConfig = CONFIG, resume: bool = False) -> dict:  # noqa: F811
    from flows.pretrain import pretrain

    root = corpus["root"]
    return pretrain(
        lake=LakeConfig(root=root),
        config=config,
        tokenizer="t",
        tokens=[str(Path(root) / "tokens" / "t" / "articles")],
        resume=resume,
    )


def latest_artifact(key: str):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        return client.read_latest_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))[0]


def losses(run: str) -> list[float]:
    return [r["loss"] for r in checkpoint.load(run).metrics["train"]]


@pytest.fixture(scope="module")
def first(prefect_server, corpus) -> dict:  # noqa: F811
    return run_flow(corpus)


def test_flow_writes_checkpoints_report_and_holds_the_gpu_limit(first, corpus):  # noqa: F811
    from prefect.client.orchestration import get_client

    assert checkpoint.committed_steps(first["run"]) == [5, 10]
    assert first["checkpoint"] == checkpoint.step_uri(first["run"], 10)
    assert storage.read_bytes(first["loss_curve"])[:8] == b"\x89PNG\r\n\x1a\n"
    report = latest_artifact("pretrain-report").data
    assert "| 10 |" in report and "bits per byte" in report and "unigram" in report
    assert f"{first['val_bpb']:.4f}" in report
    assert "data:image/png;base64," in report and first["loss_curve"] in report
    sample = checkpoint.load(first["run"]).metrics["samples"][-1]
    assert sample["prompt"] in report
    assert latest_artifact("pretrain-progress").data == 100.0
    # A fresh server had no `gpu` limit: the local run created one slot and gave it back.
    with get_client(sync_client=True) as client:
        limit = client.read_global_concurrency_limit_by_name("gpu")
    assert limit.limit == 1 and limit.active_slots == 0


def test_rerun_is_a_cache_hit(first, corpus):  # noqa: F811
    again = run_flow(corpus)
    assert again == first
    assert checkpoint.committed_steps(first["run"]) == [5, 10]


def test_resume_continues_with_another_config_and_a_new_config_starts_over(first, corpus):  # noqa: F811
    longer = CONFIG.model_copy(update={"train": dataclasses.replace(CONFIG.train, steps=20)})
    out = run_flow(corpus, longer, resume=True)
    assert checkpoint.committed_steps(first["run"]) == [5, 10, 15, 20] and out["steps"] == 20
    assert losses(first["run"])[:10] == [
        r["loss"] for r in checkpoint.load(checkpoint.step_uri(first["run"], 10)).metrics["train"]
    ]
    # A new config without resume: that run moves aside whole and a fresh one trains.
    other = CONFIG.model_copy(update={"train": dataclasses.replace(CONFIG.train, steps=5, checkpoint_every=5)})
    fresh = run_flow(corpus, other)
    assert fresh["steps"] == 5 and checkpoint.committed_steps(first["run"]) == [5]
    moved = [p for p in Path(first["run"]).parent.iterdir() if p.name.startswith("flow-")]
    assert len(moved) == 1 and checkpoint.committed_steps(str(moved[0])) == [5, 10, 15, 20]


def test_a_crashed_training_task_is_retried_and_resumes_exactly(prefect_server, corpus, monkeypatch):  # noqa: F811
    import flows.pretrain

    reference = CONFIG.model_copy(update={"name": "reference"})
    run_flow(corpus, reference)
    crashed: list[int] = []
    taken: list[int] = []
    real_step = Trainer.train_step

    def train_step(self, loader):  # a node dies once, after the checkpoint at step 5
        real_step(self, loader)
        taken.append(self.step)
        if self.step == 8 and not crashed:
            crashed.append(self.step)
            raise RuntimeError("simulated loss of the node")

    monkeypatch.setattr(Trainer, "train_step", train_step)
    monkeypatch.setattr(flows.pretrain, "train_model", train_model.with_options(retry_delay_seconds=0))
    out = run_flow(corpus, CONFIG.model_copy(update={"name": "crashy"}))
    assert crashed == [8] and out["steps"] == 10
    assert taken == [1, 2, 3, 4, 5, 6, 7, 8, 6, 7, 8, 9, 10]  # the retry resumed at step 5's checkpoint
    crashy = str(Path(corpus["root"]) / "checkpoints" / "crashy")
    assert losses(crashy) == losses(str(Path(corpus["root"]) / "checkpoints" / "reference"))


def test_two_processes_through_torchrun_from_the_flow_and_an_exact_resume(prefect_server, corpus, monkeypatch):  # noqa: F811
    """flow -> train_model -> torchrun (2 gloo processes, DDP) -> rank 0's checkpoints -> the
    flow's result; then a lost last checkpoint is redone through torchrun --resume, exactly."""
    two = CONFIG.model_copy(
        update={
            "name": "ddp",
            "nproc": 2,
            "train": dataclasses.replace(CONFIG.train, steps=4, checkpoint_every=2, eval_every=2),
        }
    )
    out = run_flow(corpus, two)
    run = out["run"]
    assert out["processes"] == 2 and out["steps"] == 4 and checkpoint.committed_steps(run) == [2, 4]
    assert out["checkpoint"] == checkpoint.step_uri(run, 4) and latest_artifact("pretrain-progress").data == 100.0
    first = losses(run)
    single = CONFIG.model_copy(update={"name": "ddp-single", "train": two.train})
    assert losses(run_flow(corpus, single)["run"]) == pytest.approx(first, rel=1e-5)  # 2 x 1 micro-batch = 1 x 2
    storage.filesystem(checkpoint.step_uri(run, 4))[0].rm(
        checkpoint.step_uri(run, 4), recursive=True
    )  # the node died after step 2
    import flows.pretrain

    monkeypatch.setattr(
        flows.pretrain, "train_model", train_model.with_options(refresh_cache=True)
    )  # not the cached result
    again = run_flow(corpus, two)
    assert again["steps"] == 4 and checkpoint.committed_steps(run) == [2, 4] and losses(run) == first
