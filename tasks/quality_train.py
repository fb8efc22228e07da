"""Train a fastText quality classifier DCLM's way, for the curate chain's quality step.

DCLM's classifier separates a reference set (instruction data and ELI5 answers) from random
web documents: one fastText model with word bigrams, the two classes about equal in size, the
probability of the reference label as the quality score. Here the reference set is the user's
(JSONL/Parquet files, a glob, or a lake dataset, with a text column), the web documents are a
sample of a curated crawl's clean documents, and a held-out slice of both measures precision
and recall at a ladder of thresholds.

The trainer is `fasttext-numpy2` from PyPI. It cannot share the project's environment: it and
`fasttext-predict` (which the curate chain loads models with) both install a module called
`fasttext`, so the trainer lives in a folder of its own (`make fasttext-trainer`:
`pip install --target .cache/fasttext-trainer`) and runs in a child process with that folder
first on its path. The model it writes is a plain fastText model; the held-out scores come
from the chain's own scorer, so a model that the chain cannot load fails here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import heapq
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from pydantic import Field

from models import lake, storage
from tasks.curate.quality import DEFAULT_LABEL, FastTextScorer, fasttext_line
from tasks.runtime import StageConfig, lake_task
from tasks.sft.schema import _records, dataset_files
from tasks.tokenize import doc_hash

CODE = ("tasks.quality_train", "tasks.curate.quality")
REPO = Path(__file__).resolve().parents[1]
TRAINER = "fasttext-numpy2==0.10.4"
TRAINER_DIR = Path(os.environ.get("CRAWL2CHAT_FASTTEXT_TRAINER", REPO / ".cache" / "fasttext-trainer"))
NEGATIVE_LABEL = "__label__cc"
HELDOUT_SCHEMA = pa.schema(
    [
        ("threshold", pa.float64()),
        ("precision", pa.float64()),
        ("recall", pa.float64()),
        ("negatives_kept", pa.float64()),
        ("f1", pa.float64()),
    ]
)
EXAMPLES_KEPT = 5


class QualityTrainConfig(StageConfig):
    name: str = Field(
        "quality",
        description="Written to quality/{name} in the lake; curate with `--set quality.model=<lake>/quality/{name}`",
    )
    text_field: str = Field("text", description="The positives' text column")
    negatives_per_positive: float = Field(
        1.0, gt=0, description="Negatives sampled per positive (DCLM: balanced classes)"
    )
    max_positives: int | None = Field(
        None, ge=1, description="Use at most this many positives (the first by a hash of their text)"
    )
    min_chars: int = Field(1, ge=1, description="Positives and negatives shorter than this are skipped")
    holdout: float = Field(0.2, gt=0, lt=1, description="Share of each class held out for the precision/recall table")
    seed: int = 0
    epoch: int = Field(
        20,
        ge=1,
        description="Passes over the data. fastText's defaults (5 at lr 0.1) leave a classifier of a few hundred documents per class with every score near 0.5",
    )
    lr: float = Field(0.5, gt=0)
    dim: int = Field(100, ge=1)
    word_ngrams: int = Field(2, ge=1, description="2: unigrams and bigrams, as DCLM")
    min_count: int = Field(1, ge=1)
    bucket: int = Field(
        200_000,
        ge=1,
        description="Hash buckets of the bigrams; the model holds (words + bucket) x dim floats (fastText's default 2M makes 800 MB at dim 100)",
    )
    threads: int = Field(1, ge=1, description="fastText threads; 1 makes training deterministic")
    thresholds: list[float] = Field(
        [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9], description="Rows of the held-out table"
    )


# -- data ------------------------------------------------------------------------------------


def text_key(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


def read_positives(uris: list[str], config: QualityTrainConfig, stats: dict[str, Any]) -> dict[str, str]:
    """key -> text of every usable positive (exact duplicates once); the rest counted by reason."""
    skipped: Counter[str] = Counter()
    examples: list[str] = stats.setdefault("examples", [])
    texts: dict[str, str] = {}
    for uri in uris:
        for path in dataset_files(uri):
            for where, record in _records(path):
                text = record.get(config.text_field) if isinstance(record, dict) else None
                reason = None
                if not isinstance(record, dict):
                    reason = "not a JSON object"
                elif not isinstance(text, str):
                    reason = f"no {config.text_field!r} string"
                elif len(fasttext_line(text)) < config.min_chars:
                    reason = "too short"
                if reason:
                    skipped[reason] += 1
                    if len(examples) < EXAMPLES_KEPT:
                        examples.append(f"{where}: {reason}")
                    continue
                key = text_key(text)
                if key in texts:
                    skipped["duplicate"] += 1
                texts[key] = text
    stats["positives_skipped"] = dict(skipped)
    if config.max_positives and len(texts) > config.max_positives:
        chosen = sorted(texts, key=lambda k: doc_hash(k, f"positives-{config.seed}"))[: config.max_positives]
        texts = {k: texts[k] for k in chosen}
    return texts


def sample_negatives(clean_uri: str, n: int, exclude: set[str], config: QualityTrainConfig) -> dict[str, str]:
    """key -> text of `n` documents of a curated crawl, the same `n` for the same seed and
    data (the lowest salted hashes of their ids); none that is also a positive."""
    heap: list[tuple[float, str, str]] = []  # (-hash, key, text): the n smallest hashes
    for shard in lake.shard_uris(clean_uri):
        for batch in lake.iter_shard(shard, ["id", "text"]):
            for doc_id, text in zip(batch.column("id").to_pylist(), batch.column("text").to_pylist()):
                if not text or len(fasttext_line(text)) < config.min_chars:
                    continue
                h = doc_hash(doc_id, f"negatives-{config.seed}")
                if len(heap) == n and -heap[0][0] <= h:
                    continue
                key = text_key(text)
                if key in exclude:
                    continue
                heapq.heappush(heap, (-h, key, text))
                if len(heap) > n:
                    heapq.heappop(heap)
    return {key: text for _, key, text in heap}


def split(texts: dict[str, str], holdout: float, seed: int) -> tuple[list[str], list[str]]:
    """(train, held out) texts, by a hash of the text: a text's side depends on it alone."""
    train, held = [], []
    for key in sorted(texts):
        (held if doc_hash(key, f"holdout-{seed}") < holdout else train).append(texts[key])
    return train, held


