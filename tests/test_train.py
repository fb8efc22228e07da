"""The trainer: exact resume, atomic checkpoints, accumulation, schedules, DDP, evaluation.

Everything trains a model of a few thousand parameters on real text (news articles from the
extraction benchmark) encoded by a real tokenizer, for a few steps.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import safetensors.torch
import torch

from models import checkpoint, lake, storage
from models.gpt import GPT, GPTConfig
from models.tokenizer import train as train_tokenizer
from models.train import RunSpec, TrainConfig, Trainer, config_from_json, learning_rate, main, train
from tasks.pretrain import resume_or_start
from tasks.tokenize import vocab_table
from tests.conftest import free_port

VOCAB = 512
MODEL = GPTConfig(vocab_size=VOCAB, seq_len=16, n_layer=2, n_head=2, n_kv_head=1, n_embd=16)
# 20 steps of 2 micro-batches of 4 rows of 16 tokens; evaluation every 5, checkpoints every 10.
TRAIN = TrainConfig(
    steps=20,
    batch_tokens=128,
    device_batch=4,
    lr=1e-2,
    warmup_steps=3,
    eval_every=5,
    eval_tokens=256,
    checkpoint_every=10,
    sample_prompts=["The"],
    sample_tokens=6,
    log_every=100,
)
SCHEMA = pa.schema([("id", pa.string()), ("tokens", pa.list_(pa.uint16())), ("count", pa.int32())])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, shared_data) -> dict[str, str]:
    """A tokenizer and train/val token datasets from real articles, in a lake folder."""
    root = tmp_path_factory.mktemp("lake")
    truth = json.loads((shared_data / "extraction-benchmark" / "ground-truth.json").read_text())
    texts = [truth[k]["articleBody"] for k in sorted(truth)][:60]
    tok = train_tokenizer(texts, VOCAB, character_coverage=0.995)
    tok_uri = str(root / "tokenizers" / "t")
    tok.save(tok_uri)  # committed as the tokenizer stage does: the model file, a vocab shard, the manifest
    lake.commit(tok_uri, [lake.write_shard(tok_uri, "vocab", vocab_table(tok))], kind="tokenizer")
    uris = {"tokenizer": tok_uri}
    for split, docs in (("train", texts[:50]), ("val", texts[50:])):
        ids = tok.encode_batch(docs)
        uri = str(root / "tokens" / "t" / "articles" / split)
        tables = [
            pa.table(
                {
                    "id": [f"{split}-{i + j}" for j in range(len(chunk))],
                    "tokens": chunk,
                    "count": [len(c) for c in chunk],
                },
                schema=SCHEMA,
            )
            for i in range(0, len(ids), 10)
            for chunk in [ids[i : i + 10]]
        ]
        lake.write_dataset(uri, tables, kind="tokens")
        uris[split] = uri
    uris["root"] = str(root)
    return uris


def spec(corpus: dict[str, str], run: str) -> RunSpec:
    return RunSpec(
        [corpus["train"]], [corpus["val"]], corpus["tokenizer"], str(Path(corpus["root"]) / "checkpoints" / run)
    )


def history(run_uri: str) -> dict:
    return checkpoint.load(run_uri).metrics


class Crash(Exception):
    pass


def crash_at(step: int):
    def on_step(row: dict) -> None:
        if row["step"] == step:
            raise Crash(f"killed at step {step}")

    return on_step


@pytest.fixture(scope="module")
def straight(corpus) -> dict:
    """The reference: 20 steps in one go."""
    summary = train(MODEL, TRAIN, spec(corpus, "straight"))
    return {"summary": summary, "metrics": history(spec(corpus, "straight").out)}


def test_uninterrupted_run_learns_and_reports(straight):
    metrics, summary = straight["metrics"], straight["summary"]
    assert [r["step"] for r in metrics["train"]] == list(range(1, 21))
    evals = {e["step"]: e for e in metrics["eval"]}
    assert sorted(evals) == [0, 5, 10, 15, 20]
    assert evals[0]["val_loss"] == pytest.approx(math.log(VOCAB), rel=1e-3)
    assert evals[20]["val_loss"] < evals[0]["val_loss"] - 0.5  # it learns
    assert evals[20]["val_bpb"] < evals[0]["val_bpb"]
    assert 0 < metrics["unigram_bpb"] < evals[0]["val_bpb"]  # uniform is worse than unigram
    assert summary["val_bpb"] == evals[20]["val_bpb"] and summary["steps"] == 20
    assert {s["step"] for s in metrics["samples"]} == {10, 20}
    assert all(isinstance(s["text"], str) for s in metrics["samples"])


def test_interrupted_and_resumed_run_gives_the_same_losses_bit_for_bit(corpus, straight):
    run = spec(corpus, "resumed")
    with pytest.raises(Crash):
        train(MODEL, TRAIN, run, on_step=crash_at(13))
    assert checkpoint.committed_steps(run.out) == [10]
    train(MODEL, TRAIN, run, resume=True)
    resumed = history(run.out)
    assert [r["loss"] for r in resumed["train"]] == [r["loss"] for r in straight["metrics"]["train"]]
    assert [r["grad_norm"] for r in resumed["train"]] == [r["grad_norm"] for r in straight["metrics"]["train"]]
    assert resumed["eval"] == straight["metrics"]["eval"]
    assert resumed["samples"] == straight["metrics"]["samples"]
    a, b = checkpoint.load(run.out), checkpoint.load(spec(corpus, "straight").out)
    assert all(torch.equal(a.model[k], b.model[k]) for k in a.model)
    assert a.trainer["data_position"] == b.trainer["data_position"]


def test_a_crash_before_the_manifest_leaves_the_previous_checkpoint_latest(corpus, straight, monkeypatch):
    run = spec(corpus, "torn")
    real_commit = checkpoint.commit

    def commit_or_die(uri: str, manifest: dict) -> None:
        if manifest["step"] == 20:
            raise Crash("power cut after the files, before the manifest")
        real_commit(uri, manifest)

    monkeypatch.setattr(checkpoint, "commit", commit_or_die)
    with pytest.raises(Crash):
        train(MODEL, TRAIN, run)
    monkeypatch.setattr(checkpoint, "commit", real_commit)
    # Step 20's files are all there, but without a manifest the checkpoint does not exist.
    fs, path = storage.filesystem(checkpoint.step_uri(run.out, 20))
    assert fs.exists(f"{path}/model.safetensors") and not fs.exists(f"{path}/_manifest.json")
    assert checkpoint.committed_steps(run.out) == [10]
    assert checkpoint.latest(run.out) == checkpoint.step_uri(run.out, 10)
    assert checkpoint.load(run.out).step == 10
    train(MODEL, TRAIN, run, resume=True)  # redoes steps 11..20 and rewrites step 20
    assert [r["loss"] for r in history(run.out)["train"]] == [r["loss"] for r in straight["metrics"]["train"]]
    assert checkpoint.committed_steps(run.out) == [10, 20]


def test_a_run_with_checkpoints_is_not_silently_restarted(corpus, straight):
    with pytest.raises(FileExistsError, match="resume"):
        train(MODEL, TRAIN, spec(corpus, "straight"))
    # Resuming a finished run trains nothing and returns its final metrics.
    again = train(MODEL, TRAIN, spec(corpus, "straight"), resume=True)
    assert again["steps"] == 20 and again["val_bpb"] == straight["summary"]["val_bpb"]


def test_checkpoint_files_load_without_pickled_code(corpus, straight):
    uri = checkpoint.latest(spec(corpus, "straight").out)
    weights = safetensors.torch.load(storage.read_bytes(storage.join(uri, "model.safetensors")))
    assert set(weights) == set(GPT(MODEL).state_dict())
    for name in ("optimizer.pt", "trainer.pt"):
        torch.load(io.BytesIO(storage.read_bytes(storage.join(uri, name))), weights_only=True)
    config = storage.read_json(storage.join(uri, "config.json"))
    assert config["model"]["vocab_size"] == VOCAB and config["train"]["steps"] == 20
    manifest = lake.read_manifest(uri)  # a checkpoint's manifest reads like a dataset's
    assert manifest.kind == "checkpoint"
    assert lake.normalize(spec(corpus, "straight").tokenizer) in manifest.parents
    assert {f["path"] for f in storage.read_json(storage.join(uri, "_manifest.json"))["files"]} >= {
        "model.safetensors",
        "config.json",
        "optimizer.pt",
        "trainer.pt",
        "metrics.json",
    }
    model, ckpt = checkpoint.load_model(uri)
    assert ckpt.step == 20 and not model.training


def test_checkpoints_on_local_disk_and_s3(lake_root):
    run = lake.join(lake_root, "checkpoints", "r")
    model = GPT(MODEL)
    for step in (5, 10):
        checkpoint.save(
            run,
            step,
            model=model.state_dict(),
            config={"model": dataclasses.asdict(MODEL)},
            trainer={"step": step, "rng": checkpoint.rng_state()},
        )
    assert checkpoint.committed_steps(run) == [5, 10]
    loaded = checkpoint.load(run)
    assert loaded.step == 10 and loaded.trainer["step"] == 10
    assert all(torch.equal(loaded.model[k], v) for k, v in model.state_dict().items())
    with pytest.raises(FileNotFoundError, match="no committed checkpoint"):
        checkpoint.load(lake.join(lake_root, "checkpoints", "none"))


def test_a_run_folder_is_resumed_only_for_the_same_config_and_data(tmp_path):
    run = str(tmp_path / "base")

    def save(step: int, config: str, data: str) -> None:
        checkpoint.save(
            run,
            step,
            model=GPT(MODEL).state_dict(),
            config={"model": dataclasses.asdict(MODEL)},
            lineage={"config_hash": config, "inputs_hash": data},
        )

    assert resume_or_start(run, "c1", "d1", resume=False) is False  # nothing there: start
    save(5, "c1", "d1")
    assert resume_or_start(run, "c1", "d1", resume=False) is True  # a retry continues
    assert resume_or_start(run, "c2", "d2", resume=True) is True  # and so does resume, whatever changed
    # Another config: the old run moves aside (kept whole) and a new one starts.
    assert resume_or_start(run, "c2", "d1", resume=False) is False
    assert checkpoint.latest(run) is None and checkpoint.committed_steps(f"{run}-c1-d1") == [5]
    # Other data under the same config: the same.
    save(7, "c2", "d1")
    assert resume_or_start(run, "c2", "d2", resume=False) is False
    assert checkpoint.committed_steps(f"{run}-c2-d1") == [7]
    # Never over an earlier copy.
    save(9, "c1", "d1")
    with pytest.raises(FileExistsError, match="exists too"):
        resume_or_start(run, "c3", "d3", resume=False)
    assert checkpoint.committed_steps(run) == [9]


def test_gradient_accumulation_matches_one_big_batch(corpus):
    one = dataclasses.replace(TRAIN, steps=4, device_batch=8, eval_every=100, checkpoint_every=100)
    two = dataclasses.replace(one, device_batch=4)  # the same 128 tokens in two micro-batches
    a = train(MODEL, one, spec(corpus, "accum-1"))
    b = train(MODEL, two, spec(corpus, "accum-2"))
    la = [r["loss"] for r in history(spec(corpus, "accum-1").out)["train"]]
    lb = [r["loss"] for r in history(spec(corpus, "accum-2").out)["train"]]
    np.testing.assert_allclose(la, lb, rtol=1e-5)
    assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-5)
    with pytest.raises(ValueError, match="not a multiple"):
        train(MODEL, dataclasses.replace(TRAIN, batch_tokens=100), spec(corpus, "bad"))


def test_learning_rate_schedules():
    cos = TrainConfig(steps=100, lr=1.0, min_lr_ratio=0.1, warmup_steps=10)
    assert learning_rate(0, cos) == pytest.approx(0.1) and learning_rate(9, cos) == pytest.approx(1.0)
    assert learning_rate(10, cos) == pytest.approx(1.0)
    assert learning_rate(55, cos) == pytest.approx(0.55)  # halfway down the cosine
    assert learning_rate(99, cos) == pytest.approx(0.1, abs=1e-3) and learning_rate(100, cos) == pytest.approx(0.1)
    wsd = dataclasses.replace(cos, schedule="wsd", decay_fraction=0.2)
    assert learning_rate(79, wsd) == 1.0  # stable until the last 20%
    assert learning_rate(80, wsd) == 1.0 and learning_rate(90, wsd) == pytest.approx(0.55)
    assert learning_rate(100, wsd) == pytest.approx(0.1)


@pytest.mark.slow
def test_torchrun_two_processes_match_one_process(corpus, tmp_path):
    """DDP over gloo with 2 processes x 1 micro-batch makes the updates of 1 process x 2."""
    common = [
        "--data",
        corpus["train"],
        "--val",
        corpus["val"],
        "--tokenizer",
        corpus["tokenizer"],
        "--set",
        "train.steps=4",
        "--set",
        "train.batch_tokens=128",
        "--set",
        "train.device_batch=4",
        "--set",
        "train.eval_every=4",
        "--set",
        "train.checkpoint_every=4",
        "--set",
        "train.sample_tokens=2",
        *[f"--set=model.{k}={v}" for k, v in dataclasses.asdict(MODEL).items()],
    ]
    single = str(tmp_path / "single")
    main([*common, "--out", single])
    double = str(tmp_path / "double")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_port",
            str(free_port()),
            "-m",
            "models.train",
            *common,
            "--out",
            double,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    a, b = history(single), history(double)
    np.testing.assert_allclose([r["loss"] for r in a["train"]], [r["loss"] for r in b["train"]], rtol=1e-5)
    assert a["eval"][-1]["val_loss"] == pytest.approx(b["eval"][-1]["val_loss"], rel=1e-5)
    assert "2 process(es)" in done.stdout


def test_a_run_adds_recall_in_context_to_a_base_without_it_and_nothing_else(corpus, straight):
    """SFT's `recall`: the base's weights load unchanged, the pointer's start as a new model's;
    any other difference from the base is still refused."""
    base = spec(corpus, "straight").out
    wanted = dataclasses.replace(MODEL, recall=True, recall_scope="context", query_pointer=True)
    run = dataclasses.replace(spec(corpus, "with-recall"), init_from=base)
    trainer = Trainer(wanted, TRAIN, run)
    saved = checkpoint.load(base, training_state=False).model
    state = trainer.model.state_dict()
    assert {k for k in state if k not in saved} == {k for k in state if k.startswith("recall_")} != set()
    for name, value in saved.items():
        torch.testing.assert_close(state[name], value, rtol=0, atol=0)
    fresh = GPT(wanted).state_dict()  # the pointer starts as it does in a new model
    torch.testing.assert_close(state["recall_bonus.weight"], fresh["recall_bonus.weight"], rtol=0, atol=0)
    assert trainer.model.recall_word.tolist() == trainer.tokenizer.words()  # words matched with or without a space
    assert trainer.model.recall_opener.tolist() == trainer.tokenizer.openers()  # a restated query's first word
    assert {"recall_point_query.weight", "recall_point_key.weight", "recall_point_gate.weight"} <= set(state)
    with pytest.raises(ValueError, match="this run asks for"):
        Trainer(dataclasses.replace(wanted, n_embd=32), TRAIN, run)


def test_the_command_lines_settings_are_read_as_their_types():
    """`--set model.recall=False` (not JSON) once reached the model as the truthy string."""
    run = {"data": ["d"], "val": ["v"], "tokenizer": "t", "out": "o"}
    model, train_cfg, _ = config_from_json(
        {"model": {"recall": "False", "smear_keys": "True", "n_embd": "32"}, "train": {"compile": "false"}, "run": run}
    )
    assert model.recall is False and model.smear_keys is True and model.n_embd == 32 and train_cfg.compile is False
    with pytest.raises(ValueError, match="query_pointer"):
        config_from_json({"model": {"query_pointer": "True"}, "run": run})
    with pytest.raises(ValueError):
        config_from_json({"model": {"recall": "maybe"}, "run": run})
