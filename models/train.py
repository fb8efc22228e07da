"""Pretraining: one script for one CPU, one GPU, or many GPUs through torchrun.

    python -m models.train --data DATASET --val DATASET --tokenizer URI --out RUN_URI
    torchrun --nproc_per_node 8 -m models.train --config run.json

What a step does: gradient accumulation over micro-batches until `batch_tokens` tokens (all
ranks together) have been seen, bf16 autocast on GPU, gradient clipping, one optimizer step
(AdamW, fused on CUDA; or Muon for the blocks' matrices, models/muon.py) at the learning rate
of the schedule (linear warmup, then cosine or warmup-stable-decay). The device and precision
follow models/device.py's rule (`device`, `dtype`: the GPU in bf16 when there is one, else the
CPU in float32). Under torchrun every process holds a DDP replica and sees its own rows of each global
batch (models/data.py), so N processes with 1/N of the accumulation make the same update as one.

Every `checkpoint_every` steps and at the end, rank 0 samples a few continuations and writes a
checkpoint (models/checkpoint.py) with everything needed to continue exactly: weights,
optimizer, RNG states, the data position and the metrics so far. `resume=True` continues from
the newest complete checkpoint; on CPU, a run interrupted and resumed gives bit-for-bit the
losses of an uninterrupted one (tests/test_train.py checks it).

Evaluation: validation loss and bits per byte (the loss summed over tokens, in bits, divided
by the UTF-8 bytes those tokens stand for, so it compares across vocabularies), beside the
bits per byte of a unigram model of the training tokens: the floor any model must beat.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import math
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import torch.distributed as dist
from pydantic import TypeAdapter

from models import checkpoint
from models.data import TokenLoader, bits_per_byte, token_counts, unigram_bits_per_byte
from models.device import Placement, peak_flops, resolve
from models.gpt import GPT, GPTConfig
from models.muon import Muon
from models.recall import written_by_model
from models.tokenizer import Tokenizer


@dataclass
class TrainConfig:
    steps: int = 200
    batch_tokens: int = 8192  # tokens per optimizer step over all ranks (accumulation fills it)
    device_batch: int = 16  # rows (of seq_len tokens) per micro-batch per process
    lr: float = 3e-3
    min_lr_ratio: float = 0.1  # the schedule ends at lr * min_lr_ratio
    warmup_steps: int = 20
    schedule: Literal["cosine", "wsd"] = "cosine"
    decay_fraction: float = 0.2  # wsd: the last fraction of steps decays linearly
    weight_decay: float = 0.1
    # muon: the blocks' matrices take Muon (models/muon.py) at `muon_lr` (the schedule scales
    # it as it scales `lr`), embeddings and norm gains AdamW at `lr`.
    optimizer: Literal["adamw", "muon"] = "adamw"
    muon_lr: float = 0.02
    muon_momentum: float = 0.95
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0  # 0: no clipping
    eval_every: int = 50
    eval_tokens: int = 32768  # validation tokens per evaluation (the same ones every time)
    checkpoint_every: int = 100
    sample_prompts: list[str] = field(default_factory=lambda: ["The", "In the year", "Python is"])
    sample_tokens: int = 48
    unigram_tokens: int = 5_000_000  # training tokens counted for the unigram baseline
    seed: int = 1337
    shuffle: bool = True  # visit the shards in a seeded order each epoch
    compile: bool = False
    device: str = "auto"  # models/device.py: auto = the (local rank's) GPU when there is one, else cpu
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"  # auto: bf16 autocast on a GPU that has it
    log_every: int = 10

    __pydantic_config__ = {"extra": "forbid"}


@dataclass
class RunSpec:
    """What a run reads and where it writes (URIs: local paths or s3://)."""

    data: list[str]  # token datasets to train on (tokens/{tokenizer}/{crawl}/train)
    val: list[str]  # validation token datasets
    tokenizer: str  # the tokenizer's folder (tokenizers/{name})
    out: str  # the run's checkpoint folder (checkpoints/{run})
    lineage: dict[str, Any] = field(default_factory=dict)  # manifest fields for checkpoints
    init_from: str | None = None  # a checkpoint whose weights start the run (SFT from a base model)
    data_format: Literal["tokens", "sft"] = "tokens"  # token streams, or packed SFT rows with loss masks


def learning_rate(step: int, cfg: TrainConfig) -> float:
    """The learning rate of step `step` (0-based)."""
    floor = cfg.lr * cfg.min_lr_ratio
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "cosine":
        progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        return floor + (cfg.lr - floor) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    decay_start = cfg.steps - int(cfg.decay_fraction * cfg.steps)
    if step < decay_start:
        return cfg.lr
    progress = (step - decay_start) / max(1, cfg.steps - decay_start)
    return cfg.lr + (floor - cfg.lr) * min(progress, 1.0)


def optimizer_for(model: GPT, cfg: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    """AdamW with weight decay on matrices (embeddings, projections), none on norm gains; or,
    with `optimizer: muon`, Muon for the blocks' matrices and AdamW for the rest. Each group's
    `lr_scale` is its learning rate over `cfg.lr`, which the schedule multiplies."""
    if cfg.optimizer == "muon":
        hidden = [p for name, p in model.named_parameters() if p.dim() == 2 and name.startswith("blocks.")]
        taken = {id(p) for p in hidden}
        matrices = [p for p in model.parameters() if p.dim() >= 2 and id(p) not in taken]
        gains = [p for p in model.parameters() if p.dim() < 2]
        groups = [
            {"params": hidden, "muon": True, "lr": cfg.muon_lr, "lr_scale": cfg.muon_lr / cfg.lr},
            {"params": matrices, "weight_decay": cfg.weight_decay},
            {"params": gains, "weight_decay": 0.0},
        ]
        return Muon(groups, lr=cfg.lr, momentum=cfg.muon_momentum, betas=(cfg.beta1, cfg.beta2))
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=device.type == "cuda")


@dataclass
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str = "auto", dtype: str = "auto") -> tuple[Distributed, Placement]:
    """Join the torchrun process group when launched by torchrun (NCCL on GPUs, gloo on
    CPUs); place this process by models/device.py's rule (under torchrun, "auto" and "cuda"
    mean the local rank's GPU)."""
    if "RANK" not in os.environ:
        return Distributed(), resolve(device, dtype)
    env = Distributed(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"]))
    placement = resolve(f"cuda:{env.local_rank}" if device == "cuda" else device, dtype)
    if placement.device.type == "cuda":
        torch.cuda.set_device(placement.device)
    if not dist.is_initialized():
        # Ranks wait at a barrier while rank 0 samples and writes a checkpoint, which for a
        # large model on S3 takes minutes: longer than the 10-minute default timeout allows.
        backend = "nccl" if placement.device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(hours=1))
    return env, placement


