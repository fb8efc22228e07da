"""Benchmark a checkpoint on standard tasks through lm-evaluation-harness.

    checkpoints/{run}/{stage}/step-N --run_benchmark (lm-eval over models.harness.EngineLM)--> evals/{run}/{stage}/benchmarks/step-N

One row per task and metric, CORE and ChatCORE where their groups ran; the manifest's stats
hold the headline numbers and its parents the checkpoint. A table artifact shows the scores.
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.artifacts import create_table_artifact

from flows.dispatch import hand_back
from models import lake as lakes
from tasks.benchmark import CODE, KIND, BenchmarkConfig, files_key, headlines, run_benchmark, table
from tasks.config import LakeConfig
from tasks.evaluate import markdown_table
from tasks.layout import Layout, artifact_key
from tasks.runtime import code_version, config_hash, declare, flow_run_id, in_lake


@flow(name="benchmark", log_prints=True)
def benchmark(
    checkpoint: str,
    lake: LakeConfig = LakeConfig(),
    config: BenchmarkConfig = BenchmarkConfig(),
    tasks: list[str] | None = None,
) -> dict[str, Any]:
    """Score `checkpoint` (a checkpoint or run URI, or a run name under checkpoints/) on
    `tasks` (default config.tasks): lm-eval task names and the groups `core` and `chat`."""
    root = lake.open()
    layout = Layout(root)
    ckpt = layout.model(checkpoint)
    name = layout.model_name(ckpt)
    tasks = list(tasks or config.tasks)
    out = layout.benchmarks(ckpt)

    result = in_lake(root, run_benchmark)(ckpt, out, tasks, config, files_key(config.include_path))
    rows, scores = result["rows"], headlines(result["rows"])
    lakes.commit(
        out,
        [lakes.Shard(**result["shard"])],
        kind=KIND,
        flow_run_id=flow_run_id(),
        config_hash=config_hash(config),
        code_version=code_version(*CODE),
        parents=[ckpt],
        stats={"scores": scores, **result["info"]},
    )
    declare(out)
    shown = table(rows)
    create_table_artifact(
        shown,
        key=artifact_key("benchmark-scores", name),
        description=f"{name} on {', '.join(tasks)} (lm-evaluation-harness)",
    )
    print(f"benchmarks of {ckpt}:\n{markdown_table(shown)}")
    return hand_back(root, {"checkpoint": ckpt, "results": out, "scores": scores})
