"""Inputs for `crawl2chat quality train` on real data (docs/quality.md, "A real run").

    python benchmarks/quality_real.py WCXB_DIR OUT_DIR

- positives: the 181 hand-checked article bodies of ../shared/data/extraction-benchmark
  (`ground-truth.json`), as OUT_DIR/positives.jsonl ({"text": ...} per line);
- a crawl: the WCXB benchmark's dev pages (1,497 real pages of 2025 in seven page types:
  articles, forums, products, collections, listings, documentation, services; CC-BY-4.0,
  github.com/Murrough-Foley/web-content-extraction-benchmark, `dev/html/*.html.gz`) wrapped
  as Common Crawl-style WARC files in OUT_DIR/wcxb/, for `crawl2chat curate`.

Then it prints the commands that curate the crawl and train the classifier against it.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.curate import DATA, build_warc  # noqa: E402

FILES = 4


def main(wcxb: Path, out: Path) -> None:
    truth = json.loads((DATA / "ground-truth.json").read_text())
    out.mkdir(parents=True, exist_ok=True)
    (out / "positives.jsonl").write_text(
        "".join(json.dumps({"id": k, "text": truth[k]["articleBody"]}) + "\n" for k in sorted(truth))
    )
    pages = []
    for path in sorted((wcxb / "dev" / "html").glob("*.html.gz")):
        file_id = path.name.split(".")[0]
        meta = json.loads((wcxb / "dev" / "ground-truth" / f"{file_id}.json").read_text())
        key = hashlib.sha256(
            f"wcxb-{file_id}".encode()
        ).hexdigest()  # build_warc takes a record id from its first 32 hex digits
        url = meta.get("url") or f"https://wcxb.invalid/{file_id}"  # one page (4547) has no URL
        pages.append((key, url, gzip.decompress(path.read_bytes())))
    for i in range(FILES):
        build_warc(pages[i::FILES], out / "wcxb" / f"wcxb-dev-{i}.warc.gz")
    print(
        f"{len(truth)} positives in {out / 'positives.jsonl'}; {len(pages)} pages in {FILES} WARC files under {out / 'wcxb'}"
    )
    print(f"\ncrawl2chat curate {out / 'wcxb'} --crawl wcxb --extractor resiliparse")
    print(f"crawl2chat quality train --positives {out / 'positives.jsonl'} --crawl wcxb --name articles")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(Path(sys.argv[1]), Path(sys.argv[2]))