# -- training --------------------------------------------------------------------------------


def trainer_python_path() -> str:
    """The folder holding the full fastText library, checked to have its trainer."""
    probe = subprocess.run(
        [sys.executable, "-c", "import fasttext; assert hasattr(fasttext, 'train_supervised'), fasttext.__file__"],
        env={**os.environ, "PYTHONPATH": str(TRAINER_DIR)},
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        raise RuntimeError(
            f"no fastText trainer in {TRAINER_DIR}: run `make fasttext-trainer` (pip install --no-deps --target "
            f"{TRAINER_DIR} {TRAINER}), or point CRAWL2CHAT_FASTTEXT_TRAINER at such a folder"
        )
    return str(TRAINER_DIR)


_TRAIN = """
import json, sys
import fasttext
args = json.loads(sys.argv[1])
fasttext.train_supervised(**args).save_model(sys.argv[2])
"""


def train_fasttext(lines: list[str], model_path: str, config: QualityTrainConfig) -> None:
    """fastText supervised training on `lines` ("__label__x text"), in the trainer's process."""
    pythonpath = trainer_python_path()
    with tempfile.TemporaryDirectory(prefix="quality-train-") as tmp:
        data = Path(tmp) / "train.txt"
        data.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        args = dict(
            input=str(data),
            epoch=config.epoch,
            lr=config.lr,
            dim=config.dim,
            wordNgrams=config.word_ngrams,
            minCount=config.min_count,
            bucket=config.bucket,
            thread=config.threads,
            seed=config.seed,
            verbose=0,
        )
        done = subprocess.run(
            [sys.executable, "-c", _TRAIN, json.dumps(args), model_path],
            env={**os.environ, "PYTHONPATH": pythonpath},
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise RuntimeError(f"fastText training failed: {done.stderr.strip()[-2000:]}")


def heldout_table(pos_scores: np.ndarray, neg_scores: np.ndarray, thresholds: list[float]) -> list[dict[str, float]]:
    """Precision and recall of the positive class at each threshold (keep: score >= threshold),
    and the share of web documents that would still be kept."""
    rows = []
    for t in thresholds:
        tp, fp = int((pos_scores >= t).sum()), int((neg_scores >= t).sum())
        precision = tp / (tp + fp) if tp + fp else None  # nothing kept: not measurable
        recall = tp / len(pos_scores)
        f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
        rows.append(
            {"threshold": t, "precision": precision, "recall": recall, "negatives_kept": fp / len(neg_scores), "f1": f1}
        )
    return rows


def roc_auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(a random positive outscores a random negative), ties counting half."""
    scores = np.concatenate([pos, neg])
    order = scores.argsort(kind="stable")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    # average ranks over ties
    _, starts, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    for start, count in zip(starts, counts):
        ranks[order[start : start + count]] = start + (count + 1) / 2
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


@lake_task(inputs=("positives", "negatives"), code=CODE, task_run_name="quality-train-{out}")
def train_quality_model(positives: list[str], negatives: str, out: str, config: QualityTrainConfig) -> dict[str, Any]:
    """Read, sample, split, train, score the held-out slice; write the model file and the
    held-out table into `out` (content-addressed names). The flow commits the manifest."""
    stats: dict[str, Any] = {}
    pos = read_positives(positives, config, stats)
    if not pos:
        raise ValueError(f"no usable positives in {positives}: {stats['positives_skipped']}")
    neg = sample_negatives(negatives, max(1, round(len(pos) * config.negatives_per_positive)), set(pos), config)
    if not neg:
        raise ValueError(f"{negatives} has no documents to sample negatives from")
    pos_train, pos_held = split(pos, config.holdout, config.seed)
    neg_train, neg_held = split(neg, config.holdout, config.seed)
    if not (pos_train and neg_train and pos_held and neg_held):
        raise ValueError(
            f"too few documents to train and hold out: positives {len(pos_train)}+{len(pos_held)}, negatives {len(neg_train)}+{len(neg_held)}"
        )
    lines = [f"{DEFAULT_LABEL} {fasttext_line(t)}" for t in pos_train] + [
        f"{NEGATIVE_LABEL} {fasttext_line(t)}" for t in neg_train
    ]
    random.Random(config.seed).shuffle(lines)  # SGD sees the classes mixed
    with tempfile.TemporaryDirectory(prefix="quality-model-") as tmp:
        local = str(Path(tmp) / "model.bin")
        started = time.perf_counter()
        train_fasttext(lines, local, config)
        train_seconds = time.perf_counter() - started
        scorer = FastTextScorer(local, DEFAULT_LABEL)
        pos_scores, neg_scores = scorer.score(pos_held), scorer.score(neg_held)
        data = Path(local).read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    model_file = f"model.{sha[:16]}.bin"
    storage.write_bytes(lake.join(out, model_file), data, atomic=True)
    table = heldout_table(pos_scores, neg_scores, config.thresholds)
    shard = lake.write_shard(out, "heldout", pa.Table.from_pylist(table, schema=HELDOUT_SCHEMA))
    stats.update(
        model_file=model_file,
        model_sha256=sha,
        model_bytes=len(data),
        trainer=TRAINER,
        train_seconds=round(train_seconds, 2),
        positives=len(pos),
        negatives=len(neg),
        train={"positives": len(pos_train), "negatives": len(neg_train)},
        held_out={"positives": len(pos_held), "negatives": len(neg_held)},
        roc_auc=roc_auc(pos_scores, neg_scores),
        heldout=table,
        labels={"positive": DEFAULT_LABEL, "negative": NEGATIVE_LABEL},
    )
    return {"shard": dataclasses.asdict(shard), "stats": stats}
