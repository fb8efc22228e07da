"""CORE (DCLM, arXiv 2406.11794) as lm-eval tasks, scored the way nanochat scores it.

CORE is the mean *centered* accuracy over DCLM's 22 in-context tasks: each task's accuracy
with its random-guess baseline mapped to 0 and a perfect score to 1,
`(acc - baseline) / (1 - baseline)`. The tasks, their few-shot counts, continuation
delimiters and baselines come from DCLM's eval bundle (`core.yaml`, `eval_meta_data.csv`,
`eval_data/*.jsonl`), which nanochat downloads at run time from EVAL_BUNDLE_URL; so do we
(or read a folder or zip that `core_bundle` names, for machines without internet).

Each task becomes an lm-eval task YAML over a JSONL file we write, with the prompts already
rendered as nanochat renders them, so the numbers compare with nanochat's:
- items shuffled with random.Random(1337) (then cut to `limit`), and item i's few-shot
  examples drawn with random.Random(1234 + i) from the other items, joined by blank lines;
- multiple choice: one prompt per choice, scored on the tokens after the prefix all
  choices share; schema (Winograd): one prompt per option, scored on the tokens of the
  suffix they share; the option with the best mean log-probability per scored token wins
  (per token, not summed as lm-eval's `acc`). The shared part is found in our tokenizer's
  ids, as nanochat finds it in its own, and becomes the lm-eval context (or continuation);
- language modelling: correct when greedy decoding reproduces every continuation token.
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
import shutil
import tempfile
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

import yaml

from models.tokenizer import Tokenizer

EVAL_BUNDLE_URL = "https://karpathy-public.s3.us-west-2.amazonaws.com/eval_bundle.zip"
CACHE = Path(os.environ.get("CRAWL2CHAT_CACHE", Path.home() / ".cache" / "crawl2chat"))
PREFIX = "core_"  # our lm-eval task names: core_{label}


class DatasetUnreachable(RuntimeError):
    """A benchmark's data could not be fetched (no internet, hub down, wrong address)."""


# -- the bundle ------------------------------------------------------------------------------


def eval_bundle(source: str | None = None, cache: Path | None = None) -> Path:
    """DCLM's eval bundle as a folder: `source` when it is one, else unpacked from a zip file
    or URL (default nanochat's) into `cache` (default CACHE) once."""
    source = source or EVAL_BUNDLE_URL
    cache = cache or CACHE
    if Path(source).is_dir():
        return _bundle_root(Path(source))
    target = cache / "eval_bundle"
    if (target / "core.yaml").exists():
        return target
    if Path(source).is_file():
        data = Path(source).read_bytes()
    else:
        try:
            with urllib.request.urlopen(source, timeout=60) as response:
                data = response.read()
        except OSError as exc:
            raise DatasetUnreachable(
                f"dataset not reachable: CORE's eval bundle at {source} ({exc}); download it where the address is reachable "
                f"and pass its zip or folder as benchmark.core_bundle"
            ) from exc
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        zipfile.ZipFile(io.BytesIO(data)).extractall(tmp)
        root = _bundle_root(Path(tmp))
        if not target.exists():  # another process may have unpacked it meanwhile
            shutil.move(str(root), target)
    return target


def _bundle_root(folder: Path) -> Path:
    for candidate in (folder, folder / "eval_bundle"):
        if (candidate / "core.yaml").exists():
            return candidate
    raise FileNotFoundError(f"{folder} is not DCLM's eval bundle (no core.yaml)")


def bundle_tasks(bundle: Path) -> list[dict[str, Any]]:
    """The bundle's CORE tasks: label, type, few-shot count, delimiter, data file, baseline
    (as a fraction)."""
    baselines = {
        row["Eval Task"]: float(row["Random baseline"]) / 100
        for row in csv.DictReader(open(bundle / "eval_meta_data.csv", encoding="utf-8"))
    }
    tasks = []
    for t in yaml.safe_load((bundle / "core.yaml").read_text(encoding="utf-8"))["icl_tasks"]:
        fewshot = t["num_fewshot"]
        tasks.append(
            {
                "label": t["label"],
                "type": t["icl_task_type"],
                "fewshot": fewshot[0] if isinstance(fewshot, list) else fewshot,
                "delimiter": t.get("continuation_delimiter", " "),
                "data": bundle / "eval_data" / t["dataset_uri"],
                "baseline": baselines[t["label"]],
            }
        )
    return tasks


# -- rendering (nanochat's prompts) ----------------------------------------------------------


def _examples(items: list[dict[str, Any]], i: int, n: int) -> list[dict[str, Any]]:
    if n <= 0:
        return []
    others = [j for j in range(len(items)) if j != i]
    return [items[j] for j in random.Random(1234 + i).sample(others, n)]


def render(task_type: str, item: dict[str, Any], shots: list[dict[str, Any]], delim: str) -> dict[str, Any]:
    """One item as nanochat's whole prompts: {"prompts": one per option, "gold"} for choice
    and schema tasks; {"context", "continuation"} for language modelling."""
    if task_type == "multiple_choice":
        head = "".join(f"{s['query']}{delim}{s['choices'][s['gold']]}\n\n" for s in shots)
        return {"prompts": [f"{head}{item['query']}{delim}{c}" for c in item["choices"]], "gold": item["gold"]}
    if task_type == "schema":
        head = "".join(f"{s['context_options'][s['gold']]}{delim}{s['continuation']}\n\n" for s in shots)
        return {
            "prompts": [f"{head}{c}{delim}{item['continuation']}" for c in item["context_options"]],
            "gold": item["gold"],
        }
    if task_type == "language_modeling":
        head = "".join(f"{s['context'].strip()}{delim}{s['continuation']}\n\n" for s in shots)
        full = head + item["context"].strip() + delim + item["continuation"]
        context = (head + item["context"].strip() + delim).strip()
        return {"context": context, "continuation": full[len(context) :]}
    raise ValueError(f"unknown CORE task type {task_type!r}")


