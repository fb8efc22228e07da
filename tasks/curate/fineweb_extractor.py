"""FineWeb's own extractor, trafilatura 1.11, installed apart from the project's trafilatura 2.x.

FineWeb's filter thresholds were tuned on the text trafilatura 1.x gave (datatrove 0.10.1 pins
`trafilatura>=1.8,<1.12`). trafilatura 2.x extracts articles better (shingle F1 0.961 against
0.952 on the extraction benchmark) but its text has another line structure: it no longer breaks
lines around inline markup, renders tables as `| a | b |` rows, keeps some page parts 1.x left
out. The line rules then decide differently on up to a third of a documentation site's pages
(docs/curate-agreement.md). So by default the chain does both: FineWeb's filters judge the text
1.11 gives (exactly FineWeb's decisions), and the dataset keeps 2.x's text of the pages they keep.

Both versions cannot share one environment, so 1.11 and the libraries whose versions shape its
output live in a folder of their own (`pip install --target`), which only the judging extraction
worker puts first on its path. `crawl2chat install-fineweb-extractor` (run by `make setup`)
installs it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_DIR = REPO / ".cache" / "trafilatura-1.11"
VERSION = "1.11.0"
# Exact versions: these libraries decide what text 1.11 returns, so an upgrade of any would move
# FineWeb's decisions (tests/test_curate_pins.py pins them on real pages).
REQUIREMENTS = (
    f"trafilatura=={VERSION}",
    "courlan==1.4.0",
    "htmldate==1.11.0",
    "justext==3.0.2",
    "lxml==6.2.1",
    "lxml_html_clean==0.4.7",
)


def folder(configured: str | None = None) -> Path:
    """Where 1.11 lives: the config's folder, else $CRAWL2CHAT_FINEWEB_EXTRACTOR, else .cache/."""
    return Path(configured or os.environ.get("CRAWL2CHAT_FINEWEB_EXTRACTOR") or DEFAULT_DIR)


def missing(path: Path) -> str | None:
    """Why `path` cannot serve as FineWeb's extractor, or None when it can."""
    meta = path / f"trafilatura-{VERSION}.dist-info"
    if meta.is_dir():
        return None
    return (
        f"FineWeb's extractor (trafilatura {VERSION}) is not installed in {path}: run "
        "`crawl2chat install-fineweb-extractor` (or `make setup`), or set curate.extract.judge "
        "to 'extractor' to let the filters judge the extractor's own text"
    )


def install(path: Path | None = None) -> Path:
    """pip-install 1.11 and its pinned libraries into `path` (a fresh folder each time)."""
    path = path or folder()
    staging = path.with_name(path.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-warn-conflicts",
            "--target",
            str(staging),
            *REQUIREMENTS,
        ],
        check=True,
    )
    shutil.rmtree(path, ignore_errors=True)
    staging.rename(path)  # a failed install never leaves a half folder under the real name
    return path
