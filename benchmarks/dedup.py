"""Dedup benchmark: the S-curve, signature throughput against plain datasketch, and scaling.

    python benchmarks/dedup.py [--sizes 10000,100000,1000000] [--pairs 20000] [--docs 2000]
                               [--shard-docs 10000] [--splits auto] [--rows-per-task 4000000]
                               [--stages ...] [--datatrove] [--skip-small] [--skip-scale]

1. S-curve: `--pairs` generated pairs at Jaccard 0..1 (exact shingle-set Jaccard, measured),
   the share of pairs that become candidates per 0.05 bucket next to 1-(1-J^8)^14; recall at
   J >= 0.85 and the false-positive rate at J <= 0.5.
2. Signature throughput on one core (POLARS_MAX_THREADS=1) over `--docs` documents of
   500-1000 words: our batched stage against a plain per-document datasketch loop (FineWeb's
   normalisation, 5-gram strings, `MinHash(scheme="affine64").update_batch`), datasketch's
   `MinHash.bulk`, and, with `--datatrove` (its venv: see benchmarks/curate.py), datatrove's
   `MinhashDedupSignature` with FineWeb's config. Three interleaved rounds, median.
3. Scaling: for each size, a synthetic corpus (5% near, 2% exact duplicates) streamed to
   Parquet shards of `--shard-docs`, then every stage in its own subprocess, run without
   Prefect (`task.fn`, one process, one core): seconds, µs per document and peak RSS (VmHWM).
   Time should grow linearly with the corpus; the signature and removal stages' memory is
   bounded by the shard, the exact and bucket stages' by `--rows-per-task` (one 64-bit hash
   per document of a slice; `--splits auto` slices the hash range to fit), the cluster
   stage's by the number of candidate pairs. The 1M case takes ~45 minutes on a loaded 2-core
   machine, 7 of them generating the corpus and 18 signing it (both reused by later runs,
   under .cache/bench-dedup: `--skip-small --stages exact,pairs,clusters,remove` re-measures
   the later stages in a minute).

   Measured (shards of 10k, peak RSS with a 214 MB import floor; docs/dedup.md has the discussion):

   | documents | exact | pairs (14 bands) | clusters | removals |
   |---:|---|---|---|---|
   | 10,000 | 0.0 s, 254 MB | 0.2 s, 259 MB | 0.0 s, 263 MB | 0.0 s, 247 MB |
   | 100,000 | 0.1 s, 266 MB | 0.9 s, 285 MB | 0.1 s, 285 MB | 0.1 s, 266 MB |
   | 1,000,000 | 1.0 s, 307 MB | 10.0 s, 326 MB | 1.6 s, 378 MB | 3.2 s, 300 MB |
   | 1,000,000, --rows-per-task 250000 (4 splits) | 3.0 s, 284 MB | 42 s, 292 MB | | |
   | 1,000,000, one-pass stages before | 1.5 s, 657 MB | 21.4 s, 587 MB | 1.1 s, 550 MB | 3.1 s, 301 MB |
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time
import unicodedata
from pathlib import Path

os.environ.setdefault("POLARS_MAX_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402
import pyarrow as pa  # noqa: E402

from models import lake  # noqa: E402
from tasks.dedup import DedupConfig  # noqa: E402
from tasks.dedup.minhash import Signer, band_hashes, candidate_probability, shingle  # noqa: E402
from tasks.dedup.synthetic import documents, jaccard_pairs  # noqa: E402

WORK = REPO / ".cache" / "bench-dedup"
ANCHOR = REPO / ".cache" / "anchor-venv"
CONFIG = DedupConfig()
PARAMS = CONFIG.signature_params()


def peak_mb() -> float:
    """This process's peak RSS. VmHWM, not getrusage: ru_maxrss survives exec, so a child
    would report its parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- 1. the S-curve --------------------------------------------------------------------------


