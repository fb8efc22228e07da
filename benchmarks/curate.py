"""Curate benchmark: our chain against datatrove's FineWeb steps on the same real pages.

    python benchmarks/curate.py [--pages N]
    python benchmarks/curate.py --quality [--rounds N]   # the quality step alone (docs/quality.md)

The 181 real article pages of ../shared/data/extraction-benchmark are wrapped into one WARC
file; both chains read it and run read -> url -> extract -> language -> Gopher repetition ->
Gopher quality -> C4 -> FineWeb quality on one core, with trafilatura and with resiliparse.
Printed: docs/s for both and the ratio, peak memory, per-filter keep/drop agreement (each
filter alone on the same extracted texts), and the extraction quality of both extractors
(shingle precision/recall/F1 as the benchmark's evaluate.py defines it). With --quality: the
chain's docs/s per core with the fastText quality scorer off and on against datatrove's
trafilatura chain, and the transformers scorer's docs/s on CPU (`quality_benchmark`).

datatrove runs in its own venv (.cache/anchor-venv: datatrove 0.10.1, spacy, aiohttp,
resiliparse), created here on first use, driven through benchmarks/curate_anchor.py.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("OMP_NUM_THREADS", "1")

from tasks.curate import blocklists  # noqa: E402
from tasks.curate.chain import Chain, Funnel  # noqa: E402
from tasks.curate.config import CurateConfig, ExtractConfig  # noqa: E402
from tasks.curate.extract import Extractor  # noqa: E402
from tasks.curate.filters import (  # noqa: E402
    C4QualityFilter,
    Doc,
    FineWebQualityFilter,
    GopherQualityFilter,
    GopherRepetitionFilter,
)
from tasks.curate.language import LanguageFilter, model_path  # noqa: E402
from tasks.curate.text import Text  # noqa: E402
from tasks.curate.urls import UrlFilter  # noqa: E402

DATA = Path(os.environ.get("CRAWL2CHAT_SHARED_DATA", REPO.parent / "shared" / "data")) / "extraction-benchmark"
WORK = REPO / ".cache" / "bench-curate"
ANCHOR = REPO / ".cache" / "anchor-venv"
ANCHOR_PACKAGES = ["datatrove[processing]==0.10.1", "spacy", "aiohttp", "resiliparse", "warcio", "faust-cchardet", "python-magic", "lxml_html_clean"]
FILTERS = ("url", "language", "gopher_repetition", "gopher_quality", "c4", "fineweb_quality")


# -- inputs ----------------------------------------------------------------------------------


def pages(limit: int | None) -> list[tuple[str, str, bytes]]:
    truth = json.loads((DATA / "ground-truth.json").read_text())
    out = []
    for key in sorted(truth)[:limit]:
        html = gzip.decompress((DATA / "html" / f"{key}.html.gz").read_bytes())
        out.append((key, truth[key]["url"], html))
    return out


def build_warc(items: list[tuple[str, str, bytes]], path: Path) -> None:
    """Each page as a WARC response record (gzip member per record, as Common Crawl does)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        for key, url, html in items:
            http = b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" + html
            head = (
                f"WARC/1.0\r\nWARC-Type: response\r\nWARC-Record-ID: <urn:uuid:{uuid.UUID(key[:32])}>\r\n"
                f"WARC-Target-URI: {url}\r\nWARC-Date: 2024-01-01T00:00:00Z\r\nWARC-Identified-Payload-Type: text/html\r\n"
                f"Content-Type: application/http; msgtype=response\r\nContent-Length: {len(http)}\r\n\r\n"
            ).encode()
            f.write(gzip.compress(head + http + b"\r\n\r\n"))


