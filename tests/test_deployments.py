"""What can be checked of deployments, work-pool templates and Docker files without an engine."""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

import pytest
import yaml
from prefect import Flow

ROOT = Path(__file__).resolve().parent.parent
PREFECT_YAML = yaml.safe_load((ROOT / "deployments" / "prefect.yaml").read_text())
DEPLOYMENTS = PREFECT_YAML["deployments"]


def load_flow(entrypoint: str) -> Flow:
    path, name = entrypoint.split(":")
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    return getattr(module, name)


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=lambda d: d["name"])
def test_every_deployment_points_at_a_flow_with_a_form(deployment):
    flow_ = load_flow(deployment["entrypoint"])
    assert isinstance(flow_, Flow)
    schema = flow_.parameters.model_dump()
    assert schema["properties"], "the UI form needs parameters"
    assert deployment["work_pool"]["name"] in ("cpu", "gpu")


def test_every_flow_is_deployed():
    deployed = {d["entrypoint"] for d in DEPLOYMENTS}
    flows = set()
    for path in sorted((ROOT / "flows").glob("*.py")):
        module = importlib.import_module(f"flows.{path.stem}")
        for name, value in vars(module).items():
            if isinstance(value, Flow) and value.fn.__module__ == module.__name__:
                flows.add(f"flows/{path.name}:{name}")
    assert flows - deployed == set(), "flows without a deployment"


@pytest.mark.parametrize("template", sorted((ROOT / "deployments" / "templates").glob("*.json")), ids=lambda p: p.stem)
def test_pool_templates_use_every_variable(template):
    body = json.loads(template.read_text())
    used = set(re.findall(r"{{\s*(\w+)\s*}}", json.dumps(body["job_configuration"])))
    declared = set(body["variables"]["properties"])
    # A variable that no job setting references does nothing (a Prefect pitfall).
    assert declared == used
    if template.stem == "kubernetes-gpu":
        resources = body["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]["containers"][0]["resources"]
        assert resources["limits"]["nvidia.com/gpu"] == "{{ gpus }}"


def test_compose_stack_has_server_on_postgres_s3_and_both_workers():
    compose = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())
    services = compose["services"]
    assert {"postgres", "prefect-server", "s3", "worker-cpu", "worker-gpu"} <= set(services)
    assert services["prefect-server"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"].startswith(
        "postgresql+asyncpg://"
    )
    assert "--pool" in services["worker-gpu"]["command"] and "gpu" in services["worker-gpu"]["command"]
    for service in services.values():  # published ports stay on loopback
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:")


@pytest.mark.parametrize("dockerfile", ["Dockerfile.cpu", "Dockerfile.cuda"])
def test_images_install_with_the_makefile(dockerfile):
    text = (ROOT / "docker" / dockerfile).read_text()
    assert re.search(r"^RUN make setup\b", text, re.M), "images must install exactly as `make setup` does"
    makefile = (ROOT / "Makefile").read_text()
    setup = makefile.split("$(STAMP):", 1)[1].split("\n\n", 1)[0]
    assert '"$(TORCH)"' in setup and "-e '.[dev]'" in setup
    assert setup.index('"$(TORCH)"') < setup.index("-e '.[dev]'"), "torch first, so the pin wins"


def test_the_prefect_cli_deploys_to_the_server_this_process_talks_to(monkeypatch):
    """`crawl2chat deploy` points itself at the server with a temporary setting; the `prefect
    deploy` child process must get the same server, not an ephemeral one of its own."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.deploy import prefect

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:9/api"}):
        shown = prefect("config", "view", "--show-sources").stdout
    assert "PREFECT_API_URL='http://127.0.0.1:9/api'" in shown
