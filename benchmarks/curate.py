"""Curate benchmark: our chain against datatrove's FineWeb steps on the same real pages.

    python benchmarks/curate.py [--pages-per-site N] [--skip-throughput] [--rounds R]

The quality step's own benchmark is benchmarks/quality.py (docs/quality.md).

The corpus is real HTML of many generators, each group one WARC file:
- the 181 article pages of ../shared/data/extraction-benchmark ("articles", with ground truth);
- the real Common Crawl and ClueWeb records of ../shared/data/warc/commoncrawl-sample;
- one site per documentation generator from Debian's doc packages (`make system-packages`;
  tasks/doc_sites.py): DocBook, Texinfo, Doxygen, Docutils, Sphinx, javadoc, markdown,
  AsciiDoc, man2html, up to N pages each, spread over the site.

Printed, per group and extractor: each filter's keep/drop agreement with datatrove, twice:
"own text" (each side extracts the page itself: ours the text our chain's filters judge, which
for trafilatura is FineWeb's 1.11 in its own folder, tasks/curate/fineweb_extractor.py;
datatrove with its pinned trafilatura 1.11) and "same text" (both filters on datatrove's text:
the filters alone). Then extraction quality on the articles (shingle precision/recall/F1 as the
benchmark's evaluate.py defines it) of the text a kept page keeps, and throughput: documents
per CPU-second of both chains (read -> url -> extract -> language -> Gopher x2 -> C4 ->
FineWeb, and ours the kept pages' text) on the articles and on the documentation sites, with
our seconds per step and how many pages both chains keep.

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
from tasks.curate.config import CurateConfig, ReadConfig  # noqa: E402
from tasks.curate.extract import Extractor  # noqa: E402
from tasks.curate.filters import (  # noqa: E402
    C4QualityFilter,
    Doc,
    FineWebQualityFilter,
    GopherQualityFilter,
    GopherRepetitionFilter,
)
from tasks.curate.language import LanguageFilter, model_path  # noqa: E402
from tasks.curate.normalize import normalize  # noqa: E402
from tasks.curate.text import Text  # noqa: E402
from tasks.curate.tokenizer import clear_cache  # noqa: E402
from tasks.curate.urls import UrlFilter  # noqa: E402
from tasks.curate.warc import read_warc  # noqa: E402
from tasks.doc_sites import SITES, site_warc  # noqa: E402

SHARED = Path(os.environ.get("CRAWL2CHAT_SHARED_DATA", REPO.parent / "shared" / "data"))
DATA = SHARED / "extraction-benchmark"
WORK = REPO / ".cache" / "bench-curate"
ANCHOR = REPO / ".cache" / "anchor-venv"
ANCHOR_PACKAGES = [
    "datatrove[processing]==0.10.1",
    "spacy",
    "aiohttp",
    "resiliparse",
    "warcio",
    "faust-cchardet",
    "python-magic",
    "lxml_html_clean",
]
FILTERS = ("url", "language", "gopher_repetition", "gopher_quality", "c4", "fineweb_quality")


# -- inputs ----------------------------------------------------------------------------------


def articles(limit: int | None) -> list[tuple[str, str, bytes]]:
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


def corpus(per_site: int, articles_limit: int | None) -> dict[str, dict]:
    """Group name -> {generator, warc}: every group one WARC file under WORK."""
    groups: dict[str, dict] = {}
    build_warc(articles(articles_limit), WORK / "articles" / "articles.warc.gz")
    groups["articles"] = {"generator": "news/blog articles", "warc": WORK / "articles" / "articles.warc.gz"}
    for name in ("warcfile", "clueweb-quirk"):
        groups[f"cc-{name}"] = {
            "generator": "Common Crawl" if name == "warcfile" else "ClueWeb09 (Japanese)",
            "warc": SHARED / "warc" / "commoncrawl-sample" / f"{name}.warc.gz",
        }
    for site in SITES:
        if not site.available():
            groups[site.name] = {
                "generator": site.generator,
                "warc": None,
                "missing": f"not measured: {site.package} is not installed (make system-packages)",
            }
            continue
        warc, _ = site_warc(site, WORK / "docs", limit=per_site)
        groups[site.name] = {"generator": site.generator, "warc": warc}
    return groups


def group_pages(warc: Path) -> list[tuple[str, str, bytes]]:
    """(id, url, UTF-8 HTML) of every page the read step accepts."""
    return [(r.id, r.url or "", r.page) for r in read_warc(str(warc), ReadConfig()) if r.reason is None]


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
    subprocess.run(
        [str(python), str(REPO / "benchmarks" / "curate_anchor.py"), *args[:2], str(out), *args[2:]],
        check=True,
        env=env,
        stderr=open(WORK / "anchor.log", "a"),
    )
    return json.loads(out.read_text())


# -- our side ----------------------------------------------------------------------------------


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a live process has used, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _workers_cpu(chain: Chain) -> dict[int, float]:
    """CPU seconds of each live extraction worker (the extractor's and FineWeb's judge), by pid."""
    workers = (w for w in (chain.extractor, chain.judge) if w is not None)
    procs = [w._proc for w in workers if w._proc is not None and w._proc.poll() is None]
    return {proc.pid: process_cpu(proc.pid) for proc in procs}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_ours(warcs: list[Path], extractor: str) -> dict:
    clear_cache()  # every round starts cold, as datatrove's fresh process does
    config = CurateConfig(extract={"extractor": extractor})
    chain = Chain(config)
    for worker in filter(None, (chain.extractor, chain.judge)):  # start the workers first
        worker.extract("<html><body><p>warm up</p></body></html>")
    funnel = Funnel(0)
    workers = _workers_cpu(chain)
    restarts = [w.restarts for w in (chain.extractor, chain.judge) if w is not None]  # kept per thread
    start, cpu, children = time.perf_counter(), time.process_time(), _children_cpu()
    outcomes = [o for warc in warcs for o in chain.run(str(warc), funnel)]
    seconds = time.perf_counter() - start
    # A worker killed for a timeout is reaped: its CPU shows in RUSAGE_CHILDREN (the first ones'
    # warm-up included, taken off here); the live workers' is read from /proc.
    end = _workers_cpu(chain)
    extraction = _children_cpu() - children + sum(end.values()) - sum(workers.values())
    return {
        "seconds": seconds,
        "cpu_seconds": time.process_time() - cpu + extraction,
        "worker_restarts": sum(w.restarts for w in (chain.extractor, chain.judge) if w is not None) - sum(restarts),
        "docs": len(outcomes),
        "kept": [o.id for o in outcomes if o.step is None],
        "kept_texts": [o.text for o in outcomes if o.step is None],
        "funnel": funnel.to_dict(),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def our_texts(pages: list[tuple[str, str, bytes]], extractor: str) -> tuple[list[str], list[str]]:
    """Each page's text as our chain hands it to FineWeb's filters (the judged text: trafilatura
    1.11's when the config judges with it), and the text a kept page keeps (the extractor's,
    normalized if the config does). Fresh workers per group, as the chain resets trafilatura's
    caches per WARC file; a generous time limit: quality should not depend on the machine's load."""
    config = CurateConfig(extract={"extractor": extractor, "timeout_s": 60})
    shape = config.normalize.applies_to(extractor)

    def texts(fineweb: bool) -> list[str]:
        worker = Extractor(config.extract, fineweb)
        try:
            return [(worker.extract(page)[0] or "").strip() for _, _, page in pages]
        finally:
            worker.close()

    kept = [normalize(t, config.normalize.join_bullets) if t and shape else t for t in texts(False)]
    return (texts(True) if config.extract.judges_with_fineweb() else kept), kept


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