def ensure_anchor() -> Path:
    python = ANCHOR / "bin" / "python"
    if not (ANCHOR / ".ready").exists():
        subprocess.run([sys.executable, "-m", "venv", str(ANCHOR)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", *ANCHOR_PACKAGES], check=True)
        (ANCHOR / ".ready").touch()
    return python


def anchor(python: Path, *args: str) -> dict:
    out = WORK / f"anchor-{'-'.join(a.rsplit('/', 1)[-1] for a in (args[0], *args[2:]))}.json"
    env = {**os.environ, "LID_FTZ": str(model_path()), "OMP_NUM_THREADS": "1"}
    subprocess.run([str(python), str(REPO / "benchmarks" / "curate_anchor.py"), *args[:2], str(out), *args[2:]], check=True, env=env, stderr=open(WORK / "anchor.log", "a"))
    return json.loads(out.read_text())


# -- our side ----------------------------------------------------------------------------------


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a live process has used, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu() -> float:
    """CPU seconds of this process's children that have exited and been reaped."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_ours(warc: Path, extractor: str) -> dict:
    config = CurateConfig(extract={"extractor": extractor})
    chain = Chain(config)
    chain.extractor.extract("<html><body><p>warm up</p></body></html>")  # start the worker first
    funnel = Funnel(0)
    worker = chain.extractor._proc.pid
    start, cpu, worker_cpu, reaped = time.perf_counter(), time.process_time(), process_cpu(worker), children_cpu()
    outcomes = list(chain.run(str(warc), funnel))
    seconds = time.perf_counter() - start
    # a page past the time limit has its worker killed (and reaped) and a new one started
    now = chain.extractor._proc.pid
    live = process_cpu(now) - (worker_cpu if now == worker else 0.0)
    return {
        "seconds": seconds,
        "cpu_seconds": time.process_time() - cpu + live + children_cpu() - reaped,
        "worker_restarts": funnel.to_dict()["steps"].get("extract", {}).get("reasons", {}).get("timeout", 0),
        "kept": [o.id for o in outcomes if o.step is None],
        "kept_texts": [o.text for o in outcomes if o.step is None],
        "funnel": funnel.to_dict(),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def extract_all(items, extractor: str) -> list[str]:
    # a generous limit: quality should not depend on how loaded the machine is
    worker = Extractor(ExtractConfig(extractor=extractor, timeout_s=60))
    try:
        return [(worker.extract(html.decode("utf-8", "replace"))[0] or "").strip() for _, _, html in items]
    finally:
        worker.close()


def our_decisions(docs: list[dict], seconds: dict[str, float]) -> dict[str, dict[str, str | None]]:
    config = CurateConfig()
    steps = {
        "url": lambda d: UrlFilter(config.url)(d.url),
        "language": lambda d, f=LanguageFilter(config.language): f(d.text)[0],
        "gopher_repetition": GopherRepetitionFilter(config.gopher_repetition),
        "gopher_quality": GopherQualityFilter(config.gopher_quality),
        "c4": C4QualityFilter(config.c4),
        "fineweb_quality": FineWebQualityFilter(config.fineweb_quality),
    }
    url_filter = UrlFilter(config.url)
    steps["url"] = lambda d: url_filter(d.url)
    out = {}
    for name, f in steps.items():
        start = time.perf_counter()
        out[name] = {d["id"]: f(Doc(id=d["id"], url=d["url"], view=Text(d["text"]))) for d in docs}
        seconds[name] = time.perf_counter() - start
    return out


# -- extraction quality (the benchmark's evaluate.py definition) --------------------------------

_TOKEN = re.compile(r"\w+")


def shingle_scores(true: str, pred: str, n: int = 4) -> tuple[float, float, float]:
    def shingles(text: str) -> Counter:
        tokens = _TOKEN.findall(text or "")
        return Counter(tuple(tokens[i : i + n]) for i in range(max(1, len(tokens) - n + 1)) if tokens[i : i + n])

    t, p = shingles(true), shingles(pred)
    tp = sum((t & p).values())
    fp = sum((p - t).values())
    fn = sum((t - p).values())
    total = tp + fp + fn
    return (tp / total, fp / total, fn / total) if total else (0.0, 0.0, 0.0)


def prf(truths: list[str], preds: list[str]) -> dict[str, float]:
    def precision(tp, fp, fn):
        return 1.0 if fp == fn == 0 else 0.0 if tp == fp == 0 else tp / (tp + fp)

    def recall(tp, fp, fn):
        return 1.0 if fp == fn == 0 else 0.0 if tp == fn == 0 else tp / (tp + fn)

    scores = [shingle_scores(t, p) for t, p in zip(truths, preds)]
    p = statistics.mean(precision(*s) for s in scores if s[0] + s[1] > 0)
    r = statistics.mean(recall(*s) for s in scores if s[0] + s[2] > 0)
    return {"precision": round(p, 3), "recall": round(r, 3), "f1": round(2 * p * r / (p + r), 3)}


# -- the quality step (docs/quality.md) -----------------------------------------------------------


def quality_models(items, folder: Path) -> tuple[str, str]:
    """A fastText classifier trained here at the trainer's defaults (the 181 article bodies
    against the same pages' whole-page text), and a randomly initialised model of FineWeb-Edu's
    classifier's shape (BERT-base: 12 layers x 768, one regression output; a WordPiece
    vocabulary trained on the pages): its speed is the real one's, its scores are noise."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    from tasks.curate.quality import DEFAULT_LABEL, fasttext_line
    from tasks.quality_train import NEGATIVE_LABEL, QualityTrainConfig, train_fasttext

    from resiliparse.extract.html2text import extract_plain_text

    truth = json.loads((DATA / "ground-truth.json").read_text())
    pages_text = [extract_plain_text(html.decode("utf-8", "replace"), main_content=False) for _, _, html in items]
    folder.mkdir(parents=True, exist_ok=True)
    fasttext_path = folder / "fasttext.bin"
    lines = [f"{DEFAULT_LABEL} {fasttext_line(truth[k]['articleBody'])}" for k, *_ in items]
    lines += [f"{NEGATIVE_LABEL} {fasttext_line(t)}" for t in pages_text if t.strip()]
    train_fasttext(lines, str(fasttext_path), QualityTrainConfig())

    bert = folder / "bert-base-regression"
    if not (bert / "config.json").exists():
        tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tok.normalizer = normalizers.BertNormalizer(lowercase=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.train_from_iterator(pages_text, trainers.WordPieceTrainer(vocab_size=30522, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]))
        torch.manual_seed(0)
        BertForSequenceClassification(BertConfig(vocab_size=tok.get_vocab_size(), num_labels=1)).save_pretrained(bert)
        PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]",
                                mask_token="[MASK]", model_max_length=512).save_pretrained(bert)
    return str(fasttext_path), str(bert)


