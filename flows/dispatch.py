"""Where a pipeline stage runs: in process, or on its own deployment's work pool.

On the embedded default (the CLI, `make demo`) every stage is an in-process subflow. When the
pipeline itself runs from a deployment, each stage that has a deployment of its own runs as
that deployment's flow run (`run_deployment(..., as_subflow=True)`), so the training stages go
to the `gpu` pool and its workers while the pipeline waits on a `cpu` worker. As subflows they
show in the pipeline's graph, and cancelling the pipeline cancels them (the server's
cancellation service does this for subflow runs).

A deployment run's return value is not sent back to its parent, so a stage flow's last step
records it in the lake (`hand_back`) and the parent reads it from there.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from prefect import Flow
from prefect.runtime import deployment
from pydantic_core import to_jsonable_python

from models import lake
from models.storage import read_json
from tasks.config import LakeConfig
from tasks.layout import Layout
from tasks.runtime import flow_run_id


def _result_uri(lake_root: str, flow_run_id: Any) -> str:
    return Layout(lake_root).flow_result(flow_run_id)


T = TypeVar("T")


def hand_back(lake_root: str, result: T) -> T:
    """A stage flow's last step: keep its return value in the lake, under its flow run's id, for
    a parent that ran it as a deployment's run (an in-process parent gets the value directly;
    the file is then a record of what the run returned).

    It runs inside the flow, before the run ends. An on-completion hook would not do: Prefect
    calls hooks only after the server has the run Completed, and a parent polling that state
    could read the file before the hook wrote it."""
    run_id = flow_run_id()
    if run_id is not None:
        lake.write_text_atomic(_result_uri(lake_root, run_id), json.dumps(result, default=str))
    return result


def _deployed(name: str) -> bool:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_deployment_by_name(name)
            return True
        except ObjectNotFound:
            return False


def run_stage(stage: Flow, **parameters: Any) -> Any:
    """Run `stage` with `parameters` (which include `lake`): as its deployment's run when the
    caller runs from a deployment and the stage has one, else in process."""
    name = f"{stage.name}/{stage.name}"
    if deployment.id is None or not _deployed(name):
        return stage(**parameters)
    from prefect.deployments import run_deployment

    run = run_deployment(
        name, parameters=to_jsonable_python(parameters), as_subflow=True, timeout=None, poll_interval=2
    )
    if run.state is None or not run.state.is_completed():
        raise RuntimeError(
            f"stage {name} ended {run.state.name if run.state else 'without a state'} (flow run {run.id})"
        )
    lake_root = LakeConfig.model_validate(parameters["lake"]).open()
    recorded = _result_uri(lake_root, run.id)
    try:
        return read_json(recorded)
    except FileNotFoundError:
        raise RuntimeError(
            f"stage {name} completed (flow run {run.id}) but handed back no result: {recorded}"
        ) from None