class Trainer:
    """One training run. `run()` trains to `cfg.steps` and returns the final metrics."""

    def __init__(
        self,
        model_cfg: GPTConfig,
        cfg: TrainConfig,
        spec: RunSpec,
        *,
        resume: bool = False,
        on_step: Callable[[dict[str, Any]], None] | None = None,
    ):
        self.cfg, self.spec, self.on_step = cfg, spec, on_step
        self.env, self.placement = init_distributed(cfg.device, cfg.dtype)
        self.device = self.placement.device
        self.tokenizer = Tokenizer.load(spec.tokenizer)
        if model_cfg.vocab_size != self.tokenizer.vocab_size:
            model_cfg = dataclasses.replace(model_cfg, vocab_size=self.tokenizer.vocab_size)
        if model_cfg.recall and model_cfg.recall_boundary != self.tokenizer.bos_id:  # recall stops at documents' starts
            model_cfg = dataclasses.replace(model_cfg, recall_boundary=self.tokenizer.bos_id)
        self.model_cfg = model_cfg
        tokens_per_micro = cfg.device_batch * model_cfg.seq_len * self.env.world_size
        if cfg.batch_tokens % tokens_per_micro:
            raise ValueError(
                f"batch_tokens {cfg.batch_tokens} is not a multiple of device_batch x seq_len x processes "
                f"= {cfg.device_batch} x {model_cfg.seq_len} x {self.env.world_size}"
            )
        self.accum = cfg.batch_tokens // tokens_per_micro
        self.autocast = self.placement.autocast()
        self.peak_flops = peak_flops(self.device)

        seed_everything(cfg.seed)
        self.model = GPT(model_cfg).to(self.device)
        if model_cfg.recall and model_cfg.recall_scope == "context":  # a word matches itself with or without a space
            self.model.recall_word.copy_(torch.tensor(self.tokenizer.words()))
        if model_cfg.query_pointer:
            self.model.recall_opener.copy_(torch.tensor(self.tokenizer.openers()))
        self.optimizer = optimizer_for(self.model, cfg, self.device)
        self.step = 0
        self.position: dict[str, int] | None = None
        self.metrics: dict[str, Any] = {"train": [], "eval": [], "samples": [], "unigram_bpb": None}
        found = checkpoint.latest(spec.out)
        if found and not resume:
            raise FileExistsError(
                f"{spec.out} already holds checkpoints (newest {found}); resume it or pick another run"
            )
        if found:
            self._restore(found)
        elif spec.init_from:
            self._initialize(spec.init_from)
        self.forward: torch.nn.Module = torch.compile(self.model) if cfg.compile else self.model
        if self.env.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            # A micro-batch where no search query opens leaves the query pointer without gradients.
            self.forward = torch.nn.parallel.DistributedDataParallel(
                self.forward, device_ids=ids, find_unused_parameters=model_cfg.query_pointer
            )

    def _restore(self, uri: str) -> None:
        ckpt = checkpoint.load(uri, device=self.device)
        saved = GPTConfig(**ckpt.config["model"])
        if saved != self.model_cfg:
            raise ValueError(f"checkpoint {uri} has model {saved}, this run asks for {self.model_cfg}")
        self.model.load_state_dict(ckpt.model)
        self.optimizer.load_state_dict(ckpt.optimizer)
        trainer = ckpt.trainer or {}
        self.step = int(trainer["step"])
        self.position = trainer["data_position"]
        # Rank 0's RNG state is restored on every rank: nothing in training draws numbers
        # that must differ between ranks (each rank's data is set by the loader's position).
        checkpoint.set_rng_state(trainer["rng"])
        self.metrics = ckpt.metrics or self.metrics
        self.log(f"resumed from {uri} at step {self.step}")

    def _initialize(self, uri: str) -> None:
        """Start from another run's weights (the optimizer starts fresh). A run may add recall
        in context to a model without it (SFT's `recall`): the pointer's parameters start as
        a new model's do, near silent."""
        ckpt = checkpoint.load(uri, training_state=False, device=self.device)
        saved = GPTConfig(**ckpt.config["model"])
        adds_recall = self.model_cfg.recall and not saved.recall
        if adds_recall:
            saved = dataclasses.replace(
                saved,
                recall=True,
                recall_scope=self.model_cfg.recall_scope,
                recall_cap=self.model_cfg.recall_cap,
                recall_boundary=self.model_cfg.recall_boundary,
                query_pointer=self.model_cfg.query_pointer,
            )
        if saved != self.model_cfg:
            raise ValueError(f"checkpoint {uri} has model {ckpt.config['model']}, this run asks for {self.model_cfg}")
        missing, unexpected = self.model.load_state_dict(ckpt.model, strict=not adds_recall)
        if unexpected or any(not name.startswith("recall_") for name in missing):
            raise ValueError(f"checkpoint {uri} does not fit this model: missing {missing}, unexpected {unexpected}")
        self.log(f"initialized from {ckpt.uri}")

    def loader(self, datasets: list[str], **options: Any) -> Any:
        """Batches of `datasets` for this rank: a packed token stream, or SFT rows (whose
        targets are -1 where the loss mask is 0)."""
        common = dict(rank=self.env.rank, world_size=self.env.world_size, device=self.device, **options)
        if self.spec.data_format == "sft":
            from models.sft_data import PackedLoader

            return PackedLoader(datasets, self.cfg.device_batch, self.model_cfg.seq_len, **common)
        return TokenLoader(datasets, self.cfg.device_batch, self.model_cfg.seq_len, self.tokenizer.bos_id, **common)

    def log(self, message: str) -> None:
        if self.env.main:
            print(message, flush=True)

    # -- the loop ------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        cfg, mc = self.cfg, self.model_cfg
        self.log(
            f"model {mc.num_params() / 1e6:.2f}M params, {mc.flops_per_token() / 1e6:.1f} MFLOP/token; "
            f"{self.env.world_size} process(es) on {self.placement.describe()}, {self.accum} micro-batch(es) of "
            f"{cfg.device_batch}x{mc.seq_len} per step"
        )
        loader = self.loader(self.spec.data, position=self.position, seed=cfg.seed, shuffle=cfg.shuffle)
        try:
            if self.step == 0 and cfg.eval_every:
                self.evaluate()
            while self.step < cfg.steps:
                self.train_step(loader)
                if self.step % cfg.eval_every == 0 or self.step == cfg.steps:
                    self.evaluate()
                if self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps:
                    self.position = loader.position.to_dict()
                    self.save()
        finally:
            loader.close()
        return self.summary()

    def written(self, targets: torch.Tensor) -> torch.Tensor | None:
        """Which input tokens the model wrote, for recall: in SFT, those it is trained to write
        (the assistant's); in pretraining none (all text is read)."""
        return written_by_model(targets) if self.model_cfg.recall and self.spec.data_format == "sft" else None

    def train_step(self, loader: TokenLoader) -> None:
        cfg = self.cfg
        lr = learning_rate(self.step, cfg)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        started = time.perf_counter()
        total = torch.zeros((), device=self.device)
        for micro in range(self.accum):
            x, y = loader.next_batch()
            # Gradients are all-reduced only on the last micro-batch of the step.
            sync = not self.env.enabled or micro == self.accum - 1
            with contextlib.nullcontext() if sync else self.forward.no_sync(), self.autocast:
                loss = self.forward(x, y, written=self.written(y))
            (loss / self.accum).backward()
            total += loss.detach()
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip or float("inf"))
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        loss = total / self.accum
        if self.env.enabled:
            dist.all_reduce(loss, op=dist.ReduceOp.AVG)
        loss_value = loss.item()  # also waits for the GPU, so the time below is real
        seconds = time.perf_counter() - started
        self.step += 1
        tokens_per_s = cfg.batch_tokens / seconds
        row = {"step": self.step, "loss": loss_value, "lr": lr, "grad_norm": float(norm), "tokens_per_s": tokens_per_s}
        if self.peak_flops:
            row["mfu"] = self.model_cfg.flops_per_token() * tokens_per_s / (self.peak_flops * self.env.world_size)
        self.metrics["train"].append(row)
        if not math.isfinite(loss_value):
            raise FloatingPointError(f"loss is {loss_value} at step {self.step}")
        if self.step % cfg.log_every == 0 or self.step == 1 or self.step == cfg.steps:
            mfu = f" | mfu {row['mfu']:.1%}" if "mfu" in row else ""
            self.log(
                f"step {self.step}/{cfg.steps} | loss {loss_value:.4f} | lr {lr:.2e} | "
                f"grad norm {row['grad_norm']:.2f} | {tokens_per_s:,.0f} tok/s{mfu}"
            )
        if self.on_step is not None and self.env.main:
            self.on_step(row)

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Validation loss (nats per token) and bits per byte on the first `eval_tokens`
        tokens of the validation stream (the same tokens every time), over all ranks."""
        cfg, mc = self.cfg, self.model_cfg
        token_bytes = torch.tensor(self.tokenizer.token_bytes, device=self.device)
        per_batch = cfg.device_batch * mc.seq_len * self.env.world_size
        batches = max(1, cfg.eval_tokens // per_batch)
        sums = torch.zeros(4, device=self.device, dtype=torch.float64)  # nats, tokens, nats on bytes, bytes
        # The first evaluation also counts the validation ids for the unigram baseline, so
        # that it is measured on exactly the tokens the model is.
        val_counts = torch.zeros(mc.vocab_size, device=self.device, dtype=torch.int64)
        self.model.eval()
        with self.loader(self.spec.val, epochs=1, shuffle=False) as loader:
            for _, (x, y) in zip(range(batches), loader):
                with self.autocast:
                    nats = self.model(x, y, reduction="none", written=self.written(y)).double()
                counted = y >= 0  # SFT rows: -1 marks the targets outside the loss mask
                nbytes = torch.where(counted, token_bytes[y.clamp(min=0)], 0)
                sums += torch.stack([nats.sum(), counted.sum().double(), nats[nbytes > 0].sum(), nbytes.sum().double()])
                val_counts += torch.bincount(y[counted], minlength=mc.vocab_size)
        self.model.train()
        if self.env.enabled:
            dist.all_reduce(sums)
            dist.all_reduce(val_counts)
        if self.metrics["unigram_bpb"] is None:
            train_counts = token_counts(self.spec.data, mc.vocab_size, cfg.unigram_tokens)
            self.metrics["unigram_bpb"] = unigram_bits_per_byte(
                train_counts, val_counts.cpu().numpy(), self.tokenizer.token_bytes
            )
            self.log(f"unigram baseline (training token frequencies): {self.metrics['unigram_bpb']:.4f} bpb")
        if sums[1] == 0:
            raise ValueError(f"the validation data {self.spec.val} is shorter than one row of {mc.seq_len + 1} tokens")
        result = {
            "step": self.step,
            "val_loss": float(sums[0] / sums[1]),
            "val_bpb": bits_per_byte(float(sums[2]), float(sums[3])),
            "val_tokens": int(sums[1]),
        }
        self.metrics["eval"] = [e for e in self.metrics["eval"] if e["step"] != self.step] + [result]
        self.log(f"step {self.step} | val loss {result['val_loss']:.4f} | val bpb {result['val_bpb']:.4f}")
        return result

    @torch.no_grad()
    def sample(self) -> list[dict[str, Any]]:
        """A continuation of each sample prompt; seeded by the step, so reproducible."""
        generator = torch.Generator().manual_seed(self.cfg.seed + self.step)
        out = []
        self.model.eval()
        chat = self.spec.data_format == "sft"  # a chat model answers the prompts as questions
        stop = self.tokenizer.special("<|assistant_end|>") if chat else self.tokenizer.bos_id
        for prompt in self.cfg.sample_prompts:
            if chat:
                from models.chat import render_for_completion

                ids = render_for_completion(self.tokenizer, [{"role": "user", "content": prompt}])
            else:
                ids = [self.tokenizer.bos_id, *self.tokenizer.encode(prompt)]
            with self.autocast:
                new = self.model.generate(
                    ids, self.cfg.sample_tokens, temperature=0.8, top_k=50, generator=generator, stop=stop
                )
            out.append({"step": self.step, "prompt": prompt, "text": self.tokenizer.decode(new)})
        self.model.train()
        return out

    def save(self) -> None:
        if self.env.main:
            samples = self.sample()
            self.metrics["samples"] = [s for s in self.metrics["samples"] if s["step"] != self.step] + samples
            for s in samples:
                self.log(f"sample | {s['prompt']!r} -> {s['text']!r}")
            last_eval = self.metrics["eval"][-1] if self.metrics["eval"] else {}
            lineage = dict(self.spec.lineage)
            lineage["parents"] = [*lineage.get("parents", []), *self.spec.data, *self.spec.val, self.spec.tokenizer]
            lineage["parents"] += [self.spec.init_from] if self.spec.init_from else []
            lineage["stats"] = {k: v for k, v in last_eval.items() if k != "step"} | {
                "unigram_bpb": self.metrics["unigram_bpb"]
            }
            uri = checkpoint.save(
                self.spec.out,
                self.step,
                model=self.model.state_dict(),
                config=self.config_json(),
                optimizer=self.optimizer.state_dict(),
                trainer={"step": self.step, "data_position": self.position, "rng": checkpoint.rng_state()},
                metrics=self.metrics,
                lineage=lineage,
            )
            self.log(f"checkpoint {uri}")
        if self.env.enabled:
            dist.barrier()

    def config_json(self) -> dict[str, Any]:
        return {
            "model": asdict(self.model_cfg),
            "train": asdict(self.cfg),
            "data": self.spec.data,
            "val": self.spec.val,
            "tokenizer": self.spec.tokenizer,
            "init_from": self.spec.init_from,
            "data_format": self.spec.data_format,
        }

    def summary(self) -> dict[str, Any]:
        train = self.metrics["train"]
        final_eval = self.metrics["eval"][-1] if self.metrics["eval"] else {}
        timed = [r["tokens_per_s"] for r in train[1:]] or [r["tokens_per_s"] for r in train]
        return {
            "checkpoint": checkpoint.step_uri(self.spec.out, self.step),
            "steps": self.step,
            "params": self.model_cfg.num_params(),
            "flops_per_token": self.model_cfg.flops_per_token(),
            "final_loss": train[-1]["loss"] if train else None,
            "val_loss": final_eval.get("val_loss"),
            "val_bpb": final_eval.get("val_bpb"),
            "unigram_bpb": self.metrics["unigram_bpb"],
            "tokens_per_s": float(np.median(timed)) if timed else None,
            "mfu": float(np.median([r["mfu"] for r in train if "mfu" in r]))
            if any("mfu" in r for r in train)
            else None,
            "tokens": self.step * self.cfg.batch_tokens,
            "processes": self.env.world_size,
            "device": self.placement.describe(),
        }


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def train(
    model_cfg: GPTConfig,
    cfg: TrainConfig,
    spec: RunSpec,
    *,
    resume: bool = False,
    on_step: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Train (or, with `resume`, continue) a run; returns the final metrics (rank 0's)."""
    trainer = Trainer(model_cfg, cfg, spec, resume=resume, on_step=on_step)
    try:
        return trainer.run()
    finally:
        if trainer.env.enabled and dist.is_initialized():
            dist.destroy_process_group()