def quality_benchmark(items, warc: Path, python: Path, rounds: int, transformer_docs: int) -> dict:
    """Docs/s per core of our chain (trafilatura, as datatrove's FineWeb chain) with the
    fastText quality scorer off and on, against datatrove's chain, best of `rounds`
    interleaved rounds; then the transformers scorer's docs/s on CPU (one thread)."""
    import torch

    from tasks.curate.config import QualityConfig
    from tasks.curate.quality import scorer

    fasttext_path, bert = quality_models(items, WORK / "quality-models")
    fasttext_scorer = scorer(QualityConfig(model=fasttext_path))
    rows = []
    for _ in range(rounds):
        ours = run_ours(warc, "trafilatura")
        start = time.process_time()
        scores = fasttext_scorer.score(ours["kept_texts"])
        scoring = time.process_time() - start
        theirs = anchor(python, "chain", str(warc.parent), "trafilatura")
        rows.append({"off": len(items) / ours["cpu_seconds"], "on": len(items) / (ours["cpu_seconds"] + scoring),
                     "datatrove": len(items) / theirs["cpu_seconds"], "scored": len(scores), "scoring_seconds": scoring,
                     "scored_docs_per_s": len(scores) / scoring if scoring else None})
    best = {k: max(r[k] for r in rows) for k in ("off", "on", "datatrove")}
    print(f"\nquality step, fastText scorer ({Path(fasttext_path).stat().st_size / 1e6:.0f} MB model), trafilatura, docs per CPU-second, best of {rounds}:")
    print(f"  chain, quality off  {best['off']:7.1f}   {best['off'] / best['datatrove']:.1f}x datatrove's FineWeb chain ({best['datatrove']:.1f})")
    print(f"  chain, quality on   {best['on']:7.1f}   {best['on'] / best['datatrove']:.1f}x")
    print("  rounds (off / on / datatrove): " + "; ".join(f"{r['off']:.1f} / {r['on']:.1f} / {r['datatrove']:.1f}" for r in rows))
    print(f"  the scorer alone: {max(r['scored_docs_per_s'] for r in rows):,.0f} kept docs/s ({rows[0]['scored']} docs)")

    torch.set_num_threads(1)
    texts = [t for t in extract_all(items, "resiliparse") if t][:transformer_docs]
    bert_scorer = scorer(QualityConfig(model=bert, device="cpu", batch_size=8))
    bert_scorer.score(texts[:8])  # warm up
    start = time.process_time()
    bert_scorer.score(texts)
    cpu = time.process_time() - start
    tokens = sum(min(512, len(bert_scorer.tokenizer(t)["input_ids"])) for t in texts)
    print(f"transformers scorer, BERT-base shape (FineWeb-Edu's classifier), CPU, 1 thread: {len(texts) / cpu:.2f} docs/s "
          f"({len(texts)} docs, {tokens / len(texts):.0f} tokens each on average, batches of 8)")
    return {"fasttext": {**best, "ratio_off": best["off"] / best["datatrove"], "ratio_on": best["on"] / best["datatrove"], "rounds": rows},
            "transformers_cpu": {"docs_per_s": len(texts) / cpu, "docs": len(texts), "mean_tokens": tokens / len(texts), "threads": 1}}