# -- main ------------------------------------------------------------------------------------------


def throughput(python: Path, name: str, warcs: list[Path], rounds: int, results: dict, extractors: list[str]) -> None:
    docs = sum(len(group_pages(w)) for w in warcs)
    print(f"\n{name}: {docs} pages in {len(warcs)} WARC file(s); best of {rounds} interleaved rounds")
    print(
        f"{'extractor':<12} {'ours docs/s':>12} {'datatrove docs/s':>17} {'ratio':>7} {'ours peak MB':>13} {'dt peak MB':>11} {'kept ours/dt (both)':>20}"
    )
    out = results["throughput"].setdefault(name, {"docs": docs})
    anchor_dir = warcs[0].parent
    for extractor in extractors:
        rounds_ = [
            (run_ours(warcs, extractor), anchor(python, "chain", str(anchor_dir), extractor)) for _ in range(rounds)
        ]
        ours = min((r[0] for r in rounds_), key=lambda r: r["cpu_seconds"])
        theirs = min((r[1] for r in rounds_), key=lambda r: r["cpu_seconds"])
        rate, their_rate = docs / ours["cpu_seconds"], docs / theirs["cpu_seconds"]
        out[extractor] = {
            "ours": rate,
            "datatrove": their_rate,
            "ratio": rate / their_rate,
            "ours_peak_mb": ours["peak_rss_mb"],
            "datatrove_peak_mb": theirs["peak_rss_mb"],
            "kept_ours": len(ours["kept"]),
            "kept_datatrove": len(theirs["kept"]),
            "kept_by_both": len(set(ours["kept"]) & set(theirs["kept"])),
            "ours_seconds_by_step": {k: v["seconds"] for k, v in ours["funnel"]["steps"].items()},
            "datatrove_seconds_by_step": theirs["step_seconds"],
            "rounds": [
                {
                    "ours_cpu": docs / a["cpu_seconds"],
                    "datatrove_cpu": docs / b["cpu_seconds"],
                    "ours_wall": docs / a["seconds"],
                    "datatrove_wall": docs / b["seconds"],
                }
                for a, b in rounds_
            ],
        }
        print(
            f"{extractor:<12} {rate:>12.1f} {their_rate:>17.1f} {rate / their_rate:>6.1f}x {ours['peak_rss_mb']:>13.0f} {theirs['peak_rss_mb']:>11.0f} {len(ours['kept']):>9}/{len(theirs['kept'])} ({out[extractor]['kept_by_both']})"
        )
        print(
            "   rounds, docs per CPU-second (wall-clock docs/s), ours vs datatrove: "
            + "; ".join(
                f"{r['ours_cpu']:.1f} ({r['ours_wall']:.1f}) vs {r['datatrove_cpu']:.1f} ({r['datatrove_wall']:.1f})"
                for r in out[extractor]["rounds"]
            )
        )
        print(f"   our worker restarts (timeouts): {[a['worker_restarts'] for a, _ in rounds_]}")
        print(
            "   our seconds by step: "
            + ", ".join(f"{k} {v:.2f}" for k, v in out[extractor]["ours_seconds_by_step"].items())
        )
        print(
            "   datatrove seconds by step: "
            + ", ".join(
                f"{k.encode('ascii', 'ignore').decode().strip()} {v:.2f}"
                for k, v in theirs["step_seconds"].items()
                if v is not None
            )
        )
    if "trafilatura" in out and "resiliparse" in out:
        # FineWeb as datatrove runs it extracts with trafilatura: our fast configuration against it
        cross = out["resiliparse"]["ours"] / out["trafilatura"]["datatrove"]
        out["resiliparse_vs_finewebs_chain"] = cross
        print(f"ours with resiliparse vs datatrove's FineWeb chain (trafilatura): {cross:.1f}x")


