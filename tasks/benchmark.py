"""Standard benchmarks through lm-evaluation-harness: any lm-eval task on a checkpoint.

    crawl2chat benchmark --checkpoint base --tasks core          # DCLM's CORE (base models)
    crawl2chat benchmark --checkpoint sft --tasks chat           # ARC-E/C, MMLU, GSM8K, HumanEval; ChatCORE
    crawl2chat benchmark --checkpoint sft --tasks hellaswag,my_task --include-path my_tasks/

The model is `models.harness.EngineLM` (our engine as an lm-eval LM); chat checkpoints get the
chat template. Two named groups stand for task lists and add a headline number:
- `core`: DCLM's 22 tasks from its eval bundle (tasks/core.py), and CORE, their mean
  centered accuracy, as nanochat computes it;
- `chat`: nanochat's chat suite, lm-eval's `arc_easy`, `arc_challenge`, `mmlu`, `gsm8k`
  (strict "#### N" match) and `humaneval` (pass@1), and ChatCORE, the mean centered accuracy
  with baselines 0.25 for the four-choice tasks and 0 for the open-ended ones (nanochat's).
  HumanEval executes model-written code, which lm-eval does without a sandbox: it runs only
  with `allow_code_execution`, else it is reported "not measured" (and so is ChatCORE).

Task data comes from the internet at run time (the Hugging Face hub; CORE's bundle from
nanochat's address): where it cannot be fetched the run stops before loading the model
with "dataset not reachable" and the tasks concerned. Local task YAMLs (`include_path`) run
offline. Results: one row per task and metric, in `evals/{run}/{stage}/benchmarks/step-N`.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
from pydantic import Field

from models import lake
from tasks import core
from tasks.runtime import StageConfig, digest, lake_task

KIND = "benchmark-results"
CODE = ("tasks.benchmark", "tasks.core", "models.harness", "models.engine", "models.gpt")
# The chat group: task -> (the lm-eval metric it is judged by, the random baseline).
CHAT = {
    "arc_easy": ("acc,none", 0.25),
    "arc_challenge": ("acc,none", 0.25),
    "mmlu": ("acc,none", 0.25),
    "gsm8k": ("exact_match,strict-match", 0.0),
    "humaneval": ("pass@1,create_test", 0.0),
}
CODE_TASKS = ("humaneval", "mbpp")  # tasks that execute what the model writes
STAGES = ("pretrain", "sft", "rl")

RESULT_SCHEMA = pa.schema(
    [
        ("task", pa.string()),
        ("metric", pa.string()),  # lm-eval's key ("acc,none"), or "centered accuracy" for CORE/ChatCORE
        ("value", pa.float64()),  # null: not measured (see note)
        ("stderr", pa.float64()),
        ("samples", pa.int64()),
        ("group", pa.string()),  # core, chat, or "" for a task asked by name
        ("baseline", pa.float64()),  # the random baseline a group centers by
        ("centered", pa.float64()),
        ("note", pa.string()),
    ]
)


class BenchmarkConfig(StageConfig):
    tasks: list[str] = Field(
        default_factory=list, description="lm-eval tasks or groups (core, chat) for `crawl2chat benchmark`"
    )
    after: dict[Literal["pretrain", "sft", "rl"], list[str]] = Field(
        default_factory=dict,
        description="The pipeline benchmarks each stage's checkpoint on these, e.g. {pretrain: [core], sft: [chat]}",
    )
    limit: int | None = Field(
        None, ge=1, description="Items per task (all when unset): a quick look, not a score to report"
    )
    num_fewshot: int | None = Field(
        None, ge=0, description="Few-shot examples (each task's default when unset; CORE's are fixed)"
    )
    batch_size: int = Field(16, ge=1, description="Loglikelihood requests per forward pass")
    max_gen_toks: int = Field(256, ge=1, description="Most new tokens per generation (a task's own setting wins)")
    device: str = Field("auto", description="auto: cuda when there is one, else cpu")
    include_path: list[str] = Field(default_factory=list, description="Folders of your own lm-eval task YAMLs")
    core_bundle: str | None = Field(
        None, description="DCLM's eval bundle: a folder, zip or URL (default: nanochat's address)"
    )
    allow_code_execution: bool = Field(
        False, description="Run code tasks (HumanEval): lm-eval executes model-written code unsandboxed"
    )
    seed: int = 1234


class Plan:
    """What a task list asks for: lm-eval task names, with the group and metric each counts for."""

    def __init__(self, requested: list[str], config: BenchmarkConfig, tokenizer: Any, workdir: Path):
        self.tasks: list[str] = []
        self.groups: dict[str, tuple[str, str, float]] = {}  # task -> (group, metric, baseline)
        self.skipped: dict[str, str] = {}  # task -> why not measured
        self.unreachable: dict[str, str] = {}  # group or task -> why its data could not be fetched
        self.include = list(config.include_path)
        for name in dict.fromkeys(t.strip() for t in requested if t.strip()):
            if name == "core":
                try:
                    bundle = core.eval_bundle(config.core_bundle)
                except core.DatasetUnreachable as exc:
                    self.unreachable["core"] = str(exc)
                    continue
                folder = workdir / "core"
                for task, baseline in core.write_tasks(bundle, folder, tokenizer, config.limit).items():
                    self.add(task, ("core", "acc,none", baseline))
                self.include.append(str(folder))
            elif name == "chat":
                for task, (metric, baseline) in CHAT.items():
                    self.add(task, ("chat", metric, baseline))
            else:
                self.add(name, None)
        for task in self.tasks:
            if task in CODE_TASKS and not config.allow_code_execution:
                self.skipped[task] = (
                    "not measured: it runs model-written code, which lm-eval does unsandboxed (set allow_code_execution)"
                )
        self.run = [t for t in self.tasks if t not in self.skipped]

    def add(self, task: str, group: tuple[str, str, float] | None) -> None:
        if task not in self.tasks:
            self.tasks.append(task)
        if group:
            self.groups[task] = group


# -- reachability ------------------------------------------------------------------------


def _unreachable(exc: BaseException) -> bool:
    """Whether an exception (or one it was raised from) says the network did not answer."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        names = {c.__name__ for c in type(exc).__mro__}
        if isinstance(exc, (ConnectionError, TimeoutError)) or names & {
            "LocalEntryNotFoundError",
            "OfflineModeIsEnabled",
            "HfHubHTTPError",
        }:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def check_reachable(tasks: list[str], task_manager: Any, failed: dict[str, str] | None = None) -> None:
    """Load each task's data before the model: DatasetUnreachable naming every task whose data
    could not be fetched (and those in `failed` already); KeyError for a name lm-eval does not know."""
    from lm_eval.tasks import get_task_dict

    failed = dict(failed or {})
    for task in tasks:
        try:
            get_task_dict([task], task_manager)
        except Exception as exc:
            if not _unreachable(exc):
                raise
            failed[task] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    if failed:
        listed = "; ".join(f"{t} ({why})" for t, why in failed.items())
        raise core.DatasetUnreachable(
            f"dataset not reachable for {len(failed)} task(s): {listed}. lm-eval downloads task data from the Hugging Face hub: "
            "run where it is reachable (or with HF_DATASETS_CACHE holding the data), or write local task YAMLs (include_path)"
        )


