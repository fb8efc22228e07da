"""Pretraining as a task: the config, the training task, and the report's pieces.

- `PretrainConfig`: the model's shape (`models.gpt.GPTConfig`; the vocabulary comes from the
  tokenizer) and the trainer's settings (`models.train.TrainConfig`) per preset, plus how many
  processes to launch.
- `train_model`: one task that trains `checkpoints/{name}` on token datasets, in this process
  (one device) or through `torchrun` (several GPUs on the node). It holds a slot of the `gpu`
  concurrency limit while it runs, and a retry (or a re-run after a crash) resumes from the
  newest checkpoint of the same configuration.
- `loss_curve_png` and `report_markdown` turn a run's metrics into the flow's artifacts.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import PurePosixPath
from typing import Any

from pydantic import Field

from models import checkpoint, lake, storage
from models.gpt import GPTConfig
from models.train import RunSpec, TrainConfig, train
from tasks.runtime import (
    CRASH_RETRIES,
    StageConfig,
    code_version,
    config_hash,
    digest,
    flow_run_id,
    gpu_slot,
    lake_task,
    log,
    progress,
)

CODE = ("models", "tasks.pretrain")
SUMMARY_KEYS = (
    "checkpoint",
    "steps",
    "params",
    "flops_per_token",
    "final_loss",
    "val_loss",
    "val_bpb",
    "unigram_bpb",
    "tokens_per_s",
    "mfu",
    "tokens",
    "processes",
    "device",
)


class PretrainConfig(StageConfig):
    name: str = Field("base", description="The run: checkpoints go to checkpoints/{name}/step-N")
    model: GPTConfig = Field(default_factory=GPTConfig, description="Model shape (vocab_size is the tokenizer's)")
    train: TrainConfig = Field(
        default_factory=TrainConfig, description="Optimizer, schedule, batch, evaluation, checkpoints"
    )
    nproc: int = Field(1, ge=1, description="Processes on this node: >1 launches torchrun (one per GPU, DDP)")
    gpu_slots: int = Field(1, ge=1, description="Size of the `gpu` concurrency limit if a local run must create it")


def run_key(config: PretrainConfig | Any) -> str:
    """The hash a run's checkpoints must share to be continued: the config, except how many
    processes train it (N processes make one process's updates, so a run started on one GPU
    may go on on eight) and the size of the `gpu` limit."""
    return config_hash(config.model_copy(update={"nproc": 1, "gpu_slots": 1}))


def resume_or_start(run: str, config_key: str, inputs_key: str, resume: bool) -> bool:
    """Whether to continue the run's checkpoints (True) or start afresh (False).

    Checkpoints made with this very configuration on these very inputs are continued (a
    retry, a re-run after a crash, a re-run with new code); with `resume`, any are (e.g. to
    train longer; the trainer still refuses a different model shape). Otherwise the folder
    holds another run: it is moved aside to `{run}-{its config hash}` and a new run starts,
    so a run is never continued on other data, overwritten, or passed off as the result.
    """
    found = checkpoint.latest(run)
    if found is None:
        return False
    theirs = checkpoint.manifest(found)
    if (theirs.get("config_hash"), theirs.get("inputs_hash")) == (config_key, inputs_key) or resume:
        return True
    what = "configuration" if theirs.get("config_hash") != config_key else "token data or tokenizer"
    aside = f"{lake.normalize(run)}-{theirs.get('config_hash') or 'unknown'}-{theirs.get('inputs_hash') or 'unknown'}"
    fs, path = storage.filesystem(run)
    if fs.exists(storage.filesystem(aside)[1]):
        raise FileExistsError(
            f"{run} holds a run of another {what} and {aside} exists too: pass resume, or another name"
        )
    fs.mv(path, storage.filesystem(aside)[1], recursive=True)
    log.warning(
        "%s held a run of another %s (%s): moved it to %s; starting a new run (resume would continue it)",
        run,
        what,
        found,
        aside,
    )
    return False


@lake_task(
    inputs=("train_data", "val_data", "tokenizer"), code=CODE, retries=CRASH_RETRIES, task_run_name="train {run}"
)
def train_model(
    train_data: list[str], val_data: list[str], tokenizer: str, run: str, config: PretrainConfig, resume: bool = False
) -> dict[str, Any]:
    """Train (or continue) `run` and return its final metrics."""
    key = run_key(config)
    inputs = digest([lake.identity(u) for u in (*train_data, *val_data, tokenizer)], length=16)
    lineage = {
        "config_hash": key,
        "inputs_hash": inputs,
        "code_version": code_version(*CODE),
        "flow_run_id": flow_run_id(),
    }
    spec = RunSpec(data=train_data, val=val_data, tokenizer=tokenizer, out=run, lineage=lineage)
    with gpu_slot(config.gpu_slots), progress(config.train.steps, f"pretrain {run}", key="pretrain-progress") as bar:
        carry_on = resume_or_start(run, key, inputs, resume)
        if config.nproc > 1:
            check_batch(config.model, config.train, config.nproc)
            summary = torchrun(train_body(config.model, config.train, spec), config.nproc, carry_on, bar)
        else:
            summary = train(
                config.model,
                config.train,
                spec,
                resume=carry_on,
                on_step=lambda row: bar.advance(row["step"] - bar.done),
            )
    return {k: summary.get(k) for k in SUMMARY_KEYS}


def train_body(model: GPTConfig, train_cfg: TrainConfig, spec: RunSpec) -> dict[str, Any]:
    """What `python -m models.train --config` reads: the sections model, train, run."""
    return {"model": dataclasses.asdict(model), "train": dataclasses.asdict(train_cfg), "run": dataclasses.asdict(spec)}


def check_batch(model: GPTConfig, train_cfg: TrainConfig, nproc: int) -> None:
    """The trainer's batch rule, checked before launching processes: a ValueError here is a
    config mistake (not retried); the same error inside torchrun would read as a crash."""
    per_micro = train_cfg.device_batch * model.seq_len * nproc
    if train_cfg.batch_tokens % per_micro:
        raise ValueError(
            f"batch_tokens {train_cfg.batch_tokens} is not a multiple of device_batch x seq_len x nproc = "
            f"{train_cfg.device_batch} x {model.seq_len} x {nproc}"
        )


def torchrun(body: dict[str, Any], nproc: int, resume: bool, bar: Any, module: str = "models.train") -> dict[str, Any]:
    """Run `python -m {module} --config BODY --summary FILE [--resume]` as `nproc` processes on
    this node through torchrun (one per GPU, DDP over NCCL; gloo on CPUs), and return the
    summary rank 0 wrote. Progress follows rank 0's "step N/M |" lines. Pretraining, SFT and
    the RL update all launch through here."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg_path, summary_path = os.path.join(tmp, "run.json"), os.path.join(tmp, "summary.json")
        with open(cfg_path, "w") as f:
            json.dump(body, f)
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={nproc}",
            "-m",
            module,
            "--config",
            cfg_path,
            "--summary",
            summary_path,
            *(["--resume"] if resume else []),
        ]
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1) as proc:
            tail: list[str] = []
            for line in proc.stdout:  # type: ignore[union-attr]
                print(line, end="")
                tail = (tail + [line])[-40:]
                if match := re.match(r"step (\d+)/\d+ \|", line):
                    bar.advance(int(match.group(1)) - bar.done)
        if proc.returncode != 0:
            raise RuntimeError(f"torchrun exited with {proc.returncode}:\n{''.join(tail)}")
        with open(summary_path) as f:
            return json.load(f)