def agreement(python: Path, groups: dict[str, dict], results: dict) -> list[str]:
    """Per group and extractor, each filter's agreement with datatrove: own text and same text."""
    pages = {name: group_pages(g["warc"]) for name, g in groups.items() if g["warc"] is not None}
    jsonl = WORK / "pages.jsonl"
    jsonl.write_text(
        "".join(
            json.dumps({"id": pid, "group": name, "url": url, "html": page.decode("utf-8", "surrogatepass")}) + "\n"
            for name, items in pages.items()
            for pid, url, page in items
        )
    )
    theirs_text: dict[str, dict[str, str]] = {}
    ours_text: dict[str, dict[str, str]] = {}
    article_texts: dict[str, list[str]] = {}
    for extractor in ("trafilatura", "resiliparse"):
        theirs_text[extractor] = anchor(python, "extract", str(jsonl), extractor)["texts"]
        ours_text[extractor] = {}
        for name, items in pages.items():
            judged, kept = our_texts(items, extractor)
            ours_text[extractor].update({pid: t for (pid, _, _), t in zip(items, judged)})
            if name == "articles":
                article_texts[extractor] = kept
    urls = {pid: url for items in pages.values() for pid, url, _ in items}
    dt_docs = [
        {"id": f"{ex}:{pid}", "url": urls[pid], "text": t}
        for ex, texts in theirs_text.items()
        for pid, t in texts.items()
        if t
    ]
    dt_jsonl = WORK / "datatrove-texts.jsonl"
    dt_jsonl.write_text("".join(json.dumps(d) + "\n" for d in dt_docs))
    anchor_filters = anchor(python, "filters", str(dt_jsonl))
    theirs = anchor_filters["decisions"]
    seconds: dict[str, float] = {}
    same = our_decisions(dt_docs, seconds)  # our filters on datatrove's own texts
    own_docs = [
        {"id": f"{ex}:{pid}", "url": urls[pid], "text": t}
        for ex, texts in ours_text.items()
        for pid, t in texts.items()
        if t
    ]
    own = our_decisions(own_docs, {})
    results["filter_docs_per_s"] = {
        name: {"ours": len(dt_docs) / seconds[name], "datatrove": len(dt_docs) / anchor_filters["seconds"][name]}
        for name in FILTERS
    }

    def decision(table: dict, name: str, key: str) -> str | None:
        return table[name].get(key, "extract/empty")  # no text: the page never reaches the filter

    failures = []
    for extractor in ("trafilatura", "resiliparse"):
        print(f"\n{extractor}: per-filter keep/drop agreement with datatrove, % of pages: own text (same text)")
        print(f"{'group':<15} {'generator':<20} {'pages':>5} " + " ".join(f"{f[:17]:>17}" for f in FILTERS))
        for name, g in groups.items():
            row = results["agreement"].setdefault(name, {"generator": g["generator"]})
            if g["warc"] is None:
                row["missing"] = g["missing"]
                print(f"{name:<15} {g['generator']:<20} {g['missing']}")
                continue
            ids = [pid for pid, _, _ in pages[name]]
            cells, entry = [], {"pages": len(ids), "own": {}, "same": {}, "disagreements": {}}
            for f in FILTERS:
                keys = [f"{extractor}:{pid}" for pid in ids]
                agree_own = sum((decision(own, f, k) is None) == (decision(theirs, f, k) is None) for k in keys) / len(
                    keys
                )
                agree_same = sum(
                    (decision(same, f, k) is None) == (decision(theirs, f, k) is None) for k in keys
                ) / len(keys)
                entry["own"][f], entry["same"][f] = agree_own, agree_same
                entry["disagreements"][f] = [
                    {"url": urls[k.split(":", 1)[1]], "ours": decision(own, f, k), "datatrove": decision(theirs, f, k)}
                    for k in keys
                    if (decision(own, f, k) is None) != (decision(theirs, f, k) is None)
                ]
                cells.append(f"{100 * agree_own:6.1f} ({100 * agree_same:5.1f})")
                if agree_own < 0.97:
                    failures.append(f"{extractor} {name} {f} {100 * agree_own:.1f}%")
            row[extractor] = entry
            print(f"{name:<15} {g['generator'][:20]:<20} {len(ids):>5} " + " ".join(f"{c:>17}" for c in cells))
    if "articles" in pages:
        truths = json.loads((DATA / "ground-truth.json").read_text())
        keys = [url_key for url_key in sorted(truths)][: len(pages["articles"])]
        reference = [truths[k]["articleBody"] for k in keys]
        results["extraction"] = {ex: prf(reference, texts) for ex, texts in article_texts.items()}
        results["extraction"]["trafilatura (datatrove's 1.11)"] = prf(
            reference, [theirs_text["trafilatura"].get(pid, "") for pid, _, _ in pages["articles"]]
        )
        truth = {pid: text for (pid, _, _), text in zip(pages["articles"], reference)}
        results["kept_text"] = kept_text_quality(groups["articles"]["warc"], truth, theirs_text["trafilatura"])
    return failures


