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
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_DIR = REPO / ".cache" / "trafilatura-1.11"
VERSION = "1.11.0"
# The whole folder, pinned exactly and installed without resolving (--no-deps): courlan,
# htmldate, justext and lxml decide what text 1.11 returns, and an upgrade of any would move
# FineWeb's decisions (tests/test_curate_pins.py pins them on real pages); the rest are theirs.
REQUIREMENTS = (
    f"trafilatura=={VERSION}",
    "courlan==1.4.0",
    "htmldate==1.11.0",
    "justext==3.0.2",
    "lxml==6.2.1",
    "lxml_html_clean==0.4.7",
    "babel==2.19.0",
    "certifi==2026.10.19.post1",
    "charset_normalizer==3.5.3",
    "dateparser==1.5.0",
    "python-dateutil==4.0.0",
    "pytz==2026.6",
    "regex==2026.12.2",
    "tld==0.13.2",
    "tzdata==2026.6",
    "tzlocal==5.4.5",
    "urllib3==2.8.0",
)


def folder(configured: str | None = None) -> Path:
    """Where 1.11 lives: the config's folder, else $CRAWL2CHAT_FINEWEB_EXTRACTOR, else .cache/
    (absolute: the worker runs in the repository, the caller anywhere)."""
    return Path(configured or os.environ.get("CRAWL2CHAT_FINEWEB_EXTRACTOR") or DEFAULT_DIR).resolve()


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


def installed(path: Path) -> dict[str, str]:
    """Package -> version of what `path` holds (from its dist-info folders)."""
    return dict(sorted(meta.name.removesuffix(".dist-info").rsplit("-", 1) for meta in path.glob("*.dist-info")))


def install(path: Path | None = None) -> Path:
    """pip-install 1.11 and its pinned libraries into `path`. The new folder is built beside it
    and swapped in by renames, so a failed or concurrent install never leaves a half folder
    under the real name."""
    path = path or folder()
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(staging), *REQUIREMENTS],
            check=True,
        )
        old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old.", dir=path.parent))
        if path.exists():
            path.rename(old / path.name)
        staging.rename(path)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path
