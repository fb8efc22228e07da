"""models/device.py's rule and its plumbing through every stage that runs a model.

No GPU here: the rule's GPU branch is checked by its inputs (a config naming cuda fails
clearly), and the reduced-precision path every GPU stage takes is exercised on the CPU by
asking for bfloat16, which the CPU runs too. Each stage is run for real on a tiny model and
the test looks at what it actually computed in (the engine's weights, the logits' dtype).
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import safetensors.torch
import torch

from models import checkpoint, lake
from models.device import Placement, peak_flops, peak_flops_of, resolve
from models.engine import Engine
from models.gpt import GPT
from models.train import TrainConfig, init_distributed
from tasks.evaluate import EvalConfig
from tasks.rl import RLConfig
from tasks.rl.rollouts import Sampling, policy
from tasks.rl.update import Learner, optimizer_for
from tasks.sft import SFTConfig
from tests.support import sft_world


def test_the_rule_on_a_machine_without_a_gpu():
    assert not torch.cuda.is_available()  # what the rest of this module assumes
    assert resolve() == Placement(torch.device("cpu"), torch.float32)
    assert resolve("cpu", "bfloat16") == Placement(torch.device("cpu"), torch.bfloat16)  # the config wins
    assert resolve("auto", "float32").dtype == torch.float32
    with pytest.raises(RuntimeError, match="no CUDA device"):
        resolve("cuda")  # a config that names a GPU the worker lacks fails, never silently runs on CPU
    with pytest.raises(ValueError, match="dtype"):
        resolve("cpu", "float16")
    assert resolve().autocast().__class__.__name__ == "nullcontext"
    with resolve("cpu", "bfloat16").autocast():
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16


def test_peak_flops_by_card_name():
    assert peak_flops_of("NVIDIA H100 80GB HBM3") == 989e12
    assert peak_flops_of("NVIDIA H100 PCIe") == 756e12  # a variant is matched before its family
    assert peak_flops_of("NVIDIA H200") == 989e12
    assert peak_flops_of("NVIDIA A100-SXM4-80GB") == 312e12
    assert peak_flops_of("NVIDIA L4") == 121e12 and peak_flops_of("NVIDIA L40S") == 362e12
    assert peak_flops_of("Some New Card") is None and peak_flops(torch.device("cpu")) is None


def test_training_places_itself_by_the_rule_and_runs_under_bf16_autocast(monkeypatch):
    env, placement = init_distributed("auto", "auto")
    assert not env.enabled and placement == resolve()
    _, placement = init_distributed("cpu", "bfloat16")
    model = GPT(sft_world.MODEL)
    seen = []
    model.lm_head.register_forward_hook(lambda m, i, out: seen.append(out.dtype))
    x = torch.randint(0, sft_world.MODEL.vocab_size, (2, 8))
    with placement.autocast():
        loss = model(x, x)
    loss.backward()
    assert seen == [torch.bfloat16] and loss.dtype == torch.float32  # bf16 matmuls, float32 loss
    assert model.lm_head.weight.grad.dtype == torch.float32  # float32 master weights
    with pytest.raises(RuntimeError, match="no CUDA device"):
        init_distributed("cuda", "auto")


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, str]:
    return sft_world.build(str(tmp_path_factory.mktemp("device") / "lake"))


def engine_dtypes(monkeypatch) -> list[tuple[torch.device, torch.dtype]]:
    """Record the device and dtype of every engine a stage builds (the real one is built)."""
    built = []
    real = Engine.from_checkpoint.__func__

    def recording(cls, *args, **kwargs):
        engine = real(cls, *args, **kwargs)
        param = next(engine.model.parameters())
        built.append((param.device, param.dtype))
        return engine

    monkeypatch.setattr(Engine, "from_checkpoint", classmethod(recording))
    return built


def test_inference_engines_cast_the_model_whole(world):
    engine = Engine.from_checkpoint(world["base"], device="cpu", dtype="bfloat16")
    assert {p.dtype for p in engine.model.parameters()} == {torch.bfloat16}
    (sample,) = engine.generate([engine.tokenizer.bos_id], 1, max_new_tokens=6, temperature=0, stop=[])
    assert len(sample.tokens) == 6
    # The checkpoint itself stays float32: the source of truth.
    assert {v.dtype for v in checkpoint.load(world["base"], training_state=False).model.values()} == {torch.float32}
    assert {p.dtype for p in Engine.from_checkpoint(world["base"]).model.parameters()} == {
        torch.float32
    }  # auto on a CPU


def test_the_sft_probe_runs_where_the_sft_config_says(world, tmp_path, monkeypatch):
    from tasks.sft.stage import probe_chunk

    built = engine_dtypes(monkeypatch)
    config = SFTConfig(probe_samples=2, probe_tokens=3, train=TrainConfig(dtype="bfloat16"))
    out = probe_chunk.fn(world["base"], world["facts"], str(tmp_path / "probe"), "part-0", 0, 3, config)
    assert (
        built == [(torch.device("cpu"), torch.bfloat16)]
        and sum(out.get(v, 0) for v in ("known", "unknown", "unsure")) == 3
    )


def test_evaluation_runs_where_its_config_says(world, tmp_path, monkeypatch):
    from tasks.evaluate import evaluate_chunk
    from tasks.sft.stage import generate_source

    conversations = str(tmp_path / "conversations")
    written = generate_source.fn(
        "math", world["facts"], world["search"], None, conversations, SFTConfig(counts={"math": 4, "math_test": 3})
    )
    lake.commit(lake.join(conversations, "test"), [lake.Shard(**written["shards"]["test"])], kind="conversations")
    built = engine_dtypes(monkeypatch)
    config = EvalConfig(limits={"math": 2}, max_new_tokens=8, device="cpu", dtype="bfloat16")
    evaluate_chunk.fn(
        world["base"],
        lake.join(conversations, "test"),
        world["search"],
        str(tmp_path / "evals"),
        "part-0",
        0,
        2,
        config,
    )
    assert built == [(torch.device("cpu"), torch.bfloat16)]


def test_rl_rollouts_and_updates_run_where_the_rl_config_says(world):
    config = RLConfig(dtype="bfloat16", device="cpu", micro_batch=2)
    sampling = Sampling.of(config)
    assert (sampling.device, sampling.dtype) == ("cpu", "bfloat16")  # and so in the rollouts' cache key
    engine = policy(world["base"], "v-bf16", None, device=sampling.device, dtype=sampling.dtype)
    assert next(engine.model.parameters()).dtype == torch.bfloat16
    assert (
        policy(world["base"], "v-bf16", None, device="cpu", dtype="float32") is not engine
    )  # one engine per placement

    model, _ = checkpoint.load_model(world["base"])
    model.train()
    seen = []
    model.lm_head.register_forward_hook(lambda m, i, out: seen.append(out.dtype))
    rows = [
        {
            "prompt_id": "p",
            "sample": i,
            "prompt_tokens": [1, 5, 6],
            "tokens": [7 + i, 8],
            "mask": [1, 1],
            "reward": float(i),
            "reward_strict": float(i),
            "reward_lenient": float(i),
            "length": 2,
        }
        for i in range(2)
    ]
    grpo = config.model_copy(update={"algorithm": "grpo"})
    stats = Learner(model, optimizer_for(model, grpo), grpo, placement=config.placement()).update(rows, iteration=0)
    assert stats["steps"] >= 1 and stats["loss"] is not None
    assert seen and set(seen) == {torch.bfloat16}
    assert {p.dtype for p in model.parameters()} == {torch.float32}


def test_generate_command_and_export_take_the_rule(world, tmp_path):
    from typer.testing import CliRunner

    from flows.cli import app
    from models.export import export

    runner = CliRunner()
    done = runner.invoke(
        app,
        [
            "generate",
            "--checkpoint",
            world["base"],
            "--prompt",
            "The",
            "--max-new-tokens",
            "4",
            "--temperature",
            "0",
            "--device",
            "cpu",
            "--dtype",
            "bfloat16",
            "--json",
            "--lake",
            world["root"],
        ],
    )
    assert done.exit_code == 0, done.output
    assert len(json.loads(done.output)[0]["tokens"]) == 4
    out = export(world["base"], str(tmp_path / "hf"), dtype="bfloat16")
    weights = safetensors.torch.load_file(str(tmp_path / "hf" / "model.safetensors"))
    assert {w.dtype for w in weights.values()} == {torch.bfloat16} and out["files"]["model.safetensors"] > 0
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["torch_dtype"] == "bfloat16"
    with pytest.raises(ValueError, match="dtype"):
        export(world["base"], str(tmp_path / "hf2"), dtype="int8")


def test_the_trainer_records_where_it_ran(world, tmp_path):
    """A real (two-step) SFT-format run in bf16 on the CPU: the same Trainer a GPU runs."""
    from models.train import RunSpec, Trainer

    base = checkpoint.load(world["base"], training_state=False)
    cfg = TrainConfig(
        steps=1,
        batch_tokens=2 * 32,
        device_batch=2,
        eval_every=1,
        checkpoint_every=1,
        eval_tokens=64,
        sample_prompts=[],
        dtype="bfloat16",
        device="cpu",
    )
    model_cfg = dataclasses.replace(base.model_config, seq_len=32)
    tokens = tmp_path / "tokens"
    import pyarrow as pa

    tok = sft_world.tokenizer(sft_world.world())
    ids = tok.encode_batch(["The town council met on Monday and talked about the river. " * 4] * 8)
    table = pa.table(
        {
            "id": [str(i) for i in range(8)],
            "tokens": pa.array(ids, pa.list_(pa.uint16())),
            "count": [len(x) for x in ids],
        }
    )
    for split in ("train", "val"):
        lake.write_dataset(str(tokens / split), [table], kind="tokens")
    spec = RunSpec(
        data=[str(tokens / "train")], val=[str(tokens / "val")], tokenizer=world["tokenizer"], out=str(tmp_path / "run")
    )
    trainer = Trainer(model_cfg, cfg, spec)
    assert trainer.placement == Placement(torch.device("cpu"), torch.bfloat16)
    summary = trainer.run()
    assert summary["steps"] == 1 and torch.isfinite(torch.tensor(summary["final_loss"]))
    saved = checkpoint.load(summary["checkpoint"])
    assert saved.config["train"]["dtype"] == "bfloat16" and {v.dtype for v in saved.model.values()} == {torch.float32}


def test_a_run_continues_on_another_number_of_processes():
    """N processes make one process's updates (tests/test_pretrain_flow.py, test_sft_flow.py),
    so the key a run's checkpoints must share leaves nproc out, and nothing else."""
    from tasks.pretrain import PretrainConfig, run_key

    assert run_key(PretrainConfig(nproc=1)) == run_key(PretrainConfig(nproc=8, gpu_slots=4))
    assert run_key(SFTConfig(nproc=1)) == run_key(SFTConfig(nproc=2))
    assert run_key(PretrainConfig()) != run_key(PretrainConfig(train=TrainConfig(dtype="bfloat16")))
