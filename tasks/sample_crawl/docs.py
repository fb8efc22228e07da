"""Python's own standard-library documentation, rendered locally into docs pages.

Real English prose and real code, with no download: each page is one stdlib module's
docstring plus the signatures and docstrings of its public functions and classes, read with
`inspect` from the running interpreter (so pages follow the Python version that generates
them). A section is kept only if it could not trip a curation rule meant for other pages:
no braces (C4 drops any document with `{`), no ellipses or `#`, no email or IP addresses, no
line already on the page (FineWeb's duplicated-line rule is strict). Modules whose kept
sections are too thin for a page are skipped, so every docs page is clean by construction.
"""

from __future__ import annotations

import importlib
import inspect
import re
import warnings
from functools import cache

from tasks.sample_crawl import margins
from tasks.sample_crawl.site import Block, expected_text

# Modules with substantial docstrings, in a fixed order (the crawl takes a prefix of it).
MODULES = (
    "textwrap",
    "shlex",
    "difflib",
    "heapq",
    "bisect",
    "fractions",
    "statistics",
    "calendar",
    "fnmatch",
    "glob",
    "shutil",
    "tempfile",
    "filecmp",
    "fileinput",
    "zipfile",
    "tarfile",
    "gzip",
    "bz2",
    "lzma",
    "zlib",
    "base64",
    "binascii",
    "hashlib",
    "hmac",
    "secrets",
    "random",
    "math",
    "cmath",
    "decimal",
    "numbers",
    "operator",
    "functools",
    "itertools",
    "copy",
    "pprint",
    "reprlib",
    "enum",
    "graphlib",
    "contextlib",
    "abc",
    "atexit",
    "traceback",
    "warnings",
    "dataclasses",
    "weakref",
    "types",
    "inspect",
    "dis",
    "ast",
    "tokenize",
    "keyword",
    "linecache",
    "pickle",
    "copyreg",
    "shelve",
    "marshal",
    "dbm",
    "sqlite3",
    "csv",
    "configparser",
    "netrc",
    "plistlib",
    "html",
    "html.parser",
    "xml.dom.minidom",
    "urllib.parse",
    "http.cookies",
    "mimetypes",
    "quopri",
    "uu",
    "wave",
    "colorsys",
    "locale",
    "gettext",
    "argparse",
    "getopt",
    "logging",
    "getpass",
    "curses.ascii",
    "platform",
    "errno",
    "ctypes",
    "threading",
    "queue",
    "sched",
    "subprocess",
    "socket",
    "selectors",
    "signal",
    "mmap",
    "codecs",
    "unicodedata",
    "stringprep",
    "readline",
    "rlcompleter",
    "struct",
    "array",
    "datetime",
    "zoneinfo",
    "time",
    "os.path",
    "pathlib",
    "stat",
    "io",
    "string",
    "re",
    "json",
    "collections",
    "typing",
    "unittest",
    "doctest",
    "timeit",
    "trace",
    "tracemalloc",
    "pdb",
    "cProfile",
    "pstats",
    "venv",
    "zipapp",
    "sysconfig",
    "builtins",
    "gc",
    "site",
    "code",
    "codeop",
    "pkgutil",
    "modulefinder",
    "runpy",
    "importlib",
    "compileall",
    "py_compile",
    "pyclbr",
    "symtable",
    "token",
    "tabnanny",
    "ipaddress",
    "email.utils",
    "mailbox",
    "smtplib",
    "ftplib",
    "poplib",
    "imaplib",
    "uuid",
    "socketserver",
    "http.server",
    "xmlrpc.client",
    "webbrowser",
    "wsgiref.util",
    "cgi",
    "optparse",
    "imghdr",
    "sndhdr",
    "chunk",
    "aifc",
    "sunau",
    "nntplib",
    "telnetlib",
    "pipes",
)
MAX_SECTIONS = 16
_BAD = re.compile(r"[{}#@]|\.\.\.|…|\t")


