"""Problems with known integer answers: what RL samples solutions to and scores them against.

One schema for every source (`SCHEMA`): id, prompt (the user's message), answer, source,
template, difficulty, and `holdout` (why an evaluation problem is new to the policy).

- generated: word problems from tasks/mathgen.py at the config's difficulties. Training
  problems come from the seed namespace `rl:{seed}:train:{i}`, evaluation problems from
  `rl:{seed}:eval:{i}` (SFT's are `sft:...`, so no split shares a seed). RL trains only on
  mathgen's training families; evaluation alternates between them (`holdout="seed"`: a
  family RL trains on, numbers and wording it never saw) and the held-out families
  (`holdout="family"`: structures no training set, SFT, RL or pretraining, draws from).
  An evaluation problem whose text equals a training problem's is dropped.
- users' files: JSONL or Parquet rows with `prompt` (or `question`) and `answer`, by URI or
  glob, local or s3://. The answer is an integer, or text holding one (commas as thousands
  separators; GSM8K's "... #### 72" form: the number after ####). Every other row is
  skipped and counted by reason. Rows are held out for evaluation by a hash of their id.

A prompt must leave room to answer in the model's context (`check_room`): a longer one is
a counted skip, never a crash in a rollout.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from models import lake
from models.chat import render_for_completion, tools_of
from models.tokenizer import Tokenizer
from tasks import mathgen
from tasks.rl import CODE, ProblemConfig
from tasks.runtime import lake_task
from tasks.sft.generate import fraction
from tasks.sft.schema import _records, dataset_files

SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("prompt", pa.string()),
        ("answer", pa.int64()),
        ("source", pa.string()),
        ("template", pa.string()),
        ("difficulty", pa.int32()),
        ("holdout", pa.string()),  # "" for training; seed, family or id for evaluation
    ]
)
SPLITS = ("train", "eval")
MAX_PROMPT_CHARS = 4000
EXAMPLES_KEPT = 5
_INTEGER = re.compile(r"-?\d{1,3}(,\d{3})+|-?\d+")


class BadProblem(ValueError):
    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def problem_row(
    id: str, prompt: str, answer: int, source: str, template: str = "", difficulty: int = 0, holdout: str = ""
) -> dict[str, Any]:
    return {
        "id": id,
        "prompt": prompt,
        "answer": int(answer),
        "source": source,
        "template": template,
        "difficulty": difficulty,
        "holdout": holdout,
    }


# -- generated -------------------------------------------------------------------------------


def training_families(config: ProblemConfig) -> list[str]:
    """The families RL trains on: the config's, which must all be training families."""
    unknown = sorted(set(config.families) - set(mathgen.FAMILIES))
    if unknown:
        raise ValueError(f"unknown mathgen families {unknown}; known: {sorted(mathgen.TRAIN_FAMILIES)}")
    heldout = sorted(set(config.families) & set(mathgen.HELDOUT_FAMILIES))
    if heldout:
        raise ValueError(f"{heldout} are held-out families: no training set may draw from them")
    return list(config.families or mathgen.TRAIN_FAMILIES)