# -- the report --------------------------------------------------------------------------


def run_metrics(run: str) -> dict[str, Any]:
    """The metrics.json of the run's newest checkpoint (losses, evaluations, samples)."""
    return storage.read_json(storage.join(checkpoint.resolve(run), "metrics.json"))


def loss_curve_png(metrics: dict[str, Any], title: str) -> bytes:
    """Training and validation loss per step, and validation bits per byte against the
    unigram baseline, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train_rows, evals = metrics["train"], metrics["eval"]
    fig, (ax_loss, ax_bpb) = plt.subplots(1, 2, figsize=(11, 4))
    ax_loss.plot([r["step"] for r in train_rows], [r["loss"] for r in train_rows], lw=0.8, alpha=0.6, label="train")
    ax_loss.plot([e["step"] for e in evals], [e["val_loss"] for e in evals], "o-", label="validation")
    ax_loss.set(xlabel="step", ylabel="loss (nats/token)", title=title)
    ax_loss.legend()
    ax_bpb.plot([e["step"] for e in evals], [e["val_bpb"] for e in evals], "o-", label="model (validation)")
    if metrics.get("unigram_bpb"):
        ax_bpb.axhline(metrics["unigram_bpb"], color="grey", ls="--", label="unigram baseline")
    ax_bpb.set(xlabel="step", ylabel="bits per byte", title="validation bits per byte")
    ax_bpb.legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def report_markdown(run: str, summary: dict[str, Any], metrics: dict[str, Any], curve_uri: str, png: bytes) -> str:
    """The run's story: the numbers, the evaluation table, the samples, the loss curve
    (inline, since the UI cannot open a file in the lake, and linked)."""
    evals = metrics["eval"]
    train_by_step = {r["step"]: r for r in metrics["train"]}
    lines = [
        f"# Pretraining `{run}`",
        "",
        f"{summary['params'] / 1e6:.2f}M parameters, {summary['flops_per_token'] / 1e6:.1f} MFLOP per token, "
        f"{summary['steps']} steps, {summary['tokens']:,} tokens, median {summary['tokens_per_s']:,.0f} tokens/s"
        + (f", MFU {summary['mfu']:.1%}" if summary.get("mfu") else "")
        + ".",
        "",
        f"Validation: **{summary['val_bpb']:.4f} bits per byte**; a unigram model of the training tokens: "
        f"{summary['unigram_bpb']:.4f} bits per byte.",
        "",
        "| step | train loss | val loss | val bits/byte | lr | tokens/s |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for e in evals:
        t = train_by_step.get(e["step"])
        train_loss, lr, speed = (
            (f"{t['loss']:.4f}", f"{t['lr']:.2e}", f"{t['tokens_per_s']:,.0f}") if t else ("–", "–", "–")
        )
        lines.append(f"| {e['step']} | {train_loss} | {e['val_loss']:.4f} | {e['val_bpb']:.4f} | {lr} | {speed} |")
    inline = base64.b64encode(png).decode()
    lines += [
        "",
        f"![loss curve](data:image/png;base64,{inline})",
        "",
        f"Loss curve: [{curve_uri}]({curve_uri})",
        "",
        "## Samples",
        "",
    ]
    last = max((s["step"] for s in metrics["samples"]), default=None)
    for s in metrics["samples"]:
        if s["step"] == last:
            lines += [f"**{s['prompt']}**{s['text']}".replace("\n", " ⏎ "), ""]
    return "\n".join(lines)


def write_report(run: str, summary: dict[str, Any]) -> tuple[str, str]:
    """Write the loss curve into the lake beside the run's checkpoints; return the report's
    markdown and the curve's URI."""
    metrics = run_metrics(run)
    curve_uri = lake.join(run, "loss.png")
    png = loss_curve_png(metrics, PurePosixPath(run).name)
    storage.write_bytes(curve_uri, png, atomic=True)
    log.info("loss curve: %s", curve_uri)
    return report_markdown(run, summary, metrics, curve_uri, png), curve_uri
