"""Model-based quality scoring: the step after FineWeb's heuristic filters, before dedup.

Two scorers behind one interface, `score(texts) -> float32 array`:

- `FastTextScorer`: the probability of one label (DCLM's classifier is one; `crawl2chat
  quality train` makes one). CPU, one document at a time, whitespace collapsed to single
  spaces as DCLM does (fastText reads a newline as the end of the input).
- `TransformersScorer`: a sequence-classification model (FineWeb-Edu's classifier is one: a
  regression head scoring educational value 0-5). Batched, on the worker's GPU when it has
  one. A one-output head's value is the score; with several outputs, the softmax
  probability of `label`.

Documents are sorted by length before batching so that a batch pads little. A fastText score
does not depend on the other documents at all; a transformers score only through float
rounding under padding (about 1e-6), so the decisions are the same whatever the sharding.

`resolve` says what kind of model a config names, where its files are and its identity (for
cache keys: a folder's files, a lake model's manifest, a hub model's name and revision);
`scorer` loads it once per process.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import re
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models import lake
from tasks.curate.config import QualityConfig
from tasks.runtime import digest

TRAINED_KIND = "quality-fasttext"  # the manifest kind of a `crawl2chat quality train` model folder
DEFAULT_LABEL = "__label__hq"
_HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def fasttext_line(text: str) -> str:
    """A document as one fastText input line: whitespace runs become one space."""
    return " ".join(text.split())


# -- which model ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelRef:
    kind: str  # "fasttext" | "transformers"
    uri: str  # a file or folder URI, or a hub name
    identity: str  # changes exactly when the model does
    hub: bool = False


def _files_identity(uri: str) -> str:
    """A folder's identity: every file's relative path with its ETag or size and mtime."""
    fs, path = lake.filesystem(uri)
    infos = fs.find(path, detail=True)
    parts = []
    for name in sorted(infos):
        info = infos[name]
        tag = (
            info.get("ETag")
            or info.get("etag")
            or f"{info.get('size')}:{info.get('mtime') or info.get('LastModified')}"
        )
        parts.append(f"{name[len(path) :]}={str(tag).strip(chr(34))}")
    return f"{lake.normalize(uri)}#" + hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def resolve(config: QualityConfig) -> ModelRef:
    """The model `config.model` names (without loading it)."""
    model = config.model
    if not model:
        raise ValueError("the quality step has no model (quality.model is null)")
    local = "://" not in model
    if local and not Path(model).exists() and _HUB_NAME.match(model):
        if config.kind == "fasttext":
            raise ValueError(f"{model!r}: a fastText model is a .bin file or a `quality train` folder, not a hub name")
        return ModelRef("transformers", model, f"hub:{model}@{config.revision or 'main'}", hub=True)
    uri = lake.normalize(model)
    fs, path = lake.filesystem(uri)
    if not fs.exists(path):
        raise FileNotFoundError(f"no quality model at {model} (a file, a folder, a lake URI or a hub name owner/name)")
    if fs.isdir(path):
        found = lake.read_manifest(uri)
        if found is not None:
            if found.kind != TRAINED_KIND:
                raise ValueError(f"{model} is a {found.kind!r} dataset, not a quality model")
            return ModelRef("fasttext", lake.join(uri, found.stats["model_file"]), "dataset:" + found.fingerprint())
        if config.kind == "fasttext":
            raise ValueError(f"{model} is a folder: give the fastText .bin file")
        return ModelRef("transformers", uri, _files_identity(uri))
    kind = config.kind
    if kind == "auto":
        if not path.endswith((".bin", ".ftz")):
            raise ValueError(
                f"{model}: set quality.kind (a fastText model ends in .bin or .ftz; a transformers model is a folder)"
            )
        kind = "fasttext"
    if kind == "transformers":
        raise ValueError(f"{model} is a file: a transformers model is a folder or a hub name")
    return ModelRef("fasttext", uri, lake.identity(uri))


def local_path(ref: ModelRef) -> str:
    """Where the model's files are on this machine: the path itself, or a copy of a lake
    model in the temp folder, named by its identity (so a changed model is fetched again)."""
    if ref.hub or not lake.is_remote(ref.uri):
        return ref.uri
    name = ref.uri.rstrip("/").rsplit("/", 1)[-1]
    target = Path(tempfile.gettempdir()) / "crawl2chat-models" / digest(ref.identity, length=16) / name
    if not target.exists():
        fs, path = lake.filesystem(ref.uri)
        partial = target.parent / f".{name}.{os.getpid()}.{threading.get_ident()}"
        partial.parent.mkdir(parents=True, exist_ok=True)
        fs.get(path, str(partial), recursive=fs.isdir(path))
        os.replace(partial, target)
    return str(target)


# -- the scorers ----------------------------------------------------------------------------


class FastTextScorer:
    range = (0.0, 1.0)

    def __init__(self, path: str, label: str | None):
        import fasttext  # fasttext-predict: loads any fastText model, trains none

        self.model = fasttext.load_model(path)
        self.label = label or DEFAULT_LABEL
        labels = self.model.predict("", k=-1)[0]  # every label (fasttext-predict has no get_labels)
        if self.label not in labels:
            raise ValueError(f"{path}: no label {self.label!r} (it has {list(labels[:10])}); set quality.label")

    def score(self, texts: list[str]) -> np.ndarray:
        out = np.empty(len(texts), np.float32)
        for i, text in enumerate(texts):
            labels, probs = self.model.predict(fasttext_line(text), k=-1)
            out[i] = dict(zip(labels, probs)).get(self.label, 0.0)
        return out


def pick_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


class TransformersScorer:
    def __init__(self, source: str, config: QualityConfig):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.torch = torch
        self.device = torch.device(pick_device(config.device))
        self.tokenizer = AutoTokenizer.from_pretrained(source, revision=config.revision)
        model = AutoModelForSequenceClassification.from_pretrained(source, revision=config.revision)
        self.model = model.to(device=self.device, dtype=getattr(torch, config.dtype)).eval()
        # no longer than the model's positions allow (FineWeb-Edu's: 512, as the default)
        limits = [
            config.max_length,
            getattr(self.model.config, "max_position_embeddings", None),
            self.tokenizer.model_max_length,
        ]
        self.batch_size, self.max_length = (
            config.batch_size,
            min(n for n in limits if isinstance(n, int) and n < 1_000_000),
        )
        outputs = self.model.config.num_labels
        self.column: int | None = None  # None: a regression head, its one value is the score
        if outputs > 1:
            names = {name: int(i) for i, name in self.model.config.id2label.items()}
            label = config.label if config.label is not None else self.model.config.id2label[outputs - 1]
            if label in names:
                self.column = names[label]
            elif str(label).isdigit() and int(label) < outputs:
                self.column = int(label)
            else:
                raise ValueError(f"{source}: no label {label!r} (it has {sorted(names)}); set quality.label")
        self.range = (0.0, 5.0) if self.column is None else (0.0, 1.0)

    def score(self, texts: list[str]) -> np.ndarray:
        torch = self.torch
        out = np.empty(len(texts), np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            encoded = self.tokenizer(
                [texts[i] for i in batch],
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            ).to(self.device)
            with torch.inference_mode():
                logits = self.model(**encoded).logits.float()
            values = logits[:, 0] if self.column is None else logits.softmax(-1)[:, self.column]
            out[batch] = values.cpu().numpy()
        return out


_lock = threading.Lock()


@functools.lru_cache(maxsize=4)
def _load(ref: ModelRef, config_json: str) -> FastTextScorer | TransformersScorer:
    config = QualityConfig.model_validate_json(config_json)
    if ref.kind == "fasttext":
        return FastTextScorer(local_path(ref), config.label)
    return TransformersScorer(local_path(ref), config)


def scorer(config: QualityConfig) -> FastTextScorer | TransformersScorer:
    """The scorer for a config, loaded once per process (the worker's threads share it)."""
    ref = resolve(config)
    with _lock:
        # the threshold and histogram do not change the scores: one loaded model serves all
        return _load(ref, config.model_copy(update={"threshold": 0.0, "histogram": None}).model_dump_json())


# -- the histogram --------------------------------------------------------------------------


class Histogram:
    """Counts of scores in fixed bins (`low`..`high` in `bins` steps, plus one bin either
    side), as an ordered dict of label -> count: shards' histograms add up key by key."""

    def __init__(self, low: float, high: float, bins: int):
        if not (high > low and bins >= 1):
            raise ValueError(f"histogram needs high > low and bins >= 1, got {(low, high, bins)}")
        self.edges = np.linspace(low, high, bins + 1)
        inner = [f"[{a:.3g}, {b:.3g})" for a, b in zip(self.edges[:-1], self.edges[1:])]
        self.labels = [f"< {low:.3g}", *inner, f">= {high:.3g}", "no score"]
        self.counts = dict.fromkeys(self.labels, 0)

    def add(self, score: float) -> None:
        if math.isnan(score):
            label = self.labels[-1]
        else:
            label = self.labels[int(np.searchsorted(self.edges, score, side="right"))]
        self.counts[label] += 1

    @staticmethod
    def for_scorer(config: QualityConfig, scorer_range: tuple[float, float]) -> Histogram:
        low, high, bins = config.histogram or (*scorer_range, 10)
        return Histogram(low, high, bins)
