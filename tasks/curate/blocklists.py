"""The URL blocklists: FineWeb's own (from datatrove's wheel, fetched at install time), or ours.

FineWeb's lists hold about 4.5M domains. As a Python set that is hundreds of MB in every
worker process and seconds to build; here each list of domains or URLs is a sorted array of
64-bit hashes (blake2b), saved as `.npy` once and memory-mapped by every worker: 8 bytes per
entry shared through the page cache, loaded in milliseconds, looked up by binary search.
A false positive needs a 64-bit collision (about 1 in 4e12 per lookup against 4.5M entries).

A list folder holds `domains`, `urls` (one per line), `banned_words.txt`,
`soft_banned_words.txt`, `banned_subwords.txt`; `domains.npy`/`urls.npy` are built beside the
text files when missing. `crawl2chat fetch-blocklists` (run by `make setup`) fills
`.cache/blocklists` from the datatrove wheel on PyPI; nothing is downloaded at run time.
"""

from __future__ import annotations

import functools
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.hashing import hash64

REPO = Path(__file__).resolve().parents[2]
DEFAULT_DIR = REPO / ".cache" / "blocklists"
FALLBACK_DIR = Path(__file__).resolve().parent / "blocklists"
DATATROVE_VERSION = "0.10.1"
ASSETS = "datatrove/assets/"
_NON_ALNUM = re.compile(r"[^a-z0-9]+")


def normalize_word(word: str) -> str:
    """Words and sub-words are compared lower-cased with everything but a-z0-9 removed."""
    return _NON_ALNUM.sub("", word.lower())


def _entries(path: Path) -> list[str]:
    if not path.exists():
        return []
    with open(path, encoding="utf-8", errors="replace") as f:
        return [line.strip() for line in f if line.strip() and not line.startswith("#")]


def hash_array(entries: list[str]) -> np.ndarray:
    return np.unique(np.fromiter((hash64(e.lower(), "little") for e in entries), dtype=np.uint64, count=len(entries)))


def _list_file(folder: Path, stem: str) -> Path:
    return folder / stem if (folder / stem).exists() else folder / f"{stem}.txt"


def compile_lists(folder: Path) -> None:
    """Build `domains.npy` and `urls.npy` from the text lists (atomically)."""
    for stem in ("domains", "urls"):
        target = folder / f"{stem}.npy"
        array = hash_array(_entries(_list_file(folder, stem)))
        tmp = folder / f".{stem}.{os.getpid()}.npy"
        np.save(tmp, array)
        os.replace(tmp, target)


@dataclass(frozen=True)
class Blocklists:
    source: str
    domains: np.ndarray  # sorted uint64 hashes
    urls: np.ndarray
    banned_words: frozenset[str]
    soft_banned_words: frozenset[str]
    banned_subwords: tuple[str, ...]

    @staticmethod
    def contains(array: np.ndarray, text: str) -> bool:
        if not len(array):
            return False
        h = np.uint64(hash64(text.lower(), "little"))
        i = int(np.searchsorted(array, h))
        return i < len(array) and array[i] == h


def resolve_dir(configured: str | None = None) -> Path:
    """The configured folder, else $CRAWL2CHAT_BLOCKLISTS, else FineWeb's (if fetched), else ours."""
    if configured:
        return Path(configured).expanduser().resolve()
    env = os.environ.get("CRAWL2CHAT_BLOCKLISTS")
    if env:
        return Path(env).expanduser().resolve()
    if (DEFAULT_DIR / "domains.npy").exists():
        return DEFAULT_DIR
    return FALLBACK_DIR


@functools.lru_cache(maxsize=4)
def load(folder: str) -> Blocklists:
    """The lists in `folder`, memory-mapped; one copy per process (threads share it)."""
    path = Path(folder)
    if not path.is_dir():
        raise FileNotFoundError(f"no blocklist folder at {path}")
    arrays = {}
    for stem in ("domains", "urls"):
        npy = path / f"{stem}.npy"
        text = _list_file(path, stem)
        if npy.exists() and (not text.exists() or npy.stat().st_mtime >= text.stat().st_mtime):
            arrays[stem] = np.load(npy, mmap_mode="r")
        else:  # a small hand-made list: hashing it in memory is instant, no file written
            arrays[stem] = hash_array(_entries(text))
    meta = path / "SOURCE.json"
    source = json.loads(meta.read_text()).get("source", str(path)) if meta.exists() else str(path)
    return Blocklists(
        source=source,
        domains=arrays["domains"],
        urls=arrays["urls"],
        banned_words=frozenset(filter(None, map(normalize_word, _entries(path / "banned_words.txt")))),
        soft_banned_words=frozenset(filter(None, map(normalize_word, _entries(path / "soft_banned_words.txt")))),
        banned_subwords=tuple(sorted(set(filter(None, map(normalize_word, _entries(path / "banned_subwords.txt")))))),
    )


def fetch_datatrove_lists(
    dest: Path = DEFAULT_DIR, version: str = DATATROVE_VERSION, wheel: Path | None = None
) -> Path:
    """Fill `dest` with FineWeb's lists from the datatrove wheel (downloaded with pip, --no-deps,
    unless a wheel file is given), then compile the hash arrays. Idempotent."""
    dest.mkdir(parents=True, exist_ok=True)
    if (dest / "domains.npy").exists() and (dest / "SOURCE.json").exists():
        return dest
    if wheel is None:
        cache = REPO / ".cache" / "datatrove"
        found = sorted(cache.glob(f"datatrove-{version}-*.whl"))
        if not found:
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    f"datatrove=={version}",
                    "--no-deps",
                    "--quiet",
                    "-d",
                    str(cache),
                ],
                check=True,
            )
            found = sorted(cache.glob(f"datatrove-{version}-*.whl"))
        wheel = found[0]
    with zipfile.ZipFile(wheel) as zf:
        for name in ("banned_words.txt", "soft_banned_words.txt", "banned_subwords.txt"):
            (dest / name).write_bytes(zf.read(ASSETS + name))
        archive = zf.read(ASSETS + "url_filterblacklistsv0_3_0.tar.gz")
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        for member in tar.getmembers():
            if member.isfile() and member.name.rsplit("/", 1)[-1] in ("domains", "urls"):
                data = tar.extractfile(member).read()  # type: ignore[union-attr]
                (dest / member.name.rsplit("/", 1)[-1]).write_bytes(data)
    compile_lists(dest)
    (dest / "SOURCE.json").write_text(
        json.dumps({"source": f"datatrove=={version} assets (FineWeb URL blocklists v0.3.0)"})
    )
    return dest
