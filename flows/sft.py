"""SFT: teach a base model to chat, use its tools, and say when it does not know.

    base checkpoint, clean documents (and the sample crawl's facts) --probe--> conversations/{run}/{name}/probe
    documents, facts, search/{crawl}, probe, users' datasets --generate--> conversations/{run}/{name}/{train,val,test}
    train, val --pack--> conversations/{run}/{name}/rows/{tokenizer}-{T}/{train,val}
    rows, base --train (gpu pool)--> checkpoints/{run}/{name}/step-N

The flow reads like the recipe; tasks/sft/stage.py does the work. Artifacts: conversations
per source and split, the probe's verdicts, a few conversations with their loss masks, the
packing and the training summary.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, unmapped
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows.dispatch import hand_back
from models import lake as lakes
from models.chat import render_conversation, show_mask
from models.tokenizer import Tokenizer
from tasks.config import LakeConfig
from tasks.layout import Layout, artifact_key
from tasks.runtime import RunnerConfig, code_version, config_hash, declare, flow_run_id, in_lake, run_mapped
from tasks.sft import CODE, SFTConfig, schema
from tasks.sft.generate import DOC_SOURCES
from tasks.sft.stage import (
    base_config,
    commit_conversations,
    generate_source,
    import_user_file,
    pack_rows,
    probe_chunk,
    probe_count,
    train_sft,
)
from tasks.tracking import TrackingConfig, track

MASK_EXAMPLES = (
    "doc_questions",
    "doc_memory",
    "doc_unknown",
    "facts_search",
    "facts_memory",
    "unknown",
    "math",
    "harmful",
)
FACT_SOURCES = {"facts_search", "facts_memory", "professions"}


def _mask_examples(train: str, tokenizer: Tokenizer) -> str:
    """The first training conversation of a few sources, with what SFT trains on in [[...]]."""
    wanted = set(MASK_EXAMPLES)
    lines = ["What SFT trains on: the tokens in [[...]] (loss mask 1); everything else is context.", ""]
    for batch in lakes.iter_batches(train, columns=["source", "messages"]):
        for source, messages in zip(batch.column("source").to_pylist(), batch.column("messages").to_pylist()):
            if source in wanted:
                wanted.discard(source)
                ids, mask = render_conversation(tokenizer, messages)
                lines += [
                    f"### {source} ({len(ids)} tokens, {sum(mask)} trained)",
                    "",
                    "```",
                    show_mask(tokenizer, ids, mask),
                    "```",
                    "",
                ]
    return "\n".join(lines)


@flow(name="sft", log_prints=True)
def sft(
    lake: LakeConfig = LakeConfig(),
    config: SFTConfig = SFTConfig(),
    base: str | None = None,
    crawl: str | None = None,
    runner: RunnerConfig = RunnerConfig(),
    run: str | None = None,
    search: str | None = None,
    clean: list[str] | None = None,
    tracking: TrackingConfig = TrackingConfig(),
) -> dict[str, Any]:
    """Build the conversations for `crawl` (or the `clean` datasets of several) and fine-tune
    `base` (a checkpoint or run URI, or a name under checkpoints/; default config.base) on
    them, into the run `run`. The search index is `search`, else the crawl's, else the one in
    the base model's lineage."""
    root = lake.open()
    layout = Layout(root)
    base = base or config.base
    if not base:
        raise ValueError("no base checkpoint: pass base (a checkpoint URI or a run name under checkpoints/)")
    base = layout.model(base)
    base_cfg = base_config(base)
    tokenizer_uri, seq_len = base_cfg["tokenizer"], base_cfg["model"]["seq_len"]
    search = search or (layout.search(crawl) if crawl else layout.search_for(base))
    if not search or not lakes.exists(search):
        raise FileNotFoundError(
            f"SFT needs the search index {search or 'of the crawl'}: build it with `crawl2chat search-index`"
        )
    crawls = [crawl] if crawl else layout.crawls_of(base)  # the base model's own crawls when none is named
    documents = list(clean or [layout.curated(c).clean for c in crawls if lakes.exists(layout.curated(c).clean)])
    if not documents:
        print(f"no clean documents to ask about: leaving out {list(DOC_SOURCES)}")
        config = config.model_copy(update={"sources": [s for s in config.sources if s not in DOC_SOURCES]})
    # A crawl of the real web has no list of facts to ask about (the sample crawl's does).
    facts = next((layout.facts(c) for c in crawls if lakes.exists(layout.facts(c))), None)
    if facts is None:
        print(f"no facts dataset in {crawls}: leaving out the sources that ask about them ({sorted(FACT_SOURCES)})")
        config = config.model_copy(update={"sources": [s for s in config.sources if s not in FACT_SOURCES]})
    if "code_math" in config.sources and not Tokenizer.load(tokenizer_uri).has_special("<|python_start|>"):
        print(f"{tokenizer_uri} was trained before the code tool: leaving out code_math")
        config = config.model_copy(update={"sources": [s for s in config.sources if s != "code_math"]})
    out = layout.conversations(run, config.name)

    # 1. What does the base model already know? (Llama 3's knowledge probe)
    probe_uri = None
    n = probe_count(facts, documents, config) if {"facts_memory", "doc_memory"} & set(config.sources) else 0
    if n:
        probe_uri = lakes.join(out, "probe")
        starts = list(range(0, n, config.probe_chunk))
        probed = run_mapped(
            in_lake(root, probe_chunk),
            runner,
            f"sft: probe {n} facts",
            key="sft-probe-progress",
            base=unmapped(base),
            facts=unmapped(facts),
            out=unmapped(probe_uri),
            part=[f"part-{i:05d}" for i in range(len(starts))],
            start=starts,
            count=unmapped(config.probe_chunk),
            config=unmapped(config),
            documents=unmapped(documents),
        )
        verdicts = {v: sum(p.get(v, 0) for p in probed) for v in ("known", "unknown", "unsure")}
        lakes.commit(
            probe_uri,
            [lakes.Shard(**p["shard"]) for p in probed],
            kind="sft-probe",
            flow_run_id=flow_run_id(),
            config_hash=config_hash(config),
            code_version=code_version(*CODE),
            parents=[base, *(p for p in (facts,) if p), *documents],
            stats=verdicts,
        )
        create_table_artifact(
            [{"verdict": k, "facts": v} for k, v in verdicts.items()],
            key=artifact_key("sft-probe", run),
            description=f"knowledge probe of {base}: {config.probe_samples} samples per fact",
        )
        print(f"probe: {verdicts}")

    # 2. Conversations: the generated sources, then users' datasets.
    generated = run_mapped(
        in_lake(root, generate_source),
        runner,
        f"sft: generate {len(config.sources)} sources",
        key="sft-generate-progress",
        source=config.sources,
        facts=unmapped(facts),
        search=unmapped(search),
        probe_uri=unmapped(probe_uri),
        out=unmapped(out),
        config=unmapped(config),
        documents=unmapped(documents),
    )
    files = [f for uri in config.datasets for f in schema.dataset_files(uri)]
    imported = (
        run_mapped(
            in_lake(root, import_user_file),
            runner,
            f"sft: import {len(files)} user files",
            key="sft-import-progress",
            uri=files,
            out=unmapped(out),
            part=[f"part-user-{i:05d}" for i in range(len(files))],
            config=unmapped(config),
        )
        if files
        else []
    )
    parents = [p for p in (facts, search, probe_uri) if p] + documents + files
    counts = commit_conversations(out, generated + imported, config, parents)
    splits = {s: lakes.join(out, s) for s in ("train", "val", "test")}
    declare(*splits.values())
    rows = [{"source": r["source"], **{s: r["shards"][s]["rows"] for s in ("train", "val", "test")}} for r in generated]
    rows += [
        {
            "source": r["source"],
            **{s: r["shards"][s]["rows"] for s in ("train", "val", "test")},
            "skipped": sum(r["skipped"].values()),
            "reasons": ", ".join(f"{k} {v}" for k, v in r["skipped"].items()),
        }
        for r in imported
    ]
    create_table_artifact(
        rows, key=artifact_key("sft-conversations", run), description=f"conversations per source and split in {out}"
    )
    create_markdown_artifact(
        _mask_examples(splits["train"], Tokenizer.load(tokenizer_uri)),
        key=artifact_key("sft-loss-masks", run),
        description="SFT loss masks",
    )
    print(f"conversations: {counts}")

    # 3. Rows of the base model's context, best-fit packed.
    packed = {
        split: in_lake(root, pack_rows)(
            splits[split],
            tokenizer_uri,
            seq_len,
            layout.packed_rows(out, tokenizer_uri, seq_len, split),
            config,
            config.datasets_share if split == "train" else None,
        )  # the share is a training mix
        for split in ("train", "val")
    }
    declare(*(p["uri"] for p in packed.values()))
    create_table_artifact(
        [
            {"split": s, **{k: v for k, v in p.items() if k not in ("uri", "skipped")}, "skipped": str(p["skipped"])}
            for s, p in packed.items()
        ],
        key=artifact_key("sft-packing", run),
        description=f"rows of {seq_len + 1} tokens",
    )

    # 4. Fine-tune (on the gpu pool when deployed; resumes from its last checkpoint on retry).
    folder = layout.checkpoints(run, config.name)
    trained = in_lake(root, train_sft)(
        base, packed["train"]["uri"], packed["val"]["uri"], tokenizer_uri, folder, config
    )
    declare(trained["checkpoint"])
    mlflow_run = track(tracking, "sft", trained["checkpoint"])
    print(f"SFT: {trained['steps']} steps, val loss {trained['val_loss']}, checkpoint {trained['checkpoint']}")
    return hand_back(
        root,
        {
            "conversations": splits,
            "counts": counts,
            "rows": {s: p["uri"] for s, p in packed.items()},
            "probe": probe_uri,
            "search": search,
            **trained,
            **({"mlflow_run": mlflow_run} if mlflow_run else {}),
        },
    )