def generated(config: ProblemConfig, seed: int) -> dict[str, list[dict[str, Any]]]:
    """Training and evaluation problems from mathgen; families and difficulties are cycled
    so that every split is balanced over them. Prompts are worded as users write them
    (some numbers in words)."""
    train_families = training_families(config)
    bad = [d for d in config.difficulty if not 1 <= d <= mathgen.MAX_DIFFICULTY]
    if bad or not config.difficulty:
        raise ValueError(f"difficulties must be 1..{mathgen.MAX_DIFFICULTY}, got {config.difficulty}")
    out: dict[str, list[dict[str, Any]]] = {"train": [], "eval": []}

    def make(split: str, i: int, family: str) -> mathgen.Problem:
        difficulty = config.difficulty[i % len(config.difficulty)]
        return mathgen.make_problem(f"rl:{seed}:{split}:{i}", difficulty, family, words=None)

    for i in range(config.train):
        p = make("train", i, train_families[i % len(train_families)])
        out["train"].append(problem_row(f"math-train-{i:06d}", p.question, p.answer, "mathgen", p.family, p.difficulty))
    seen = {r["prompt"] for r in out["train"]}
    groups = [train_families] + ([list(mathgen.HELDOUT_FAMILIES)] if config.heldout_families else [])
    for i in range(config.eval):
        families = groups[i % len(groups)]
        p = make("eval", i, families[(i // len(groups)) % len(families)])
        if p.question in seen:
            continue
        holdout = "family" if p.heldout else "seed"
        out["eval"].append(
            problem_row(f"math-eval-{i:06d}", p.question, p.answer, "mathgen", p.family, p.difficulty, holdout)
        )
    return out


# -- users' files ------------------------------------------------------------------------------


def parse_answer(value: Any) -> int:
    """An integer answer from a user's cell: an int, an integral float, or text holding one
    integer (after GSM8K's '####' when there is one), within 64 bits."""
    answer = _parse_answer(value)
    if not -(2**63) <= answer < 2**63:
        raise BadProblem("answer too large", f"{len(str(abs(answer)))} digits")
    return answer


def _parse_answer(value: Any) -> int:
    if isinstance(value, bool) or value is None:
        raise BadProblem("no answer" if value is None else "answer is not an integer", repr(value))
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if value.is_integer():
            return int(value)
        raise BadProblem("answer is not an integer", repr(value))
    if not isinstance(value, str):
        raise BadProblem("answer is not an integer", type(value).__name__)
    text = value.rsplit("####", 1)[-1].strip().rstrip(".")
    if not text:
        raise BadProblem("no answer", "empty")
    if not _INTEGER.fullmatch(text):
        raise BadProblem("answer is not an integer", text[:40])
    return int(text.replace(",", ""))


def parse_problem(record: Any) -> tuple[str, int]:
    """(prompt, answer) of a user's row, or BadProblem with a countable reason."""
    if isinstance(record, Exception):
        raise BadProblem(getattr(record, "reason", "unreadable row"), str(record))
    if not isinstance(record, dict):
        raise BadProblem("row is not an object")
    prompt = record.get("prompt", record.get("question"))
    if prompt is None:
        raise BadProblem("no prompt or question", f"keys {sorted(record)[:8]}")
    if not isinstance(prompt, str):
        raise BadProblem("prompt is not text", type(prompt).__name__)
    if not prompt.strip():
        raise BadProblem("empty prompt")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise BadProblem("prompt too long", f"{len(prompt):,} characters")
    if "answer" not in record:
        raise BadProblem("no answer", f"keys {sorted(record)[:8]}")
    return prompt.strip(), parse_answer(record["answer"])


def user_problems(
    uri: str, seed: int, eval_fraction: float, stats: dict[str, Any]
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(split, row) for every usable row of a user's file; the rest counted in
    stats["skipped"] by reason, a few quoted in stats["examples"]."""
    skipped: Counter[str] = Counter()
    examples: list[str] = stats.setdefault("examples", [])
    for where, record in _records(uri):
        stats["rows"] = stats.get("rows", 0) + 1
        try:
            prompt, answer = parse_problem(record)
        except BadProblem as bad:
            skipped[bad.reason] += 1
            if len(examples) < EXAMPLES_KEPT:
                examples.append(f"{where}: {bad}")
            continue
        rid = record.get("id")
        rid = str(rid) if rid is not None else f"{uri}#{where}"
        split = "eval" if fraction("rl-eval", seed, rid) < eval_fraction else "train"
        yield split, problem_row(rid, prompt, answer, uri, holdout="id" if split == "eval" else "")
    stats["skipped"] = dict(Counter(stats.get("skipped", {})) + skipped)


def user_files(config: ProblemConfig) -> list[str]:
    return [f for uri in config.datasets for f in dataset_files(uri)]


# -- room in the context -----------------------------------------------------------------------


def prompt_tokens(tokenizer: Tokenizer, prompt: str, tool: str = "any") -> list[int]:
    """The prompt as the engine sees it: one user turn, then <|assistant_start|>, then for a
    `tool` other than "any" that tool's opening token (the policy is asked to use it)."""
    ids = render_for_completion(tokenizer, [{"role": "user", "content": prompt}])
    return ids if tool == "any" else [*ids, tokenizer.special(tools_of(tokenizer)[tool][0])]


def check_room(
    rows: list[dict[str, Any]], tokenizer: Tokenizer, seq_len: int, min_new_tokens: int, stats: dict[str, Any]
) -> list[dict[str, Any]]:
    """The rows whose prompt leaves at least `min_new_tokens` of the context to answer in;
    the others are counted as "prompt too long for the context"."""
    kept = [
        r for r in rows if len(prompt_tokens(tokenizer, r["prompt"])) + 1 + min_new_tokens <= seq_len
    ]  # +1: a tool's opening token
    if len(kept) < len(rows):
        skipped = stats.setdefault("skipped", {})
        skipped["prompt too long for the context"] = (
            skipped.get("prompt too long for the context", 0) + len(rows) - len(kept)
        )
    return kept


def to_table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=SCHEMA)


# -- the tasks ---------------------------------------------------------------------------------


def _write(out: str, part: str, rows: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Shard `part` of each split under `out` (empty ones too, so every split lists every part)."""
    written = {}
    for split in SPLITS:
        shard = lake.write_shard(lake.join(out, split), part, to_table(rows.get(split, [])))
        written[split] = {"path": shard.path, "rows": shard.rows, "bytes": shard.bytes, "sha256": shard.sha256}
    return written


@lake_task(inputs=("tokenizer",), code=CODE, task_run_name="generate problems")
def generate_problems(
    out: str, config: ProblemConfig, seed: int, tokenizer: str, seq_len: int, max_new_tokens: int
) -> dict[str, Any]:
    """mathgen's training and held-out problems, as the part `part-generated` of each split."""
    tok, stats = Tokenizer.load(tokenizer), {"source": "mathgen"}
    rows = {
        split: check_room(found, tok, seq_len, max_new_tokens, stats)
        for split, found in generated(config, seed).items()
    }
    return {**stats, "shards": _write(out, "part-generated", rows)}


@lake_task(inputs=("uri", "tokenizer"), code=CODE, task_run_name="import problems {part}")
def import_problems(
    uri: str, out: str, part: str, config: ProblemConfig, seed: int, tokenizer: str, seq_len: int, max_new_tokens: int
) -> dict[str, Any]:
    """A user's file of problems: usable rows into train or eval (by an id hash), the
    others counted by reason."""
    tok, stats = Tokenizer.load(tokenizer), {"source": uri}
    rows: dict[str, list[dict[str, Any]]] = {split: [] for split in SPLITS}
    for split, row in user_problems(uri, seed, config.eval_fraction, stats):
        rows[split].append(row)
    rows = {split: check_room(found, tok, seq_len, max_new_tokens, stats) for split, found in rows.items()}
    return {**stats, "shards": _write(out, part, rows)}