# -- command line (also what torchrun launches) ------------------------------------------


def config_from_json(body: dict[str, Any]) -> tuple[GPTConfig, TrainConfig, RunSpec]:
    # Fields validated as their types ("--set model.recall=False" is the bool, not a truthy
    # string), then each config's own checks.
    model = TypeAdapter(GPTConfig).validate_python(body.get("model", {}))
    return model, TypeAdapter(TrainConfig).validate_python(body.get("train", {})), RunSpec(**body["run"])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="JSON file with sections model, train, run")
    parser.add_argument("--data", action="append", help="token dataset URI (repeatable)")
    parser.add_argument("--val", action="append", help="validation token dataset URI (repeatable)")
    parser.add_argument("--tokenizer", help="tokenizer folder URI")
    parser.add_argument("--out", help="the run's checkpoint folder URI")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=JSON",
        help="override a field, e.g. --set train.steps=20 --set model.n_layer=2",
    )
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint")
    parser.add_argument("--summary", help="write the final metrics (JSON) here")
    args = parser.parse_args(argv)

    body: dict[str, Any] = {"model": {}, "train": {}, "run": {}}
    if args.config:
        with open(args.config) as f:
            body.update(json.load(f))
    for key, value in (("data", args.data), ("val", args.val), ("tokenizer", args.tokenizer), ("out", args.out)):
        if value:
            body["run"][key] = value
    for item in args.set:
        key, _, value = item.partition("=")
        section, _, name = key.partition(".")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        body.setdefault(section, {})[name] = parsed
    model_cfg, cfg, spec = config_from_json(body)
    summary = train(model_cfg, cfg, spec, resume=args.resume)
    if args.summary and int(os.environ.get("RANK", "0")) == 0:
        with open(args.summary, "w") as f:
            json.dump(summary, f, indent=2)
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(summary, indent=2))
    return summary


def exit_worker() -> None:
    """End a torchrun worker whose results are written. The process group is destroyed by
    then; what is left is the interpreter's teardown, in which gloo's C++ threads can abort
    the process ("terminate called without an active exception", seen under load in CI) and
    turn finished work into a failed run, so a worker of several leaves without it."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
    exit_worker()