# -- main ------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pages", type=int, default=None, help="limit the pages (default: all 181)")
    parser.add_argument("--skip-throughput", action="store_true", help="only agreement and extraction quality")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds per side; the fastest counts (the machine is shared)")
    parser.add_argument("--quality", action="store_true", help="only the quality step: fastText scorer on/off, transformers on CPU")
    parser.add_argument("--transformer-docs", type=int, default=32, help="documents for the transformers scorer's CPU figure")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    items = pages(args.pages)
    warc_dir = WORK / "warc"
    build_warc(items, warc_dir / "extraction-benchmark.warc.gz")
    python = ensure_anchor()
    print(f"{len(items)} real pages, {sum(len(h) for *_, h in items) / 1e6:.1f} MB of HTML; blocklists: {blocklists.load(str(blocklists.resolve_dir())).source}")
    if args.quality:
        out = REPO / "benchmarks" / "out"
        out.mkdir(exist_ok=True)
        result = quality_benchmark(items, warc_dir / "extraction-benchmark.warc.gz", python, args.rounds, args.transformer_docs)
        (out / "curate-quality.json").write_text(json.dumps(result, indent=2))
        return

    results: dict = {"pages": len(items), "throughput": {}, "agreement": {}, "extraction": {}}
    print(f"\nthroughput per core = documents per CPU-second of the process and its extraction worker")
    print(f"(read -> url -> extract -> language -> gopher x2 -> c4 -> fineweb; best of {args.rounds} interleaved rounds)")
    print(f"{'extractor':<12} {'ours docs/s':>12} {'datatrove docs/s':>17} {'ratio':>7} {'ours peak MB':>13} {'dt peak MB':>11} {'kept ours/dt':>13}")
    for extractor in () if args.skip_throughput else ("trafilatura", "resiliparse"):
        rounds = [(run_ours(warc_dir / "extraction-benchmark.warc.gz", extractor), anchor(python, "chain", str(warc_dir), extractor)) for _ in range(args.rounds)]
        ours = min((r[0] for r in rounds), key=lambda r: r["cpu_seconds"])
        theirs = min((r[1] for r in rounds), key=lambda r: r["cpu_seconds"])
        results["throughput"].setdefault("rounds", {})[extractor] = [
            {"ours_wall": len(items) / a["seconds"], "datatrove_wall": len(items) / b["seconds"],
             "ours_cpu": len(items) / a["cpu_seconds"], "datatrove_cpu": len(items) / b["cpu_seconds"]} for a, b in rounds
        ]
        ours_rate, their_rate = len(items) / ours["cpu_seconds"], len(items) / theirs["cpu_seconds"]
        results["throughput"][extractor] = {"ours": ours_rate, "datatrove": their_rate, "ratio": ours_rate / their_rate,
                                            "ours_peak_mb": ours["peak_rss_mb"], "datatrove_peak_mb": theirs["peak_rss_mb"],
                                            "kept_ours": len(ours["kept"]), "kept_datatrove": len(theirs["kept"]),
                                            "ours_seconds_by_step": {k: v["seconds"] for k, v in ours["funnel"]["steps"].items()}}
        print(f"{extractor:<12} {ours_rate:>12.1f} {their_rate:>17.1f} {ours_rate / their_rate:>6.1f}x {ours['peak_rss_mb']:>13.0f} {theirs['peak_rss_mb']:>11.0f} {len(ours['kept']):>6}/{len(theirs['kept'])}")
        print("   rounds, docs per CPU-second (wall-clock docs/s), ours vs datatrove: " + "; ".join(
            f"{r['ours_cpu']:.1f} ({r['ours_wall']:.1f}) vs {r['datatrove_cpu']:.1f} ({r['datatrove_wall']:.1f})" for r in results["throughput"]["rounds"][extractor]))
        print("   our seconds by step: " + ", ".join(f"{k} {v['seconds']:.2f}" for k, v in ours["funnel"]["steps"].items()))
        print("   datatrove seconds by step: " + ", ".join(f"{k.encode('ascii', 'ignore').decode().strip()} {v:.2f}" for k, v in theirs["step_seconds"].items() if v is not None))
        results["throughput"][extractor]["datatrove_seconds_by_step"] = theirs["step_seconds"]
    tp = results["throughput"]
    if "trafilatura" in tp and "resiliparse" in tp:
        # FineWeb as datatrove runs it extracts with trafilatura: our fast configuration against it
        cross = tp["resiliparse"]["ours"] / tp["trafilatura"]["datatrove"]
        per_round = [a["ours_cpu"] / b["datatrove_cpu"] for a, b in zip(tp["rounds"]["resiliparse"], tp["rounds"]["trafilatura"])]
        tp["resiliparse_vs_finewebs_chain"] = {"ratio": cross, "rounds": per_round}
        print(f"ours with resiliparse vs datatrove's FineWeb chain (trafilatura): {cross:.1f}x "
              f"(round by round {min(per_round):.1f}-{max(per_round):.1f}x)")

    print("\nper-filter keep/drop agreement (each filter alone, same extracted texts)")
    truths = json.loads((DATA / "ground-truth.json").read_text())
    docs = []
    for extractor in ("trafilatura", "resiliparse"):
        texts = extract_all(items, extractor)
        results["extraction"][extractor] = prf([truths[k]["articleBody"] for k, *_ in items], texts)
        docs += [{"id": f"{extractor}:{key}", "url": url, "text": text} for (key, url, _), text in zip(items, texts) if text]
    jsonl = WORK / "texts.jsonl"
    jsonl.write_text("".join(json.dumps(d) + "\n" for d in docs))
    anchor_filters = anchor(python, "filters", str(jsonl))
    theirs = anchor_filters["decisions"]
    ours_seconds: dict[str, float] = {}
    ours = our_decisions(docs, ours_seconds)
    disagreements: dict[str, list] = {}
    for name in FILTERS:
        same = sum((ours[name][d["id"]] is None) == (theirs[name][d["id"]] is None) for d in docs)
        results["agreement"][name] = same / len(docs)
        disagreements[name] = [
            {"id": d["id"], "ours": ours[name][d["id"]], "datatrove": theirs[name][d["id"]]}
            for d in docs if (ours[name][d["id"]] is None) != (theirs[name][d["id"]] is None)
        ]
        dropped = sum(ours[name][d["id"]] is not None for d in docs), sum(theirs[name][d["id"]] is not None for d in docs)
        print(f"{name:<18} {100 * same / len(docs):6.2f}%  ({len(docs) - same} of {len(docs)} differ; dropped ours {dropped[0]}, datatrove {dropped[1]})")
        for dis in disagreements[name][:6]:
            print(f"    {dis['id'][:40]:<40} ours={dis['ours']} datatrove={dis['datatrove']}")
    results["disagreements"] = disagreements
    results["filter_docs_per_s"] = {
        name: {"ours": len(docs) / ours_seconds[name], "datatrove": len(docs) / anchor_filters["seconds"][name]} for name in FILTERS
    }
    print("\neach filter alone, docs/s (every filter tokenizes for itself; datatrove caches its last 5 texts' tokens)")
    for name, v in results["filter_docs_per_s"].items():
        print(f"{name:<18} ours {v['ours']:>9.0f}  datatrove {v['datatrove']:>7.0f}  ratio {v['ours'] / v['datatrove']:>6.1f}x")

    print("\nextraction quality on the 181 pages (shingle P/R/F1, evaluate.py's definition; published trafilatura 0.958)")
    for extractor, m in results["extraction"].items():
        print(f"{extractor:<12} precision {m['precision']:.3f}  recall {m['recall']:.3f}  F1 {m['f1']:.3f}")
    out = REPO / "benchmarks" / "out"
    out.mkdir(exist_ok=True)
    (out / "curate.json").write_text(json.dumps(results, indent=2))
    print(f"\nwritten {out / 'curate.json'}")


if __name__ == "__main__":
    main()