def shared_text(tokenizer: Tokenizer, prompts: list[str], side: str) -> int:
    """Characters at the start (side "prefix") or end ("suffix") of every prompt that are
    their common tokens, as nanochat finds the scored span: choices share a context and
    differ after it, schema options differ before a shared continuation. At least one
    token of each prompt stays outside (an option is never empty)."""
    seqs = [tokenizer.encode(p) for p in prompts]
    if side == "suffix":
        seqs = [s[::-1] for s in seqs]
    shortest = min(len(s) for s in seqs)
    n = next((k for k in range(shortest) if len({s[k] for s in seqs}) > 1), shortest)
    n = min(n, shortest - 1)
    while n > 0:  # a cut inside a character split over byte tokens moves to the token before
        ids = seqs[0][:n][::-1] if side == "suffix" else seqs[0][:n]
        text = tokenizer.decode(ids)
        if (prompts[0].endswith(text) if side == "suffix" else prompts[0].startswith(text)) and "\ufffd" not in text:
            return len(text)
        n -= 1
    return 0


def continuation_tokens(tokenizer: Tokenizer, context: str, continuation: str) -> int:
    """How many tokens lm-eval scores for `continuation` after `context` (its split: the pair
    encoded whole, cut at the context's length, trailing spaces moved to the continuation)."""
    stripped = context.rstrip()
    return max(1, len(tokenizer.encode(context + continuation)) - len(tokenizer.encode(stripped)))


def as_doc(task_type: str, rendered: dict[str, Any], tokenizer: Tokenizer) -> dict[str, Any]:
    """An lm-eval doc that scores nanochat's span: the shared part of the prompts moves to
    the context (choices) or the continuation (schema); `ntok` counts each option's tokens."""
    if task_type == "language_modeling":
        return rendered
    prompts, gold = rendered["prompts"], rendered["gold"]
    if task_type == "multiple_choice":
        cut = shared_text(tokenizer, prompts, "prefix")
        context, choices = prompts[0][:cut], [p[cut:] for p in prompts]
        return {
            "context": context,
            "choices": choices,
            "gold": gold,
            "ntok": [continuation_tokens(tokenizer, context, c) for c in choices],
        }
    cut = shared_text(tokenizer, prompts, "suffix")
    contexts, continuation = [p[: len(p) - cut] for p in prompts], prompts[0][len(prompts[0]) - cut :]
    return {
        "contexts": contexts,
        "continuation": continuation,
        "gold": gold,
        "ntok": [continuation_tokens(tokenizer, c, continuation) for c in contexts],
    }


def write_task(task: dict[str, Any], out: Path, tokenizer: Tokenizer, limit: int | None = None) -> str:
    """The lm-eval YAML and JSONL of one CORE task in `out`; returns its task name."""
    items = [json.loads(line) for line in open(task["data"], encoding="utf-8") if line.strip()]
    random.Random(1337).shuffle(items)
    items = items[:limit] if limit else items
    name = PREFIX + task["label"]
    docs = [
        as_doc(
            task["type"], render(task["type"], item, _examples(items, i, task["fewshot"]), task["delimiter"]), tokenizer
        )
        for i, item in enumerate(items)
    ]
    data = out / f"{name}.jsonl"
    data.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs), encoding="utf-8")
    config: dict[str, Any] = {
        "task": name,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data)}},
        "test_split": "test",
        "num_fewshot": 0,
        "metadata": {"version": 1, "baseline": task["baseline"]},
    }
    if task["type"] == "language_modeling":
        config |= {
            "output_type": "loglikelihood",
            "doc_to_text": "context",
            "doc_to_target": "continuation",
            "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
        }
    else:
        schema = task["type"] == "schema"
        config |= {
            "output_type": "multiple_choice",
            "target_delimiter": "",
            "doc_to_text": "gold" if schema else "context",
            "doc_to_choice": "contexts" if schema else "choices",
            "doc_to_target": "continuation" if schema else "gold",
            "process_results": "!function core_scoring.per_token",
            "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
        }
    text = yaml.safe_dump(config, sort_keys=False, allow_unicode=True).replace(
        "'!function core_scoring.per_token'", "!function core_scoring.per_token"
    )
    (out / f"{name}.yaml").write_text(text, encoding="utf-8")
    return name


def write_tasks(bundle: Path, out: Path, tokenizer: Tokenizer, limit: int | None = None) -> dict[str, float]:
    """Every CORE task of the bundle as lm-eval tasks in `out`; returns {task name: baseline}."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "core_scoring.py").write_text("from tasks.core import per_token  # noqa: F401\n", encoding="utf-8")
    return {write_task(t, out, tokenizer, limit): t["baseline"] for t in bundle_tasks(bundle)}


def per_token(doc: dict[str, Any], results: list[tuple[float, bool]]) -> dict[str, float]:
    """lm-eval's process_results for CORE's choice tasks: the option with the best mean
    log-probability per continuation token is the model's answer."""
    means = [ll / n for (ll, _), n in zip(results, doc["ntok"])]
    return {"acc": float(max(range(len(means)), key=means.__getitem__) == doc["gold"])}


def centered(accuracy: float, baseline: float) -> float:
    """Accuracy with the random baseline at 0 and a perfect score at 1 (CORE, ChatCORE)."""
    return (accuracy - baseline) / (1.0 - baseline)
