"""Imports point one way, flows -> tasks -> models, and Prefect is wired in one module of
tasks/ (tasks/runtime.py: lake_task, run_mapped, the flow run id), never below it. Read from
the source, function-level imports included, so a late `from prefect import ...` counts."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def imported(path: Path) -> set[str]:
    """Top-level package of every module the file imports, anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def offenders(package: str, forbidden: set[str], allowed: set[str] = frozenset()) -> dict[str, set[str]]:
    out = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        name = str(path.relative_to(ROOT))
        bad = (imported(path) & forbidden) if name not in allowed else set()
        if bad:
            out[name] = bad
    return out


def test_models_import_neither_prefect_nor_the_layers_above():
    assert offenders("models", {"prefect", "prefect_dask", "tasks", "flows"}) == {}


def test_tasks_reach_prefect_only_through_runtime_and_never_import_flows():
    assert offenders("tasks", {"prefect", "prefect_dask"}, allowed={"tasks/runtime.py"}) == {}
    assert offenders("tasks", {"flows"}) == {}


def test_the_checker_sees_a_late_import(tmp_path):
    sample = tmp_path / "m.py"
    sample.write_text("def f():\n    from prefect.runtime import flow_run\n    import tasks.lake\n")
    assert imported(sample) == {"prefect", "tasks"}
