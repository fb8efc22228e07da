"""The Prefect UI of the e2e server, driven in headless Chromium as a user would.

The test is in test_e2e.py and needs the session's finished pipeline runs. Uses Debian's
chromium (installed by `make test`) through Playwright's Python driver, and the UI a browser
lands on by default (Prefect's V2 UI).
"""

from __future__ import annotations

import shutil

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import StateType
from prefect.client.schemas.sorting import FlowRunSort
from prefect.settings import PREFECT_API_URL, temporary_settings

from flows.report import descendants

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-sync",
    "--disable-background-networking",
    "--disable-component-update",
]
STAGES = (
    "sample-crawl",
    "curate",
    "tokenizer",
    "tokenize",
    "pretrain",
    "sft",
    "rl",
)  # the last three: gpu deployment runs


def latest_runs(api_url: str) -> dict[str, str]:
    """The latest completed pipeline run's name, and its subflow runs' names by flow name
    (other runs of the same flows, such as one an event started, are not the pipeline's)."""
    with temporary_settings(updates={PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        flows = {f.id: f.name for f in client.read_flows()}
        latest = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["pipeline"])),
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.COMPLETED]))
            ),
            sort=FlowRunSort.START_TIME_DESC,
            limit=1,
        )[0]
        runs = sorted(descendants(client, latest.id), key=lambda r: r.start_time or r.created, reverse=True)
        names: dict[str, str] = {}
        for run in runs:
            names.setdefault(flows[run.flow_id], run.name)
        return names


def check_ui(ui_url: str, runs: dict[str, str], screenshots: str | None = None) -> None:
    from playwright.sync_api import expect, sync_playwright

    def shot(page, name):
        if screenshots:
            page.screenshot(path=f"{screenshots}/{name}.png", full_page=True)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(30_000)

        # From the landing page to the pipeline's run: its graph and its subflows.
        page.goto(ui_url, wait_until="networkidle")
        page.get_by_role("link", name="Runs", exact=True).click()
        page.get_by_role("link", name=runs["pipeline"], exact=True).first.click()
        expect(page.get_by_role("tab", name="Subflow Runs")).to_be_visible()
        expect(page.locator("canvas").first).to_be_visible()  # the run graph
        page.get_by_role("tab", name="Subflow Runs").click()
        for stage in STAGES:
            expect(page.get_by_role("link", name=runs[stage], exact=True).first).to_be_visible()
        shot(page, "pipeline-subflows")

        # One subflow's task runs.
        page.get_by_role("link", name=runs["curate"], exact=True).first.click()
        page.get_by_role("tab", name="Task Runs").click()
        expect(page.get_by_text("finalize-").first).to_be_visible()
        expect(page.get_by_text(".warc.gz").first).to_be_visible()
        shot(page, "curate-task-runs")

        # The report card, from the pipeline run's Artifacts tab (back through "Parent Run").
        page.get_by_text(runs["pipeline"], exact=True).first.click()
        page.get_by_role("tab", name="Artifacts").click()
        page.get_by_text("pipeline-report-card").first.click()
        expect(page.get_by_role("heading", name="Report card")).to_be_visible()
        expect(page.get_by_text("curate-funnel").first).to_be_visible()  # links to the stages' artifacts
        shot(page, "report-card")

        # A deployment's parameter form.
        page.get_by_role("link", name="Deployments", exact=True).click()
        page.locator("a[href*='/deployments/deployment/']", has_text="pipeline").first.click()
        page.get_by_role("button", name="Run", exact=True).click()
        page.get_by_role("menuitem", name="Custom run").click()
        expect(page.get_by_text("Lake root: a local folder or s3://bucket/prefix").first).to_be_visible()
        expect(page.get_by_text("Pages in the sample crawl (the size knob)").first).to_be_visible()
        shot(page, "deployment-form")
        browser.close()