# -- scores ------------------------------------------------------------------------------


def _number(value: Any) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def score_rows(results: dict[str, Any], plan: Plan) -> list[dict[str, Any]]:
    """One row per task and metric lm-eval reported, the skipped tasks as "not measured",
    then CORE and ChatCORE where their group was asked for."""
    table = {**results.get("results", {}), **results.get("groups", {})}
    counts = results.get("n-samples", {})
    rows = []
    for task in plan.tasks:
        group, headline, baseline = plan.groups.get(task, ("", None, None))
        if task in plan.skipped:
            rows.append(_row(task, headline or "", None, group=group, baseline=baseline, note=plan.skipped[task]))
            continue
        found = table.get(task, {})
        n = counts.get(task, {}).get("effective")
        metrics = [k for k in found if "," in k and "_stderr" not in k]
        if not metrics:
            rows.append(
                _row(
                    task,
                    headline or "",
                    None,
                    group=group,
                    baseline=baseline,
                    note="not measured: lm-eval reported no metric",
                )
            )
        for metric in metrics:
            value = _number(found[metric])
            stderr = _number(found.get(metric.replace(",", "_stderr,", 1)))
            counted = metric == headline
            rows.append(
                _row(
                    task,
                    metric,
                    value,
                    stderr,
                    n,
                    group if counted else "",
                    baseline if counted else None,
                    core.centered(value, baseline) if counted and value is not None else None,
                )
            )
    for group, label in (("core", "CORE"), ("chat", "ChatCORE")):
        members = [t for t, (g, _, _) in plan.groups.items() if g == group]
        if members:
            rows.append(headline_row(label, group, [r for r in rows if r["group"] == group], len(members)))
    return rows


def headline_row(label: str, group: str, rows: list[dict[str, Any]], expected: int) -> dict[str, Any]:
    """The mean centered accuracy of a group, only when every member was measured."""
    values = [r["centered"] for r in rows if r["centered"] is not None]
    if len(values) < expected:
        missing = sorted({r["task"] for r in rows if r["centered"] is None})
        return _row(
            label,
            "centered accuracy",
            None,
            group=group,
            note=f"not measured: {', '.join(missing) or 'tasks'} not measured",
        )
    return _row(
        label,
        "centered accuracy",
        sum(values) / len(values),
        samples=len(values),
        group=group,
        note=f"mean centered accuracy over {len(values)} tasks",
    )


