"""Checkpoints in the lake: `{lake}/checkpoints/{run}/step-{N:06d}/`, committed by a manifest.

A checkpoint folder holds
    model.safetensors   the weights (our names; models.gpt.to_hf renames them for HF)
    config.json         the model config, the training config, the tokenizer's URI
    optimizer.pt        the optimizer's state dict                      (training state)
    trainer.pt          step, data position, RNG states (python, numpy, torch, cuda)
    metrics.json        the run's history so far: losses, evaluations, samples
    _manifest.json      written last: the commit point
and exists only once `_manifest.json` is there, as a lake dataset does; the manifest has the
lake's fields (kind, parents, config hash, code version, flow run, created_at) so lineage and
cache keys treat a checkpoint like any dataset. A crash while saving leaves a folder without a
manifest, which `latest` skips: the previous checkpoint stays the one to resume from.

Everything loads without unpickling code: safetensors for weights, `torch.load(weights_only=
True)` for the optimizer and trainer state (tensors, numbers, strings, lists and dicts only).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import random
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import safetensors.torch
import torch

from models.gpt import GPT, GPTConfig
from models.storage import MANIFEST, filesystem, join, normalize, read_bytes, read_json, write_bytes

STEP_DIR = re.compile(r"step-(\d{6,})$")


def step_uri(run_uri: str, step: int) -> str:
    return join(run_uri, f"step-{step:06d}")


def committed_steps(run_uri: str) -> list[int]:
    """Steps of the run that have a manifest (complete checkpoints), ascending."""
    fs, root = filesystem(run_uri)
    if not fs.exists(root):
        return []
    steps = []
    for path in fs.ls(root, detail=False):
        match = STEP_DIR.search(path.rstrip("/"))
        if match and fs.exists(f"{path.rstrip('/')}/{MANIFEST}"):
            steps.append(int(match.group(1)))
    return sorted(steps)


def latest(run_uri: str) -> str | None:
    """The URI of the run's newest complete checkpoint, or None."""
    steps = committed_steps(run_uri)
    return step_uri(run_uri, steps[-1]) if steps else None


def resolve(uri: str) -> str:
    """A checkpoint URI from a checkpoint folder or a run folder (its latest checkpoint)."""
    fs, path = filesystem(uri)
    if fs.exists(f"{path}/{MANIFEST}"):
        return normalize(uri)
    found = latest(uri)
    if found is None:
        raise FileNotFoundError(f"no committed checkpoint at {uri}")
    return found


# -- RNG state as plain tensors and numbers (loadable with weights_only=True) -------------


def rng_state() -> dict[str, Any]:
    version, mt, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": [version, list(mt), gauss],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, mt, gauss = state["python"]
    random.setstate((version, tuple(mt), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# -- save and load -----------------------------------------------------------------------


def _torch_bytes(obj: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def save(
    run_uri: str,
    step: int,
    *,
    model: dict[str, torch.Tensor],
    config: dict[str, Any],
    optimizer: dict[str, Any] | None = None,
    trainer: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    lineage: dict[str, Any] | None = None,
) -> str:
    """Write a checkpoint: every file first, `_manifest.json` last. Returns its URI.

    `lineage` adds the lake's manifest fields: parents (token datasets, tokenizer),
    config_hash, code_version, flow_run_id, and stats.
    """
    uri = step_uri(run_uri, step)
    weights = {k: v.detach().contiguous().cpu() for k, v in model.items()}
    files = {
        "model.safetensors": safetensors.torch.save(weights),
        "config.json": json.dumps(config, indent=2, sort_keys=True).encode(),
    }
    if optimizer is not None:
        files["optimizer.pt"] = _torch_bytes(optimizer)
    if trainer is not None:
        files["trainer.pt"] = _torch_bytes(trainer)
    if metrics is not None:
        files["metrics.json"] = json.dumps(metrics, indent=1).encode()
    # An older manifest here (a save that is being redone) must not vouch for new files.
    fs, path = filesystem(uri)
    if fs.exists(f"{path}/{MANIFEST}"):
        fs.rm(f"{path}/{MANIFEST}")
    for name, data in files.items():
        write_bytes(join(uri, name), data)
    lineage = dict(lineage or {})
    record = {
        "kind": "checkpoint",
        "step": step,
        "files": [{"path": name, "bytes": len(data)} for name, data in files.items()],
        "schema_version": 1,
        "config_hash": lineage.pop("config_hash", ""),
        "code_version": lineage.pop("code_version", ""),
        "flow_run_id": lineage.pop("flow_run_id", None),
        "parents": sorted(normalize(p) for p in lineage.pop("parents", [])),
        "stats": {"step": step, **lineage.pop("stats", {})},
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        **lineage,  # anything else the caller wants on record (e.g. its inputs' identity)
    }
    commit(uri, record)
    return uri


def commit(uri: str, record: dict[str, Any]) -> None:
    """Make the checkpoint at `uri` visible by writing its manifest, `record` (atomic)."""
    write_bytes(join(uri, MANIFEST), json.dumps(record, indent=2, sort_keys=True).encode(), atomic=True)


def manifest(uri: str) -> dict[str, Any]:
    """The manifest of a checkpoint (a checkpoint folder, or a run folder: its latest): its
    step, files and the lake's lineage fields, with whatever else its trainer recorded
    (`inputs_hash`, an RL policy's `stats.weights_sha256`)."""
    return read_json(join(resolve(uri), MANIFEST))


@dataclass
class Checkpoint:
    uri: str
    step: int
    config: dict[str, Any]
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any] | None
    trainer: dict[str, Any] | None
    metrics: dict[str, Any] | None

    @property
    def model_config(self) -> GPTConfig:
        return GPTConfig(**self.config["model"])


def _exists(uri: str) -> bool:
    fs, path = filesystem(uri)
    return fs.exists(path)


def load(uri: str, *, training_state: bool = True, device: torch.device | str = "cpu") -> Checkpoint:
    """Load a checkpoint (a checkpoint folder, or a run folder: its latest). Without
    `training_state`, only the weights and config (what inference and SFT need)."""
    uri = resolve(uri)
    step = manifest(uri)["step"]
    model = safetensors.torch.load(read_bytes(join(uri, "model.safetensors")))
    model = {k: v.to(device) for k, v in model.items()}

    def state(name: str) -> dict[str, Any] | None:
        if not training_state or not _exists(join(uri, name)):
            return None
        return torch.load(io.BytesIO(read_bytes(join(uri, name))), map_location=device, weights_only=True)

    metrics = read_json(join(uri, "metrics.json")) if _exists(join(uri, "metrics.json")) else None
    return Checkpoint(
        uri,
        step,
        read_json(join(uri, "config.json")),
        model,
        state("optimizer.pt"),
        state("trainer.pt"),
        metrics,
    )


def load_model(uri: str, device: torch.device | str = "cpu") -> tuple[GPT, Checkpoint]:
    """A GPT with a checkpoint's weights, in eval mode (and the checkpoint, for its config)."""
    ckpt = load(uri, training_state=False, device=device)
    model = GPT(ckpt.model_config).to(device)
    model.load_state_dict(ckpt.model)
    return model.eval(), ckpt