def _paragraphs(doc: str) -> list[Block]:
    """Docstring text to blocks: prose paragraphs joined into one line, code kept line by line."""
    blocks: list[Block] = []
    for chunk in re.split(r"\n\s*\n", inspect.cleandoc(doc)):
        lines = [line for line in chunk.splitlines() if line.strip()]
        if not lines:
            continue
        if any(line.startswith((" ", ">>>")) for line in lines):
            blocks += [Block("pre", line.strip()) for line in lines]
        else:
            blocks.append(Block("p", " ".join(" ".join(lines).split())))  # as HTML renders it
    return blocks


def _clean(blocks: list[Block]) -> bool:
    text = "\n".join(b.text for b in blocks)
    lower = text.lower()
    return not (
        _BAD.search(text)
        or margins.EMAIL.search(text)
        or margins.IPV4.search(text)
        or "javascript" in lower
        or "lorem ipsum" in lower
        or any(p in lower for p in margins.POLICY)
        or any(len(b.text) > 600 for b in blocks)
    )


def _members(module) -> list[tuple[str, object]]:
    """Public functions and classes defined in the module, then each class's public methods."""
    names = getattr(module, "__all__", None) or [n for n in dir(module) if not n.startswith("_")]
    out = []
    for name in sorted(set(names)):
        obj = getattr(module, name, None)
        if not (inspect.isfunction(obj) or inspect.isclass(obj) or inspect.isbuiltin(obj)):
            continue
        if getattr(obj, "__module__", module.__name__) != module.__name__:
            continue
        out.append((name, obj))
        if inspect.isclass(obj):
            out += [
                (f"{name}.{m}", f)
                for m, f in sorted(vars(obj).items())
                if not m.startswith("_") and inspect.isfunction(f)
            ]
    return [(name, obj) for name, obj in out if inspect.getdoc(obj)]


@cache
def module_page(name: str) -> tuple[str, list[Block]] | None:
    """(title, blocks) for a module's docs page, or None if it does not make a clean page."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = importlib.import_module(name)
    except Exception:  # a module this interpreter lacks (removed, or a missing C library)
        return None
    doc = inspect.getdoc(module) or ""
    summary = doc.strip().splitlines()[0].rstrip(".") if doc.strip() else "module reference"
    title = f"{name} \N{EM DASH} {summary}"
    blocks = [Block("h1", title)]
    seen = {title}
    intro = _paragraphs(doc)[1:] if doc else []
    if intro and _clean(intro) and not {b.text for b in intro} & seen:
        blocks += intro
        seen |= {b.text for b in intro}
    sections = []
    for member, obj in _members(module):
        # Headings name the function rather than print its signature: a signature's brackets
        # and commas would push the share of words with letters under Gopher's 0.8.
        section = [Block("h2", f"{name}.{member}"), *_paragraphs(inspect.getdoc(obj) or "")]
        texts = {b.text for b in section}
        prose = sum(len(b.text.split()) for b in section if b.tag == "p")
        if prose < 12 or not _clean(section) or texts & seen or len(texts) < len(section):
            continue
        if _alpha(expected_text(section)) < margins.MIN_ALPHA - 0.02:
            continue
        seen |= texts
        sections.append(section)
    # Keep the most prose-like sections (in their alphabetical order), then drop the most
    # code-like ones until the page clears the margin, or is too thin to be a page.
    best = sorted(sections, key=lambda sec: -_alpha(expected_text(sec)))[:MAX_SECTIONS]
    sections = [sec for sec in sections if any(sec is b for b in best)]
    while len(sections) >= 2:
        page = blocks + [b for section in sections for b in section]
        if not margins.problems(expected_text(page)):
            return title, page
        sections.remove(min(sections, key=lambda sec: _alpha(expected_text(sec))))
    return None


def _alpha(text: str) -> float:
    tokens = margins.words(text)
    return sum(any(c.isalpha() for c in t) for t in tokens) / max(len(tokens), 1)


def docs_pages(limit: int) -> list[tuple[str, str, list[Block]]]:
    """Up to `limit` (module, title, blocks), in the fixed module order."""
    out = []
    for name in MODULES:
        if len(out) >= limit:
            break
        page = module_page(name)
        if page is not None:
            out.append((name, *page))
    return out
