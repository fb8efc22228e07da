"""Crashes: kill -9 a running pipeline or training process at seeded random moments, then run it
again. The re-run finishes; every dataset is byte-identical to an uninterrupted run's; no
document is lost or duplicated; training resumes from its last checkpoint and continues with
exactly the losses of an uninterrupted run. What a killed process leaves is never a
half-visible dataset (every committed shard matches its manifest's checksum after each kill),
and its extractor worker does not outlive it.
"""

from __future__ import annotations

import random

import pytest

from models import checkpoint, lake
from models.gpt import GPTConfig
from models.train import RunSpec, TrainConfig, train
from tests.support import stress

pytestmark = pytest.mark.slow


def test_pipeline_killed_at_random_points_then_rerun_equals_an_uninterrupted_run(
    stress_crawl, stress_reference, tmp_path
):
    root = str(tmp_path / "lake")
    killed = 0
    for seed in (1, 2):  # two kills in a row on the same lake, then a run to the end
        delay = random.Random(seed).uniform(0.1, stress_reference["seconds"])
        outcome = stress.kill_after(stress.start(root, stress_crawl), delay)
        assert outcome["orphans"] == [], "the extractor worker outlived its pipeline process"
        assert outcome["killed"] or outcome["returncode"] == 0, outcome["output"][-3000:]
        killed += outcome["killed"]
        stress.snapshot(root)  # whatever is committed is whole
    assert killed >= 1
    stress.finish(stress.start(root, stress_crawl))
    assert stress.differences(stress_reference["snapshot"], stress.snapshot(root)) == []
    assert stress.audit(root, stress.truth_uri(stress_crawl)) == {
        "documents": stress.PAGES,
        "lost": 0,
        "duplicated": 0,
        "unexpected": 0,
    }


MODEL = GPTConfig(vocab_size=512, seq_len=16, n_layer=2, n_head=2, n_kv_head=1, n_embd=32)
# A checkpoint every 40 steps, a log line every 20 (the kill follows one).
TRAIN = TrainConfig(
    steps=400,
    batch_tokens=128,
    device_batch=8,
    lr=3e-3,
    warmup_steps=10,
    eval_every=100,
    eval_tokens=128,
    checkpoint_every=40,
    sample_prompts=["The"],
    sample_tokens=4,
    log_every=20,
)


def test_training_killed_then_resumed_continues_with_the_uninterrupted_losses(stress_reference, tmp_path):
    tokens = lake.join(stress_reference["lake"], "tokens", "bpe-stress", "sample")
    tokenizer = lake.join(stress_reference["lake"], "tokenizers", "bpe-stress")

    def spec(run: str) -> RunSpec:
        return RunSpec([lake.join(tokens, "train")], [lake.join(tokens, "val")], tokenizer, str(tmp_path / run))

    straight = spec("straight")
    train(MODEL, TRAIN, straight)
    expected = [r["loss"] for r in checkpoint.load(straight.out).metrics["train"]]

    crashed = spec("crashed")
    at = random.Random(3).randrange(60, TRAIN.steps, TRAIN.log_every)  # kill -9 at a seeded step
    killed = stress.train_and_kill(MODEL, TRAIN, crashed, at, resume=False)
    assert killed["killed"] and killed["saved"] and killed["saved"][-1] <= at < TRAIN.steps, (at, killed)
    resumed_at = stress.train_to_end(MODEL, TRAIN, crashed)
    assert resumed_at == killed["saved"][-1]  # from its last complete checkpoint
    resumed = [r["loss"] for r in checkpoint.load(crashed.out).metrics["train"]]
    assert resumed[resumed_at:] == expected[resumed_at:] and resumed == expected


def test_a_measured_process_that_dies_says_so_and_one_that_returned_is_measured():
    with pytest.raises(RuntimeError, match=r"os:abort failed \(-6\) before it returned"):
        stress.peak_rss("os:abort")
    # work that returned is measured, whatever a native library's teardown would do at exit
    done = stress.peak_rss("tests.support.stress:abort_at_exit")
    assert done["result"] == {} and done["peak_rss_mb"] > 0
