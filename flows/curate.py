"""Curate: WARC files in, FineWeb-filtered clean text out, every removed document kept with why.

    WARC files --curate_warc (one task per file)--> curated/{crawl}/filtered  (+ removed rows)
    filtered   --quality_shard (optional, per shard)--> curated/{crawl}/quality (+ removed rows)
    filtered or quality --dedup (its own stage; optional)--> ids to remove
    filtered or quality --finalize_shard (one per shard)--> curated/{crawl}/clean (+ removed rows)

Every run leaves a funnel table (documents and characters into and out of each step, top
reasons) and a report with removed examples per step, as Prefect artifacts and in the lake
(`curated/{crawl}/report.md`; the numbers are in the manifests' stats).
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from prefect import flow, unmapped
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from models import lake as lakes
from tasks.config import LakeConfig
from tasks.crawls import WARC_SUFFIXES
from tasks.curate import quality as quality_models
from tasks.curate.chain import Funnel
from tasks.curate.config import CurateConfig, QualityConfig
from tasks.curate.stage import curate_warc, finalize_shard, quality_shard
from tasks.dedup import DedupConfig
from tasks.layout import Layout, artifact_key, safe_name
from tasks.runtime import RunnerConfig, code_version, config_hash, declare, flow_run_id, in_lake, run_mapped

KIND = "curated"
GLOB_CHARS = "*?["


def expand(warcs: list[str]) -> list[str]:
    """URIs, globs and folders (local or s3://) -> the sorted, distinct WARC URIs they name."""
    found: set[str] = set()
    for pattern in warcs:
        if any(ch in pattern for ch in GLOB_CHARS):
            fs, path = lakes.filesystem(pattern)
            matches = [lakes.to_uri(fs, p) for p in fs.glob(path) if not fs.isdir(p)]
            if not matches:
                raise FileNotFoundError(f"no files match {pattern}")
            found.update(matches)
        else:
            fs, path = lakes.filesystem(pattern)
            if not fs.exists(path):
                raise FileNotFoundError(f"no WARC file at {pattern}")
            if fs.isdir(path):  # a crawl's folder: every WARC file under it
                inside = [lakes.to_uri(fs, p) for p in fs.find(path) if p.endswith(WARC_SUFFIXES)]
                if not inside:
                    raise FileNotFoundError(f"no WARC files under {pattern}")
                found.update(inside)
            else:
                found.add(lakes.normalize(pattern))
    return sorted(found)


def a_folder(warcs: list[str]) -> bool:
    """Whether the WARC files were given as one folder (the crawl is the folder, whatever it
    holds now) rather than as files or globs."""
    fs, path = lakes.filesystem(warcs[0])
    return len(warcs) == 1 and not any(ch in warcs[0] for ch in GLOB_CHARS) and fs.isdir(path)


def default_crawl(warcs: list[str], uris: list[str]) -> str:
    """The crawl's name when the config gives none: the folder given, else the folder the
    first WARC file sits in."""
    if a_folder(warcs):
        return PurePosixPath(lakes.filesystem(warcs[0])[1]).name
    return PurePosixPath(lakes.filesystem(uris[0])[1]).parent.name


def refuse_another_crawls_name(crawl: str, filtered_uri: str, uris: list[str]) -> None:
    """Files named after their folder must not take over a crawl curated from other files of
    that folder (`pipeline dir/a.warc.gz`, then `pipeline dir/b.warc.gz`): the second would
    replace the first's documents, index and runs. More files than before (a glob over a
    folder that grew) are the same crawl, grown."""
    curated = lakes.read_manifest(filtered_uri)
    before = set(curated.parents) if curated is not None else set()
    if before and not before <= set(uris):
        raise FileExistsError(
            f"the crawl {crawl!r} was curated from other WARC files ({len(before)}, e.g. {sorted(before)[0]}); "
            "name this one with --crawl (or curate the folder itself)"
        )


def run_dedup(
    lake: LakeConfig, crawl: str, filtered_uri: str, config: CurateConfig, dedup: DedupConfig, runner: RunnerConfig
) -> str | None:
    """The dedup slot: exact then MinHash dedup (flows/dedup.py) over the committed `filtered`
    dataset. Returns the URI of its removal dataset (id, step 'dedup_exact' | 'dedup_minhash',
    reason, cluster, kept_id; one shard per filtered shard, same names), or None when off."""
    if not config.dedup_enabled:
        return None
    from flows.dedup import dedup as dedup_flow

    return dedup_flow(filtered=filtered_uri, crawl=crawl, lake=lake, config=dedup, runner=runner)["removals"]


def run_quality(
    root: str,
    quality_uri: str,
    filtered_uri: str,
    shards: dict[str, str],
    removed_uri: str,
    quality: QualityConfig,
    runner: RunnerConfig,
) -> tuple[str, dict[str, str], list[dict[str, Any]]]:
    """The quality slot (tasks/curate/quality.py): every filtered shard scored, the documents
    at or above the threshold committed as `curated/{crawl}/quality`. Returns the dataset and
    shards (name -> URI) that dedup and finalize read, and the tasks' results (none when off)."""
    if not quality.model:
        return filtered_uri, shards, []
    model = quality_models.resolve(quality)
    results = run_mapped(
        in_lake(root, quality_shard),
        runner,
        "curate: quality",
        key="curate-quality-progress",
        filtered_shard=list(shards.values()),
        name=list(shards),
        quality_uri=unmapped(quality_uri),
        removed_uri=unmapped(removed_uri),
        config=unmapped(quality),
        model_id=unmapped(model.identity),
    )
    funnel = Funnel.merge([r["funnel"] for r in results])
    lakes.commit(
        quality_uri,
        [lakes.Shard(**r["kept"]) for r in results],
        kind=f"{KIND}-quality",
        parents=[filtered_uri],
        stats={
            "funnel": funnel,
            "model": quality.model,
            "model_identity": model.identity,
            "threshold": quality.threshold,
        },
        config_hash=config_hash(quality),
        code_version=code_version("tasks.curate"),
    )
    return quality_uri, {r["name"]: lakes.join(quality_uri, r["kept"]["path"]) for r in results}, results


def funnel_rows(funnel: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for step, s in funnel["steps"].items():
        top = ", ".join(f"{r} {n}" for r, n in list(s["reasons"].items())[:4])
        rows.append(
            {
                "step": step,
                "docs in": s["docs_in"],
                "docs out": s["docs_out"],
                "removed": s["docs_in"] - s["docs_out"],
                "chars in": s["chars_in"],
                "chars out": s["chars_out"],
                "seconds": round(s["seconds"], 2),
                "top reasons": top,
            }
        )
    return rows


def report_markdown(crawl: str, funnel: dict[str, Any], summary: dict[str, Any]) -> str:
    lines = [f"# Curate report: {crawl}", ""]
    lines += [f"- {k}: {v}" for k, v in summary.items()]
    lines += ["", "| step | docs in | docs out | chars in | chars out | top reasons |", "|---|---|---|---|---|---|"]
    for row in funnel_rows(funnel):
        lines.append(
            f"| {row['step']} | {row['docs in']} | {row['docs out']} | {row['chars in']} | {row['chars out']} | {row['top reasons']} |"
        )
    lines += ["", "## Removed examples", ""]
    for step, s in funnel["steps"].items():
        if not s["examples"]:
            continue
        lines += [f"### {step}", ""]
        for ex in s["examples"]:
            snippet = " ".join((ex["text"] or "").split())[:240].replace("|", "\\|")
            lines.append(f"- **{ex['reason']}** {ex['url'] or ''}" + (f"\n  > {snippet}" if snippet else ""))
        lines.append("")
    for step, bins in (funnel.get("histograms") or {}).items():
        total = max(sum(bins.values()), 1)
        lines += [f"## {step.capitalize()} scores", "", "| score | documents | share |", "|---|---|---|"]
        lines += [
            f"| {label} | {n} | {'#' * round(40 * n / total)} |"
            for label, n in bins.items()
            if n or label != "no score"
        ]
        lines.append("")
    counts = funnel.get("counts") or {}
    if counts:
        lines += ["## Records and rewrites", ""] + [f"- {k}: {v}" for k, v in sorted(counts.items())]
    return "\n".join(lines) + "\n"


@flow(name="curate", log_prints=True)
def curate(
    warcs: list[str],
    lake: LakeConfig = LakeConfig(),
    config: CurateConfig = CurateConfig(),
    dedup: DedupConfig = DedupConfig(),
    runner: RunnerConfig = RunnerConfig(),
    quality: QualityConfig = QualityConfig(),
) -> dict[str, Any]:
    """Curate WARC files (URIs or globs) into `curated/{crawl}/clean` and `.../removed`."""
    root = lake.open()
    uris = expand(warcs)
    if not uris:
        raise ValueError("no WARC files given")
    crawl = safe_name(config.crawl or default_crawl(warcs, uris))
    paths = Layout(root).curated(crawl)
    if not config.crawl and not a_folder(warcs):
        refuse_another_crawls_name(crawl, paths.filtered, uris)
    filtered_uri, removed_uri, clean_uri = paths.filtered, paths.removed, paths.clean
    manifest = dict(
        config_hash=config_hash(config), code_version=code_version("tasks.curate"), flow_run_id=flow_run_id()
    )

    first = run_mapped(
        in_lake(root, curate_warc),
        runner,
        "curate: WARC files",
        key="curate-progress",
        warc=uris,
        filtered_uri=unmapped(filtered_uri),
        removed_uri=unmapped(removed_uri),
        crawl=unmapped(crawl),
        config=unmapped(config),
    )
    filters_funnel = Funnel.merge([r["funnel"] for r in first], config.examples_per_step)
    lakes.commit(
        filtered_uri,
        [lakes.Shard(**r["filtered"]) for r in first],
        kind=f"{KIND}-filtered",
        parents=uris,
        stats={"funnel": filters_funnel},
        **manifest,
    )

    shards = {r["name"]: lakes.join(filtered_uri, r["filtered"]["path"]) for r in first}
    kept_uri, shards, scored = run_quality(root, paths.quality, filtered_uri, shards, removed_uri, quality, runner)
    dedup_uri = run_dedup(lake, crawl, kept_uri, config, dedup, runner)

    second = run_mapped(
        in_lake(root, finalize_shard),
        runner,
        "curate: finalize shards",
        key="curate-finalize-progress",
        filtered_shard=list(shards.values()),
        name=list(shards),
        clean_uri=unmapped(clean_uri),
        removed_uri=unmapped(removed_uri),
        dedup_uri=unmapped(dedup_uri),
        pii=unmapped(config.pii),
    )
    funnel = Funnel.merge([filters_funnel] + [r["funnel"] for r in scored + second], config.examples_per_step)
    docs_in = sum(r["docs_in"] for r in first)
    clean_rows = sum(r["clean"]["rows"] for r in second)
    removed_shards = [lakes.Shard(**r["removed"]) for r in first + scored + second]
    removed_rows = sum(s.rows for s in removed_shards)
    if clean_rows + removed_rows != docs_in:
        raise RuntimeError(f"documents lost: {docs_in} in, {clean_rows} clean + {removed_rows} removed")
    summary = {
        "crawl": crawl,
        "warc_files": len(uris),
        "docs_in": docs_in,
        "clean": clean_rows,
        "removed": removed_rows,
        "dedup": "on" if dedup_uri else "off",
        "extractor": config.extract.extractor,
        "quality": f"{quality.model} >= {quality.threshold:g}" if quality.model else "off",
    }
    parents = [kept_uri] + ([dedup_uri] if dedup_uri else [])
    lakes.commit(
        removed_uri,
        removed_shards,
        kind=f"{KIND}-removed",
        parents=parents,
        stats={"funnel": funnel, **summary},
        **manifest,
    )
    lakes.commit(
        clean_uri,
        [lakes.Shard(**r["clean"]) for r in second],
        kind=KIND,
        parents=parents,
        stats={"funnel": funnel, **summary},
        **manifest,
    )

    declare(*dict.fromkeys([filtered_uri, kept_uri, removed_uri, clean_uri]))
    report = report_markdown(crawl, funnel, summary)
    lakes.write_text_atomic(paths.report, report)
    create_table_artifact(
        key=artifact_key("curate-funnel", crawl), table=funnel_rows(funnel), description=f"Curate funnel: {crawl}"
    )
    create_markdown_artifact(
        key=artifact_key("curate-report", crawl), markdown=report, description=f"Curate report: {crawl}"
    )
    for step, bins in (funnel.get("histograms") or {}).items():
        create_table_artifact(
            key=artifact_key(f"curate-{step}-scores", crawl),
            table=[{"score": k, "documents": v} for k, v in bins.items()],
            description=f"{step} scores: {crawl}",
        )
    return {
        **summary,
        "clean_uri": clean_uri,
        "removed_uri": removed_uri,
        "filtered_uri": filtered_uri,
        "quality_uri": kept_uri if scored else None,
        "report": paths.report,
    }
