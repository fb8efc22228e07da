"""The SFT and evaluate flows end to end on a tiny lake, through the real Prefect server:
probe, conversations (with a user's JSONL file), packing, a few training steps, then the
evaluation of the fine-tuned checkpoint."""

from __future__ import annotations

import dataclasses
import json

import pytest

from models import checkpoint, lake
from models.engine import Engine
from tasks.config import LakeConfig
from tasks.evaluate import EvalConfig, assistant_loss, read_rows
from tasks.sft import SFTConfig
from tests.support import sft_world

pytestmark = pytest.mark.slow

COUNTS = {
    "facts_search": 1,
    "unknown": 6,
    "echo": 6,
    "math": 6,
    "math_test": 4,
    "arithmetic": 4,
    "arithmetic_test": 2,
    "private": 4,
    "harmful": 4,
    "refusal_test": 3,
    "identity": 4,
}


def sft_config(**changes) -> SFTConfig:
    train = dict(
        steps=4,
        batch_tokens=2 * sft_world.SEQ_LEN,
        device_batch=2,
        lr=1e-3,
        warmup_steps=1,
        eval_every=2,
        checkpoint_every=2,
        eval_tokens=2 * sft_world.SEQ_LEN,
        sample_prompts=["Who are you?"],
        sample_tokens=8,
    )
    return SFTConfig(
        counts=COUNTS,
        search_results=1,
        result_chars=200,
        probe_samples=2,
        probe_tokens=4,
        probe_chunk=40,
        **{"train": train, **changes},
    )


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, prefect_server):
    root = tmp_path_factory.mktemp("lake")
    found = sft_world.build(str(root / "lake"))
    users = root / "mine.jsonl"
    good = {"messages": [{"role": "user", "content": "Say hi."}, {"role": "assistant", "content": "Hi!"}]}
    users.write_text(
        "\n".join([json.dumps({**good, "id": f"u{i}"}) for i in range(5)] + ["{broken", json.dumps({"messages": []})])
    )
    return {**found, "users": str(users)}


@pytest.fixture(scope="module")
def trained(tiny):
    from flows.sft import sft

    config = sft_config(datasets=[tiny["users"]], datasets_test_fraction=0.4)  # 2 of the 5 held out
    return sft(lake=LakeConfig(root=tiny["root"]), config=config, base=tiny["base"], crawl=sft_world.CRAWL), config


def test_sft_writes_conversations_rows_and_a_fine_tuned_checkpoint(tiny, trained):
    out, config = trained
    assert out["steps"] == 4 and out["checkpoint"].endswith("checkpoints/sft/step-000004")
    manifest = lake.manifest(out["checkpoint"])
    assert set(manifest.parents) >= {out["rows"]["train"], out["rows"]["val"], lake.normalize(tiny["base"])}
    saved = checkpoint.load(out["checkpoint"], training_state=False)
    assert saved.config["init_from"] == lake.normalize(tiny["base"]) and saved.config["data_format"] == "sft"
    base = checkpoint.load(tiny["base"], training_state=False)
    assert any(not (saved.model[k] == base.model[k]).all() for k in base.model)  # it trained
    train = lake.manifest(out["conversations"]["train"])
    by_source = train.stats["by_source"]
    mine = {s: lake.manifest(out["conversations"][s]).stats["by_source"][tiny["users"]] for s in ("val", "test")}
    assert by_source["math"] > 0 and by_source[tiny["users"]] + mine["val"] + mine["test"] == 5
    assert mine["test"] == 2  # held out by id for evaluate, never trained on
    probe = lake.manifest(out["probe"])
    assert sum(probe.stats.values()) == probe.rows > 0
    rows = lake.scan(out["rows"]["train"]).collect()
    assert rows.height and all(len(t) == sft_world.SEQ_LEN + 1 for t in rows["tokens"].to_list())


def test_a_rerun_is_all_cache_hits(tiny, trained):
    from flows.sft import sft

    out, config = trained
    again = sft(lake=LakeConfig(root=tiny["root"]), config=config, base=tiny["base"], crawl=sft_world.CRAWL)
    assert again["checkpoint"] == out["checkpoint"] and checkpoint.committed_steps(
        lake.join(tiny["root"], "checkpoints", "sft")
    ) == [2, 4]
    assert lake.manifest(again["checkpoint"]).created_at == lake.manifest(out["checkpoint"]).created_at  # not retrained


