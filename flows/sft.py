"""SFT: teach a base model to chat, use its tools, and say when it does not know.

    base checkpoint, crawls/{crawl}/facts --probe--> conversations/{name}/probe
    facts, search/{crawl}, probe, users' datasets --generate--> conversations/{name}/{train,val,test}
    train, val --pack--> conversations/{name}/rows/{tokenizer}-{T}/{train,val}
    rows, base --train (gpu pool)--> checkpoints/{name}/step-N

The flow reads like the recipe; tasks/sft/stage.py does the work. Artifacts: conversations
per source and split, the probe's verdicts, a few conversations with their loss masks, the
packing and the training summary.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, unmapped
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows.dispatch import record_result
from models.chat import render_conversation, show_mask
from models.tokenizer import Tokenizer
from tasks import lake as lakes
from tasks.config import LakeConfig
from tasks.evaluate import resolve_checkpoint
from tasks.runtime import RunnerConfig, code_version, config_hash, declare, in_lake, run_mapped
from tasks.sft import CODE, SFTConfig, schema
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

MASK_EXAMPLES = ("facts_search", "facts_memory", "unknown", "math", "harmful")
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
                lines += [f"### {source} ({len(ids)} tokens, {sum(mask)} trained)", "", "```", show_mask(tokenizer, ids, mask), "```", ""]
    return "\n".join(lines)


@flow(name="sft", log_prints=True, on_completion=[record_result])
def sft(
    lake: LakeConfig = LakeConfig(),
    config: SFTConfig = SFTConfig(),
    base: str | None = None,
    crawl: str = "sample",
    runner: RunnerConfig = RunnerConfig(),
    tracking: TrackingConfig = TrackingConfig(),
) -> dict[str, Any]:
    """Build the conversations for `crawl` and fine-tune `base` (a checkpoint or run URI,
    or a run name under checkpoints/; default config.base) on them."""
    root = lake.open()
    base = base or config.base
    if not base:
        raise ValueError("no base checkpoint: pass base (a checkpoint URI or a run name under checkpoints/)")
    base = resolve_checkpoint(root, base)
    base_cfg = base_config(base)
    tokenizer_uri, seq_len = base_cfg["tokenizer"], base_cfg["model"]["seq_len"]
    facts = lakes.join(root, "crawls", crawl, "facts")
    search = lakes.join(root, "search", crawl)
    if not lakes.exists(search):
        raise FileNotFoundError(f"SFT needs the search index {search}: build it with `crawl2chat search-index`")
    if not lakes.exists(facts):
        # A crawl of the real web has no list of facts to ask about (the sample crawl's does).
        print(f"no {facts}: leaving out the sources that ask about the crawl's facts ({sorted(FACT_SOURCES)})")
        config = config.model_copy(update={"sources": [s for s in config.sources if s not in FACT_SOURCES]})
        facts = None
    if "code_math" in config.sources and not Tokenizer.load(tokenizer_uri).has_special("<|python_start|>"):
        print(f"{tokenizer_uri} was trained before the code tool: leaving out code_math")
        config = config.model_copy(update={"sources": [s for s in config.sources if s != "code_math"]})
    out = lakes.join(root, "conversations", config.name)

    # 1. What does the base model already know? (Llama 3's knowledge probe)
    probe_uri = None
    if "facts_memory" in config.sources:
        probe_uri = lakes.join(out, "probe")
        n = probe_count(facts, config)
        starts = list(range(0, n, config.probe_chunk))
        probed = run_mapped(
            in_lake(root, probe_chunk), runner, f"sft: probe {n} facts", key="sft-probe-progress",
            base=unmapped(base), facts=unmapped(facts), out=unmapped(probe_uri), part=[f"part-{i:05d}" for i in range(len(starts))],
            start=starts, count=unmapped(config.probe_chunk), config=unmapped(config),
        )
        verdicts = {v: sum(p.get(v, 0) for p in probed) for v in ("known", "unknown", "unsure")}
        lakes.commit(probe_uri, [lakes.Shard(**p["shard"]) for p in probed], kind="sft-probe", config_hash=config_hash(config),
                     code_version=code_version(*CODE), parents=[base, facts], stats=verdicts)
        create_table_artifact([{"verdict": k, "facts": v} for k, v in verdicts.items()], key="sft-probe",
                              description=f"knowledge probe of {base}: {config.probe_samples} samples per fact")
        print(f"probe: {verdicts}")

    # 2. Conversations: the generated sources, then users' datasets.
    generated = run_mapped(
        in_lake(root, generate_source), runner, f"sft: generate {len(config.sources)} sources", key="sft-generate-progress",
        source=config.sources, facts=unmapped(facts), search=unmapped(search), probe_uri=unmapped(probe_uri), out=unmapped(out),
        config=unmapped(config),
    )
    files = [f for uri in config.datasets for f in schema.dataset_files(uri)]
    imported = run_mapped(
        in_lake(root, import_user_file), runner, f"sft: import {len(files)} user files", key="sft-import-progress",
        uri=files, out=unmapped(out), part=[f"part-user-{i:05d}" for i in range(len(files))], config=unmapped(config),
    ) if files else []
    parents = [p for p in (facts, search, probe_uri) if p] + files
    counts = commit_conversations(out, generated + imported, config, parents)
    splits = {s: lakes.join(out, s) for s in ("train", "val", "test")}
    declare(*splits.values())
    rows = [{"source": r["source"], **{s: r["shards"][s]["rows"] for s in ("train", "val", "test")}} for r in generated]
    rows += [{"source": r["source"], "train": r["shards"]["train"]["rows"], "val": r["shards"]["val"]["rows"], "test": 0,
              "skipped": sum(r["skipped"].values()), "reasons": ", ".join(f"{k} {v}" for k, v in r["skipped"].items())} for r in imported]
    create_table_artifact(rows, key="sft-conversations", description=f"conversations per source and split in {out}")
    create_markdown_artifact(_mask_examples(splits["train"], Tokenizer.load(tokenizer_uri)), key="sft-loss-masks", description="SFT loss masks")
    print(f"conversations: {counts}")

    # 3. Rows of the base model's context, best-fit packed.
    rows_root = lakes.join(out, "rows", f"{tokenizer_uri.rstrip('/').rsplit('/', 1)[-1]}-{seq_len}")
    packed = {
        split: in_lake(root, pack_rows)(splits[split], tokenizer_uri, seq_len, lakes.join(rows_root, split), config)
        for split in ("train", "val")
    }
    declare(*(p["uri"] for p in packed.values()))
    create_table_artifact([{"split": s, **{k: v for k, v in p.items() if k not in ("uri", "skipped")}, "skipped": str(p["skipped"])}
                           for s, p in packed.items()], key="sft-packing", description=f"rows of {seq_len + 1} tokens")

    # 4. Fine-tune (on the gpu pool when deployed; resumes from its last checkpoint on retry).
    run = lakes.join(root, "checkpoints", config.name)
    trained = in_lake(root, train_sft)(base, packed["train"]["uri"], packed["val"]["uri"], tokenizer_uri, run, config)
    declare(trained["checkpoint"])
    mlflow_run = track(tracking, "sft", trained["checkpoint"])
    print(f"SFT: {trained['steps']} steps, val loss {trained['val_loss']}, checkpoint {trained['checkpoint']}")
    return {"conversations": splits, "counts": counts, "rows": {s: p["uri"] for s, p in packed.items()}, "probe": probe_uri, **trained,
            **({"mlflow_run": mlflow_run} if mlflow_run else {})}