def _row(
    task: str,
    metric: str,
    value: float | None,
    stderr: float | None = None,
    samples: int | None = None,
    group: str = "",
    baseline: float | None = None,
    centered: float | None = None,
    note: str = "",
) -> dict[str, Any]:
    return {
        "task": task,
        "metric": metric,
        "value": value,
        "stderr": stderr,
        "samples": samples,
        "group": group,
        "baseline": baseline,
        "centered": centered,
        "note": note,
    }


def headlines(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """CORE, ChatCORE and each task's first metric: what the manifest and the pipeline keep."""
    out: dict[str, Any] = {}
    for r in rows:
        if r["task"] in ("CORE", "ChatCORE"):
            out[r["task"]] = r["value"]
        elif r["task"] not in out:
            out[r["task"]] = r["value"]
    return out


def table(rows: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Rows for a table artifact or the terminal."""

    def fmt(v: float | None) -> str:
        return "-" if v is None else f"{v:.4f}"

    return [
        {
            "task": r["task"],
            "metric": r["metric"],
            "value": fmt(r["value"]) + (f" ± {r['stderr']:.4f}" if r["stderr"] else ""),
            "centered": fmt(r["centered"]),
            "samples": "-" if r["samples"] is None else str(r["samples"]),
            "note": r["note"],
        }
        for r in rows
    ]


# -- running ---------------------------------------------------------------------------


def files_key(folders: list[str]) -> str:
    """The identity of users' task files (name, size, mtime): an edited task is not a cache hit."""
    files = sorted(p for f in folders for p in Path(f).rglob("*") if p.is_file())
    return digest([(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files], length=16)


def device_of(name: str) -> str:
    if name != "auto":
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def evaluate(checkpoint: str, tasks: list[str], config: BenchmarkConfig) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Run the tasks on a checkpoint: (score rows, lm-eval's config and versions)."""
    try:
        import lm_eval
        from lm_eval.tasks import TaskManager
    except ImportError:
        raise RuntimeError("benchmarks need lm-evaluation-harness: pip install 'crawl2chat[benchmarks]'") from None

    from models import checkpoint as checkpoints
    from models.harness import EngineLM, is_chat_checkpoint
    from models.tokenizer import Tokenizer

    ckpt_config = checkpoints.load(checkpoint, training_state=False).config
    if not tasks:
        raise ValueError("no tasks: name lm-eval tasks or the groups core and chat")
    with tempfile.TemporaryDirectory(prefix="crawl2chat-benchmark-") as workdir:
        plan = Plan(tasks, config, Tokenizer.load(ckpt_config["tokenizer"]), Path(workdir))
        manager = TaskManager(include_path=plan.include or None)
        check_reachable(plan.run, manager, plan.unreachable)
        results: dict[str, Any] = {}
        if plan.run:
            chat = is_chat_checkpoint(ckpt_config)
            lm = EngineLM(
                checkpoint=checkpoint,
                device=device_of(config.device),
                batch_size=config.batch_size,
                max_gen_toks=config.max_gen_toks,
                chat=chat,
            )
            if any(t in CODE_TASKS for t in plan.run):
                os.environ["HF_ALLOW_CODE_EVAL"] = "1"  # the user opted in (allow_code_execution)
            results = (
                lm_eval.simple_evaluate(
                    model=lm,
                    tasks=plan.run,
                    task_manager=manager,
                    limit=config.limit,
                    num_fewshot=config.num_fewshot,
                    apply_chat_template=chat,
                    fewshot_as_multiturn=chat,
                    confirm_run_unsafe_code=config.allow_code_execution,
                    random_seed=config.seed,
                    numpy_random_seed=config.seed,
                    torch_random_seed=config.seed,
                    fewshot_random_seed=config.seed,
                    log_samples=False,
                )
                or {}
            )
    info = {
        "lm_eval": lm_eval.__version__,
        "chat_template": bool(plan.run) and is_chat_checkpoint(ckpt_config),
        "tasks": plan.tasks,
        "versions": {k: str(v) for k, v in results.get("versions", {}).items()},
    }
    return score_rows(results, plan), info


@lake_task(inputs=("checkpoint",), code=CODE, retries=None, task_run_name="benchmark {checkpoint}")
def run_benchmark(
    checkpoint: str, out: str, tasks: list[str], config: BenchmarkConfig, files_key: str = ""
) -> dict[str, Any]:
    """Score `checkpoint` on `tasks` and write the rows as one shard of `out` (`files_key`: the
    identity of the task files under config.include_path, for the cache key)."""
    rows, info = evaluate(checkpoint, tasks, config)
    shard = lake.write_shard(out, "part-00000", pa.Table.from_pylist(rows, schema=RESULT_SCHEMA))
    return {"shard": asdict(shard), "rows": rows, "info": info}