def s_curve(pairs: int) -> None:
    rows = jaccard_pairs(pairs, 0.0, 1.0, seed=0, words=200)
    texts = pl.Series([a for a, _, _ in rows] + [b for _, b, _ in rows])
    bands = band_hashes(Signer(CONFIG.num_perm, CONFIG.seed).sign(shingle(texts)), CONFIG.bands, CONFIG.rows)
    hit = (bands[: len(rows)] == bands[len(rows) :]).any(axis=1)
    jaccard = np.array([j for _, _, j in rows])
    print(f"\n## S-curve ({len(rows)} pairs of 200-word texts, {CONFIG.bands} bands x {CONFIG.rows} rows)\n")
    print("| Jaccard | pairs | candidates | theory 1-(1-J^8)^14 |\n|---|---:|---:|---:|")
    edges = np.round(np.arange(0, 1.0001, 0.05), 2)
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (jaccard >= lo) & ((jaccard < hi) if hi < 1 else (jaccard <= hi))
        if inside.any():
            theory = candidate_probability(jaccard[inside], CONFIG.bands, CONFIG.rows).mean()
            print(f"| {lo:.2f}-{hi:.2f} | {inside.sum()} | {hit[inside].mean():.3f} | {theory:.3f} |")
    high, low = jaccard >= 0.85, jaccard <= 0.5
    print(f"\nrecall at J >= 0.85: {hit[high].mean():.4f} ({high.sum()} pairs; target >= 0.98)")
    print(f"false positives at J <= 0.5: {hit[low].mean():.4f} ({low.sum()} pairs; target <= 0.01)")


# -- 2. signature throughput -----------------------------------------------------------------

NUMBER = re.compile(r"\d+(?:[.,]\d+)?")
NOT_WORD = re.compile(r"[\W_]+")


def plain_words(text: str) -> list[str]:
    """FineWeb's normalisation, one document at a time, as a plain loop would write it."""
    text = text.lower()
    if not text.isascii():
        text = "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")
    return NOT_WORD.sub(" ", NUMBER.sub("0", text)).split()


def plain_shingles(text: str, n: int = 5) -> list[bytes]:
    words = plain_words(text)
    return [" ".join(words[i : i + n]).encode() for i in range(len(words) - n + 1)]


def datasketch_loop(texts: list[str]) -> None:
    from datasketch import MinHash

    for text in texts:
        minhash = MinHash(num_perm=CONFIG.num_perm, seed=CONFIG.seed, scheme="affine64")
        minhash.update_batch(plain_shingles(text))
        minhash.digest()


def datasketch_bulk(texts: list[str]) -> None:
    from datasketch import MinHash

    for minhash in MinHash.generator(
        (plain_shingles(t) for t in texts), num_perm=CONFIG.num_perm, seed=CONFIG.seed, scheme="affine64"
    ):
        minhash.digest()


def ours(batches: list[pa.RecordBatch]) -> None:
    from tasks.dedup.stages import sign_batches

    for _ in sign_batches(batches, "bench", "bench", PARAMS, {}):
        pass


def datatrove(path: Path) -> float:
    """Seconds datatrove's signature stage takes over the texts in `path` (JSONL)."""
    out = subprocess.run(
        [str(ANCHOR / "bin" / "python"), str(REPO / "benchmarks" / "dedup_anchor.py"), str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])["seconds"]


