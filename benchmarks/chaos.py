"""Chaos: the pipeline under storage faults, kill -9 and hostile input, longer than the tests.

    python benchmarks/chaos.py [--pages 120] [--files 4] [--rates 0.05,0.15] [--kills 5]
                               [--training-kills 3] [--seed 0] [--quick]

Starts what it needs on loopback: a moto S3 server behind tests/support/faults.py's fault proxy, and a
Prefect server (unless PREFECT_API_URL names one). The pipeline is tests/support/stress.py's: the real
curate (with dedup), tokenizer and tokenize flows, tiny preset.

1. Storage faults. The sample crawl on S3; a clean run; then one run per `--rates` entry with
   that share of requests failing (500, 503 SlowDown, connection resets, truncated reads) and
   outages longer than a layer's retries: six 500s in a row on a manifest PUT (a commit in a
   flow body: botocore's standard-mode retries must carry it), six 503s on a task-result PUT,
   five truncated reads of a WARC file (past s3fs's retries: a task retry). Every dataset is
   compared with the clean run's, byte for byte, and documents are audited by id.
2. Crashes. `--kills` pipeline subprocesses on one lake (local, then S3), each kill -9'd at a
   seeded random moment of its flow run, then one run to the end, compared with an uninterrupted run;
   the same for training (`python -m models.train`, resumed each time), whose losses must
   equal an uninterrupted run's.
3. Concurrency. Two pipelines at once on one local lake, and on one S3 lake.
4. Bad input. Each case of the hostile corpus (tests/support/hostile.py) in its own fresh process:
   the curate shard task's peak memory (VmHWM) and its extractor worker's; the sample crawl's
   own WARC files for comparison.

Prints faults injected, faults survived, crashes survived, documents lost (must be 0),
documents duplicated (must be 0) and peak memory per shard task; writes benchmarks/out/chaos.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("CRAWL2CHAT_NO_BAR", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.conftest import FAKE_KEY_ID, FAKE_SECRET, free_port  # noqa: E402
from tests.support import hostile, stress  # noqa: E402
from tests.support.faults import FaultProxy  # noqa: E402

OUT = REPO / "benchmarks" / "out" / "chaos.json"


class Tally:
    """The figures the run ends with."""

    def __init__(self) -> None:
        self.faults: Counter = Counter()
        self.faults_survived = 0
        self.crashes = 0
        self.crashes_survived = 0
        self.lost = 0
        self.duplicated = 0
        self.failures: list[str] = []
        self.rows: list[dict[str, Any]] = []

    def audit(self, what: str, found: dict[str, int]) -> None:
        self.lost += found["lost"]
        self.duplicated += found["duplicated"]
        if found["lost"] or found["duplicated"] or found["unexpected"]:
            self.failures.append(f"{what}: {found}")

    def same(self, what: str, clean: dict, got: dict) -> bool:
        diff = stress.differences(clean, got)
        if diff:
            self.failures.append(f"{what}: datasets differ from the clean run: {diff[:5]}")
        return not diff


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# -- 1. storage faults -------------------------------------------------------------------


def storage_faults(tally: Tally, s3: str, warcs: list[str], rates: list[float], seed: int) -> tuple[dict, float]:
    os.environ["AWS_ENDPOINT_URL"] = s3
    started = time.monotonic()
    stress.run_pipeline("s3://chaos/clean", warcs)
    clean_s = time.monotonic() - started
    clean = stress.snapshot("s3://chaos/clean")
    log(f"clean run on S3: {clean_s:.0f} s, {len(clean)} datasets")
    for i, rate in enumerate(rates):
        root = f"s3://chaos/faulty-{i}"
        with FaultProxy(s3, rate=rate, seed=seed + i) as proxy:
            proxy.fail_next(6, "500", method="PUT", path="curated/sample/clean/_manifest.json")
            proxy.fail_next(6, "503", method="PUT", path="/_prefect/results/")
            proxy.fail_next(5, "truncate", path=warcs[-1].removeprefix("s3://"))
            os.environ["AWS_ENDPOINT_URL"] = proxy.endpoint
            started = time.monotonic()
            try:
                stress.run_pipeline(root, warcs)
                ok = True
            except Exception as exc:  # counted: the summary shows it
                ok = False
                tally.failures.append(f"rate {rate}: the run failed: {type(exc).__name__}: {exc}"[:300])
            seconds = time.monotonic() - started
            os.environ["AWS_ENDPOINT_URL"] = s3
            if proxy.pending():
                tally.failures.append(f"rate {rate}: outages never reached: {proxy.pending()}")
        injected = dict(proxy.injected)
        tally.faults.update(proxy.injected)
        same = ok and tally.same(f"rate {rate}", clean, stress.snapshot(root))
        if same:
            tally.faults_survived += proxy.total
            tally.audit(f"rate {rate}", stress.audit(root, stress.truth_uri(warcs)))
        requests = sum(proxy.requests.values())
        log(
            f"rate {rate}: {requests} requests, faults {injected}, finished {ok}, identical {same}, {seconds:.0f} s "
            f"({seconds / clean_s:.2f}x the clean run)"
        )
        tally.rows.append(
            {
                "check": "storage",
                "rate": rate,
                "requests": requests,
                "faults": injected,
                "finished": ok,
                "identical": same,
                "seconds": round(seconds, 1),
                "clean_seconds": round(clean_s, 1),
            }
        )
    return clean, clean_s


# -- 2. crashes --------------------------------------------------------------------------


def crashes(
    tally: Tally, where: str, root: str, warcs: list[str], expected: dict, duration: float, kills: int, seed: int
) -> None:
    """`kills` pipeline subprocesses on one lake, each kill -9'd at a seeded moment of its
    flow run, then one run to the end, compared with an uninterrupted run (`expected`)."""
    rng = random.Random(seed)
    killed = 0
    for k in range(kills):
        delay = rng.uniform(0.1, duration)
        outcome = stress.kill_after(stress.start(root, warcs), delay)
        killed += outcome["killed"]
        stress.snapshot(root)  # every committed shard whole after each kill
        if outcome["orphans"]:
            tally.failures.append(f"{where} kill {k}: worker processes outlived the pipeline: {outcome['orphans']}")
        log(
            f"{where} pipeline kill {k + 1}/{kills} at {delay:.1f} s into its flow run: "
            f"{'killed' if outcome['killed'] else 'had finished'}"
        )
    stress.finish(stress.start(root, warcs))
    tally.crashes += killed
    same = tally.same(f"{where} pipeline crashes", expected, stress.snapshot(root))
    tally.crashes_survived += killed if same else 0
    tally.audit(f"{where} pipeline crashes", stress.audit(root, stress.truth_uri(warcs)))
    log(f"{where}: {killed} kills, then a run to the end: identical to an uninterrupted run: {same}")
    tally.rows.append({"check": "pipeline kills", "lake": where, "kills": killed, "identical": same})


def training_crashes(tally: Tally, work: Path, reference: str, kills: int, seed: int) -> None:
    from models import checkpoint, lake
    from models.gpt import GPTConfig
    from models.train import RunSpec, TrainConfig, train

    model = GPTConfig(vocab_size=512, seq_len=16, n_layer=2, n_head=2, n_kv_head=1, n_embd=32)
    config = TrainConfig(
        steps=1000,
        batch_tokens=128,
        device_batch=8,
        lr=3e-3,
        warmup_steps=10,
        eval_every=250,
        eval_tokens=128,
        checkpoint_every=50,
        sample_prompts=["The"],
        sample_tokens=4,
        log_every=10,
    )
    tokens = lake.join(reference, "tokens", "bpe-stress", "sample")

    def spec(run: str) -> RunSpec:
        return RunSpec(
            [lake.join(tokens, "train")],
            [lake.join(tokens, "val")],
            lake.join(reference, "tokenizers", "bpe-stress"),
            str(work / "runs" / run),
        )

    train(model, config, spec("straight"))
    expected = [r["loss"] for r in checkpoint.load(spec("straight").out).metrics["train"]]
    crashed, rng, killed, saved = spec("crashed"), random.Random(seed), 0, 0
    for k in range(kills):  # each attempt killed at a seeded step past the checkpoint it resumes from
        if saved + config.log_every >= config.steps:
            break
        at = rng.randrange(saved + config.log_every, config.steps, config.log_every)
        outcome = stress.train_and_kill(model, config, crashed, at, resume=k > 0)
        killed += outcome["killed"]
        saved = max(outcome["saved"] or [0])
        log(
            f"training kill {k + 1}/{kills} at step {at}: {'killed' if outcome['killed'] else 'had finished'}, "
            f"resumed from step {outcome['resumed_at']}, complete checkpoints up to step {saved}"
        )
    resumed_at = stress.train_to_end(model, config, crashed)
    got = [r["loss"] for r in checkpoint.load(crashed.out).metrics["train"]]
    same = got == expected
    tally.crashes += killed
    tally.crashes_survived += killed if same else 0
    if not same:
        tally.failures.append("training: losses after resuming differ from an uninterrupted run")
    log(f"training: {killed} kills, last resume at step {resumed_at}, losses identical to an uninterrupted run: {same}")
    tally.rows.append({"check": "training kills", "kills": killed, "identical_losses": same})


# -- 3. concurrency ----------------------------------------------------------------------


def concurrency(tally: Tally, roots: dict[str, str], warcs: list[str], expected: dict[str, dict]) -> None:
    for where, root in roots.items():
        runs = [stress.start(root, warcs) for _ in range(2)]
        try:
            for proc in runs:
                stress.finish(proc)
            same = tally.same(f"two pipelines at once ({where})", expected[where], stress.snapshot(root))
            tally.audit(f"two pipelines at once ({where})", stress.audit(root, stress.truth_uri(warcs)))
        except RuntimeError as exc:
            same = False
            tally.failures.append(f"two pipelines at once ({where}): {exc}"[:500])
        log(f"two pipelines at once on one {where} lake: identical to a single run: {same}")
        tally.rows.append({"check": "concurrency", "lake": where, "identical": same})


# -- 4. bad input ------------------------------------------------------------------------


def bad_input(tally: Tally, work: Path, shared_data: Path, sample_warcs: list[str]) -> list[dict[str, Any]]:
    folder = work / "hostile"
    pages, text = hostile.real_pages(shared_data)
    paths = hostile.write_corpus(folder, pages, text)
    rows = []
    singles = {case: Path(path) for case, path in paths.items()} | {Path(w).stem: Path(w) for w in sample_warcs}
    for case, path in singles.items():
        alone = work / "one" / case
        alone.mkdir(parents=True, exist_ok=True)
        (alone / path.name).symlink_to(path)
        measured = stress.peak_rss("tests.support.hostile:curate_corpus", str(alone), str(work / "one-out" / case))
        outcome = next(iter(measured["result"]["cases"].values()))
        mine = (
            outcome["outcomes"].get(hostile.url(case), "")
            if case in hostile.CASES
            else f"{len(outcome['outcomes'])} documents"
        )
        rows.append(
            {
                "case": case,
                "peak_rss_mib": measured["peak_rss_mb"],
                "extractor_peak_mib": measured["result"]["extractor_peak_mb"],
                "outcome": mine,
                "docs_in": outcome["docs_in"],
            }
        )
        log(
            f"{case:22s} task {measured['peak_rss_mb']:6.1f} MiB, extractor {measured['result']['extractor_peak_mb']:6.1f} MiB: {mine}"
        )
    tally.rows.append({"check": "bad input", "cases": rows})
    return rows


# -- the run -----------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=120)
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--rates", default="0.05,0.15")
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--training-kills", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shared-data", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--quick", action="store_true", help="40 pages, one rate, two kills of each")
    args = parser.parse_args()
    if args.quick:
        args.pages, args.files, args.rates, args.kills, args.training_kills = 40, 3, "0.15", 2, 2
    rates = [float(r) for r in args.rates.split(",") if r]

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    moto.start()
    s3 = f"http://127.0.0.1:{moto._port}"
    os.environ.update(
        AWS_ACCESS_KEY_ID=FAKE_KEY_ID,
        AWS_SECRET_ACCESS_KEY=FAKE_SECRET,
        AWS_ENDPOINT_URL=s3,
        AWS_DEFAULT_REGION="us-east-1",
    )
    work = Path(tempfile.mkdtemp(prefix="chaos-"))
    from flows import server

    # Prefect is imported by now (tests.support.hostile imports the curate config): in-process flows
    # find the server through `server.connected`, subprocesses through the environment.
    started_server = None if os.environ.get("PREFECT_API_URL") else work / "prefect"
    if started_server is not None:
        os.environ["PREFECT_API_URL"] = server.start(home=started_server, port=free_port())
    tally = Tally()
    began = time.monotonic()
    try:
        import s3fs

        with server.connected(os.environ["PREFECT_API_URL"]):
            s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3}).mkdir("chaos")
            s3_warcs = stress.source_crawl("s3://chaos/source", pages=args.pages, files=args.files, seed=args.seed)
            local_warcs = stress.source_crawl(str(work / "source"), pages=args.pages, files=args.files, seed=args.seed)
            log(f"sample crawl: {args.pages} pages in {args.files} WARC files, on S3 and on disk; work folder {work}")

            clean_s3, clean_s3_s = storage_faults(tally, s3, s3_warcs, rates, args.seed)
            reference = str(work / "reference")
            started = time.monotonic()
            stress.run_pipeline(reference, local_warcs)
            local_s = time.monotonic() - started
            expected = {"local": stress.snapshot(reference), "S3": clean_s3}
            crashes(
                tally, "local", str(work / "crashed"), local_warcs, expected["local"], local_s, args.kills, args.seed
            )
            crashes(tally, "S3", "s3://chaos/crashed", s3_warcs, expected["S3"], clean_s3_s, args.kills, args.seed + 1)
            training_crashes(tally, work, reference, args.training_kills, args.seed)
            concurrency(tally, {"local": str(work / "concurrent")}, local_warcs, expected)
            concurrency(tally, {"S3": "s3://chaos/concurrent"}, s3_warcs, expected)
            memory = bad_input(tally, work, Path(args.shared_data), local_warcs)
    finally:
        if started_server is not None:
            server.stop(started_server)
        moto.stop()

    worst = max(memory, key=lambda r: r["peak_rss_mib"])
    summary = {
        "faults injected": sum(tally.faults.values()),
        "faults by kind": dict(tally.faults),
        "faults survived": tally.faults_survived,
        "crashes survived": f"{tally.crashes_survived} of {tally.crashes}",
        "documents lost": tally.lost,
        "documents duplicated": tally.duplicated,
        "peak memory per shard task (MiB)": f"{worst['peak_rss_mib']} ({worst['case']}); extractor worker "
        f"{max(r['extractor_peak_mib'] for r in memory)}",
        "failures": tally.failures,
        "minutes": round((time.monotonic() - began) / 60, 1),
    }
    print()
    for key, value in summary.items():
        print(f"{key:34s} {value}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"args": vars(args), "summary": summary, "rows": tally.rows}, indent=2, default=str))
    sys.exit(1 if tally.failures or tally.lost or tally.duplicated else 0)


if __name__ == "__main__":
    main()