def test_evaluate_scores_the_fine_tuned_checkpoint_on_held_out_items(tiny, trained):
    from flows.evaluate import evaluate

    out, _ = trained
    limits = {"math": 2, "fact": 2, "unknown": 2, "harmful": 1, "private": 1, "benign": 1}
    result = evaluate(
        checkpoint="sft",
        lake=LakeConfig(root=tiny["root"]),
        config=EvalConfig(limits=limits, chunk=4, max_new_tokens=24, search_results=1, result_chars=200),
        crawl=sft_world.CRAWL,
    )
    assert result["checkpoint"] == out["checkpoint"] and result["results"].endswith("evals/sft/step-000004")
    answers = lake.scan(result["results"]).collect()
    # math: training families and held-out families (two groups), each with calculator, code
    # tool, no tool; facts and unknowns: in the training grammar and in the held-out one, each
    # with search on and off; harmful, private, benign: one of a trained shape, one held out.
    assert answers.height == 2 * 2 * 3 + 2 * 2 * 2 + 2 * 2 * 2 + 3 * 2 == result["metrics"]["items"]
    facts = answers.filter(answers["kind"] == "fact")
    assert sorted(facts["search"].to_list()) == [False] * 4 + [True] * 4
    assert sorted(facts["heldout"].to_list()) == [False] * 4 + [True] * 4
    assert sorted(answers.filter(answers["kind"] == "benign")["heldout"].to_list()) == [False, True]
    math = answers.filter(answers["kind"] == "math")
    assert sorted(math["tool"].to_list()) == ["calculator"] * 4 + ["none"] * 4 + ["python"] * 4
    assert sorted(math["heldout"].to_list()) == [False] * 6 + [True] * 6
    assert lake.manifest(result["results"]).stats == result["metrics"]
    about = result["about"]  # the table's first rows: which model, crawl, held-out set and index
    assert about["model"] == "sft/step-000004" and about["crawls"] == sft_world.CRAWL
    assert about["held-out set"] == out["conversations"]["test"] and about["search index"].endswith(sft_world.CRAWL)
    test_ids = set(lake.scan(out["conversations"]["test"]).collect()["id"].to_list())
    assert set(answers["id"].to_list()) <= test_ids  # only held-out items are asked
    # the user's held-out conversations, scored by the loss of the checkpoint on their replies
    assert result["metrics"]["users_heldout_conversations"] == 2
    mine = [r["messages"] for r in read_rows(out["conversations"]["test"]) if r["id"] in ("u0", "u1", "u2", "u3", "u4")]
    scores = {}
    for name, uri in (("base", tiny["base"]), ("sft", out["checkpoint"])):
        engine = Engine.from_checkpoint(uri, device="cpu", dtype="float32")
        scores[name] = assistant_loss(engine.model, engine.tokenizer, mine, sft_world.SEQ_LEN)["nats_per_token"]
    assert len(mine) == 2 and result["metrics"]["users_loss_nats"] == scores["sft"] != scores["base"]

    # another run's held-out set: its own evaluation, beside this one, never in its place
    elsewhere = lake.join(tiny["root"], "conversations", "other", "sft", "test")
    lake.write_dataset(elsewhere, [lake.scan(out["conversations"]["test"]).collect().to_arrow()], kind="conversations")
    before = lake.manifest(result["results"])
    other = evaluate(
        checkpoint="sft",
        lake=LakeConfig(root=tiny["root"]),
        config=EvalConfig(limits={"math": 1}, chunk=4, max_new_tokens=8, search_results=1, result_chars=200),
        conversations=elsewhere,
        crawl=sft_world.CRAWL,
    )
    assert other["results"] == lake.join(tiny["root"], "evals", "sft", "on-other-sft", "step-000004")
    assert lake.manifest(result["results"]).created_at == before.created_at and other["metrics"]["items"] == 2 * 3