def kept_text_quality(warc: Path, reference: dict[str, str], finewebs: dict[str, str]) -> dict:
    """The text the dataset keeps, on the articles the chain keeps: ours (what `Chain` writes:
    2.x's text, normalized, under C4's line rules) against FineWeb's (datatrove's 1.11 text after
    C4's rewrite), both scored against the ground truth."""
    config = CurateConfig(extract={"timeout_s": 60})
    kept = {o.id: o.text for o in Chain(config).run(str(warc), Funnel(0)) if o.step is None}
    truth = {pid: text for pid, text in reference.items() if pid in kept}
    c4 = C4QualityFilter(config.c4)

    def after_c4(text: str) -> str:
        doc = Doc(id="", url="", view=Text(text))
        c4(doc)
        return doc.text

    ids = sorted(truth)
    return {
        "pages": len(ids),
        "ours": prf([truth[i] for i in ids], [kept[i] for i in ids]),
        "fineweb": prf([truth[i] for i in ids], [after_c4(finewebs.get(i, "")) for i in ids]),
    }


# -- main ------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--pages-per-site", type=int, default=40, help="pages per documentation site (spread over the site)"
    )
    parser.add_argument("--articles", type=int, default=None, help="limit the article pages (default: all 181)")
    parser.add_argument("--skip-throughput", action="store_true", help="only agreement and extraction quality")
    parser.add_argument("--skip-agreement", action="store_true", help="only throughput")
    parser.add_argument(
        "--extractors", default="trafilatura,resiliparse", help="throughput for these (comma-separated)"
    )
    parser.add_argument(
        "--corpora", default="articles,docs", help="throughput on these: articles, docs (the documentation sites)"
    )
    parser.add_argument(
        "--rounds", type=int, default=2, help="interleaved rounds per side; the fastest counts (the machine is shared)"
    )
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    groups = corpus(args.pages_per_site, args.articles)
    python = ensure_anchor()
    print(f"corpus: {len(groups)} groups; blocklists: {blocklists.load(str(blocklists.resolve_dir())).source}")
    results: dict = {"throughput": {}, "agreement": {}, "extraction": {}}
    if not args.skip_throughput:
        print("\nthroughput per core = documents per CPU-second of the process and its extraction worker")
        print(
            "(read -> url -> extract -> language -> gopher x2 -> c4 -> fineweb; ours then the kept pages' text, kept_text)"
        )
        extractors = args.extractors.split(",")
        if "articles" in args.corpora:
            throughput(python, "articles", [groups["articles"]["warc"]], args.rounds, results, extractors)
        if "docs" in args.corpora:
            docs = [
                g["warc"] for name, g in groups.items() if g["warc"] is not None and g["warc"].parent == WORK / "docs"
            ]
            throughput(python, "documentation sites", docs, args.rounds, results, extractors)

    if args.skip_agreement:
        return
    failures = agreement(python, groups, results)
    print(
        "\nextraction quality on the articles (shingle P/R/F1, evaluate.py's definition; published trafilatura 0.958)"
    )
    for extractor, m in results["extraction"].items():
        print(f"{extractor:<30} precision {m['precision']:.3f}  recall {m['recall']:.3f}  F1 {m['f1']:.3f}")
    kept = results.get("kept_text", {"pages": 0})
    print(f"the text the dataset keeps, on the {kept['pages']} articles the chain keeps (after C4's line rules):")
    for side, label in (
        (("ours", "ours (2.x, judged by 1.11)"), ("fineweb", "FineWeb's (1.11)")) if kept["pages"] else ()
    ):
        m = kept[side]
        print(f"{label:<30} precision {m['precision']:.3f}  recall {m['recall']:.3f}  F1 {m['f1']:.3f}")
    print(
        "\neach filter alone on datatrove's texts, docs/s (every filter tokenizes for itself; datatrove caches its last 5 texts' tokens)"
    )
    for name, v in results["filter_docs_per_s"].items():
        print(
            f"{name:<18} ours {v['ours']:>9.0f}  datatrove {v['datatrove']:>7.0f}  ratio {v['ours'] / v['datatrove']:>6.1f}x"
        )
    print("\nbelow 97% own-text agreement: " + ("none" if not failures else "; ".join(failures)))
    results["below_97"] = failures
    out = REPO / "benchmarks" / "out"
    out.mkdir(exist_ok=True)
    (out / "curate.json").write_text(json.dumps(results, indent=2, default=str))
    print(f"\nwritten {out / 'curate.json'}")


if __name__ == "__main__":
    main()