def throughput(count: int, with_datatrove: bool) -> None:
    table = pa.Table.from_batches(list(documents(count, seed=11, near_duplicates=0, exact_duplicates=0)))
    batches = table.to_batches(max_chunksize=CONFIG.batch_size)
    texts = table.column("text").to_pylist()
    words = sum(len(t.split()) for t in texts) / len(texts)
    runs = {
        "ours (batched, numpy over datasketch's permutations)": lambda: ours(batches),
        "datasketch, per-document loop (update_batch)": lambda: datasketch_loop(texts),
        "datasketch, MinHash.generator/bulk": lambda: datasketch_bulk(texts),
    }
    if with_datatrove:
        if not (ANCHOR / ".ready").exists():
            from benchmarks.curate import ensure_anchor

            ensure_anchor()
        path = WORK / "throughput.jsonl"
        path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
        runs["datatrove MinhashDedupSignature (FineWeb config)"] = lambda: datatrove(path)
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(3):
        for name, fn in runs.items():
            start = time.perf_counter()
            inside = fn()  # datatrove reports its own time, without its process start
            times[name].append(inside if inside is not None else time.perf_counter() - start)
    print(f"\n## Signature throughput, one core ({count} documents, {words:.0f} words on average)\n")
    print("| implementation | docs/s per core | ours is faster by |\n|---|---:|---:|")
    best = statistics.median(times[next(iter(runs))])
    for name, seconds in times.items():
        rate = count / statistics.median(seconds)
        print(f"| {name} | {rate:,.0f} | {statistics.median(seconds) / best:.1f}x |")
    print("\ndatatrove measured ~54 docs/s per core in shared/notes/fineweb.md; target >= 540 (10x).")


# -- 3. scaling ------------------------------------------------------------------------------