def test_another_config_moves_the_old_run_aside_and_trains_anew(tiny, trained):
    from flows.sft import sft

    out, config = trained
    old = lake.manifest(out["checkpoint"])
    other = sft_config(seed=1, datasets=[tiny["users"]])
    new = sft(lake=LakeConfig(root=tiny["root"]), config=other, base=tiny["base"], crawl=sft_world.CRAWL)
    assert new["checkpoint"] == out["checkpoint"] and lake.manifest(new["checkpoint"]).config_hash != old.config_hash
    aside = [d for d in lake.list_datasets(lake.join(tiny["root"], "checkpoints")) if old.config_hash in d]
    assert len(aside) == 2 and all(
        lake.manifest(d).config_hash == old.config_hash for d in aside
    )  # steps 2 and 4, kept


def test_without_a_crawl_sft_asks_about_the_base_models_crawl_and_its_facts_and_adds_recall(tiny, trained):
    """The crawl comes from the base model's lineage, its facts with it (a run started as
    `sft --run NAME` once left every fact source out); `recall` gives the model the pointer."""
    from flows.sft import sft

    config = sft_config(name="sft-recall", recall=True)
    out = sft(lake=LakeConfig(root=tiny["root"]), config=config, base=tiny["base"])
    by_source = lake.manifest(out["conversations"]["train"]).stats["by_source"]
    assert by_source.get("facts_search", 0) > 0
    model = checkpoint.load(out["checkpoint"], training_state=False)
    assert model.config["model"]["recall"] and model.config["model"]["recall_scope"] == "context"
    assert model.config["model"]["query_pointer"]
    assert not checkpoint.load(tiny["base"], training_state=False).config["model"]["recall"]


def test_recall_is_added_in_context_kept_in_context_and_never_narrowed_silently():
    """sft.recall adds the pointer in context to a base without recall, keeps a base that
    already has it, and refuses a base whose pointer recalls everywhere."""
    from models.gpt import GPTConfig
    from tasks.sft.stage import model_for_sft

    plain = GPTConfig(vocab_size=64, seq_len=32, n_layer=1, n_head=2, n_kv_head=2, n_embd=16)
    added = model_for_sft(plain, recall=True)
    assert added.recall and added.recall_scope == "context" and added.query_pointer and not plain.recall
    assert model_for_sft(plain, recall=False) == plain
    assert model_for_sft(added, recall=True) == added
    everywhere = dataclasses.replace(plain, recall=True, recall_scope="all")
    assert model_for_sft(everywhere, recall=False) == everywhere  # fine-tuned as it was trained
    with pytest.raises(ValueError, match="already recalls with scope 'all'"):
        model_for_sft(everywhere, recall=True)


def test_sft_trains_in_two_processes_through_torchrun(tiny, trained):
    """flow -> train_sft -> torchrun (2 gloo processes, DDP over the packed rows) -> rank 0's
    checkpoints -> the flow's result: the same losses as one process."""
    from prefect import flow

    from tasks.runtime import in_lake
    from tasks.sft.stage import train_sft

    out, _ = trained
    args = (tiny["base"], out["rows"]["train"], out["rows"]["val"], tiny["tokenizer"])

    @flow
    def fine_tune(config: SFTConfig, name: str) -> dict:
        return in_lake(tiny["root"], train_sft)(*args, lake.join(tiny["root"], "checkpoints", name), config)

    import dataclasses

    micro = dataclasses.replace(
        sft_config().train, device_batch=1
    )  # 2 processes x 1 row, or 1 process x 2 micro-batches
    with pytest.raises(ValueError, match="not a multiple"):  # a config mistake is caught before any process starts
        train_sft.fn(*args, lake.join(tiny["root"], "checkpoints", "sft-bad"), sft_config(nproc=2))
    two = fine_tune(sft_config(nproc=2, train=micro), "sft-ddp")
    assert two["processes"] == 2 and two["steps"] == 4 and two["checkpoint"].endswith("checkpoints/sft-ddp/step-000004")
    assert checkpoint.committed_steps(lake.join(tiny["root"], "checkpoints", "sft-ddp")) == [2, 4]
    saved = checkpoint.load(two["checkpoint"])
    assert saved.config["data_format"] == "sft" and saved.config["init_from"] == lake.normalize(tiny["base"])
    one = fine_tune(sft_config(train=micro), "sft-one")
    assert one["processes"] == 1
    ones = [r["loss"] for r in checkpoint.load(one["checkpoint"]).metrics["train"]]
    assert [r["loss"] for r in saved.metrics["train"]] == pytest.approx(ones, rel=1e-5)