def corpus(size: int, shard_docs: int) -> str:
    """The synthetic filtered dataset of `size` documents (written once, then reused)."""
    uri = str(WORK / f"lake-{size}" / "curated" / "synthetic" / "filtered")
    found = lake.read_manifest(uri)
    if found and found.rows == size:
        return uri
    start = time.perf_counter()
    shards, stream = [], documents(size, seed=size, batch_size=1000)
    for first in range(0, size, shard_docs):
        take = min(shard_docs, size - first)
        batches = [next(stream) for _ in range((take + 999) // 1000)]
        shards.append(lake.write_shard(uri, f"warc-{first // shard_docs:05d}", pa.Table.from_batches(batches)))
    lake.commit(uri, shards, kind="curated-filtered")
    print(f"(generated {size:,} documents in {time.perf_counter() - start:.0f} s)", flush=True)
    return uri


def run_stage(stage: str, filtered: str, splits: str = "auto", rows_per_task: int = CONFIG.rows_per_task) -> dict:
    """One stage, as the flow runs it but without Prefect, in this (fresh) process."""
    from tasks.dedup.stages import band_pairs, cluster_pairs, exact_groups, shard_removals, sign_shard

    if stage == "imports":
        return {"peak_mb": peak_mb()}  # the floor every stage starts from
    root = filtered.rsplit("/curated/", 1)[0]
    base = lake.join(root, "dedup", "synthetic")
    uri = {name: lake.join(base, name) for name in ("signatures", "exact", "pairs", "clusters", "remove")}
    inputs = lake.shard_uris(filtered)
    sources = [uri["signatures"]]
    config = DedupConfig(splits=splits if splits == "auto" else int(splits), rows_per_task=rows_per_task)
    start = time.perf_counter()
    if stage in ("exact", "pairs"):
        splits = config.splits_for(lake.manifest(uri["signatures"]).rows)
    if stage == "signatures":
        done = [sign_shard.fn(u, uri[stage], "synthetic", PARAMS, CONFIG.batch_size) for u in inputs]
        stats = {"signature": PARAMS}
    elif stage == "exact":
        done = [exact_groups.fn(sources, [], s, splits, uri[stage]) for s in range(splits)]
        stats = {"removed": sum(d["removed"] for d in done), "splits": splits}
    elif stage == "pairs":
        done = [
            band_pairs.fn(sources, [], uri["exact"], b, s, splits, uri[stage])
            for b in range(CONFIG.bands)
            for s in range(splits)
        ]
        stats = {"pairs": sum(d["rows"] for d in done), "splits": splits}
    elif stage == "clusters":
        done = [cluster_pairs.fn(uri["pairs"], sources, [], uri[stage])]
        stats = {"removed": done[0]["removed"]}
    elif stage == "remove":
        done = [
            shard_removals.fn(
                lake.shard_name(u), "synthetic", uri["exact"], uri["clusters"], uri["signatures"], uri[stage]
            )
            for u in inputs
        ]
        stats = {"removed": sum(d["rows"] for d in done)}
    else:
        raise ValueError(f"unknown stage {stage!r}")
    seconds = time.perf_counter() - start
    lake.commit(
        uri[stage],
        [lake.Shard(path=d["path"], rows=d["rows"], bytes=d["bytes"], sha256=d["sha256"]) for d in done],
        kind=f"dedup-{stage}",
        stats=stats,
    )
    return {"seconds": seconds, "peak_mb": peak_mb(), **stats}


def scale(sizes: list[int], shard_docs: int, splits: str, rows_per_task: int, stages: list[str]) -> None:
    budget = f", at most {rows_per_task:,} documents per task" if splits == "auto" else ""
    print(
        f"\n## Scaling (shards of {shard_docs:,} documents, splits {splits}{budget}; each stage one process on one core, no Prefect)\n"
    )
    floor = json.loads(
        subprocess.run(
            [sys.executable, __file__, "--stage", "imports", "--filtered", "-"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    print(f"process floor (imports only): {floor['peak_mb']:.0f} MB peak RSS\n")
    print("| documents | stage | seconds | µs per document | peak RSS MB | notes |\n|---:|---|---:|---:|---:|---|")
    for size in sizes:
        filtered = corpus(size, shard_docs)
        for stage in stages:
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--stage",
                    stage,
                    "--filtered",
                    filtered,
                    "--splits",
                    splits,
                    "--rows-per-task",
                    str(rows_per_task),
                ],
                capture_output=True,
                text=True,
            )
            if out.returncode:
                raise RuntimeError(f"{stage} at {size}: {out.stderr[-2000:]}")
            result = json.loads(out.stdout.strip().splitlines()[-1])
            notes = ", ".join(f"{k} {v}" for k, v in result.items() if k not in ("seconds", "peak_mb", "signature"))
            if stage == "signatures":
                notes = f"{size / result['seconds']:,.0f} docs/s"
            print(
                f"| {size:,} | {stage} | {result['seconds']:.1f} | {1e6 * result['seconds'] / size:.0f} | {result['peak_mb']:.0f} | {notes} |",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--shard-docs", type=int, default=10_000)
    parser.add_argument("--pairs", type=int, default=20_000)
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--datatrove", action="store_true", help="also time datatrove's signature stage (its own venv)")
    parser.add_argument(
        "--splits", default="auto", help="tasks per band (and for exact dedup) in the scaling runs: a number, or auto"
    )
    parser.add_argument(
        "--rows-per-task",
        type=int,
        default=CONFIG.rows_per_task,
        help="with --splits auto: documents per exact/bucket task",
    )
    parser.add_argument(
        "--stages",
        default="signatures,exact,pairs,clusters,remove",
        help="scaling: which stages (a later one needs the earlier ones' output)",
    )
    parser.add_argument("--skip-scale", action="store_true")
    parser.add_argument("--skip-small", action="store_true", help="skip the S-curve and throughput parts")
    parser.add_argument("--stage", help=argparse.SUPPRESS)
    parser.add_argument("--filtered", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage:
        print(json.dumps(run_stage(args.stage, args.filtered, args.splits, args.rows_per_task)))
        return
    WORK.mkdir(parents=True, exist_ok=True)
    if not args.skip_small:
        s_curve(args.pairs)
        throughput(args.docs, args.datatrove)
    if not args.skip_scale:
        scale(
            [int(s) for s in args.sizes.split(",")],
            args.shard_docs,
            args.splits,
            args.rows_per_task,
            args.stages.split(","),
        )


if __name__ == "__main__":
    main()
