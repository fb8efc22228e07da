"""Real documentation sites, one or two per HTML generator, from Debian's documentation packages.

The curate agreement corpus (tests, benchmarks/curate.py) is real HTML of many kinds: each site
here is a package's installed HTML tree (`make system-packages` installs them), served under the URL
the project publishes it at. Man pages have no HTML in the package: `man2html` (man2html-base)
renders the man1 pages of a package that every Debian system has.

A site whose package is not installed is reported as missing (`available` is False), never
silently left out.
"""

from __future__ import annotations

import gzip
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tasks.crawls_html import write_html_warc


@dataclass(frozen=True)
class DocSite:
    name: str
    generator: str
    package: str
    root: str  # the installed HTML tree (for man pages: where the rendered tree goes)
    base_url: str

    def available(self) -> bool:
        if self.generator == "man2html":
            return shutil.which("man2html") is not None and bool(man_pages())
        return Path(self.root).is_dir()


SITES = (
    DocSite(
        "postgresql",
        "DocBook",
        "postgresql-doc-15",
        "/usr/share/doc/postgresql-doc-15/html",
        "https://www.postgresql.org/docs/15/",
    ),
    DocSite(
        "maint-guide",
        "DocBook",
        "maint-guide",
        "/usr/share/doc/maint-guide/html",
        "https://www.debian.org/doc/manuals/maint-guide/",
    ),
    DocSite(
        "diffutils",
        "Texinfo",
        "diffutils-doc",
        "/usr/share/doc/diffutils",
        "https://www.gnu.org/software/diffutils/manual/html_node/",
    ),
    DocSite("gnu-standards", "Texinfo", "gnu-standards", "/usr/share/doc/gnu-standards", "https://www.gnu.org/prep/"),
    DocSite("doxygen", "Doxygen", "doxygen-doc", "/usr/share/doc/doxygen/html", "https://www.doxygen.nl/manual/"),
    DocSite("docutils", "Docutils", "docutils-doc", "/usr/share/doc/docutils-doc", "https://docutils.sourceforge.io/"),
    DocSite(
        "requests",
        "Sphinx",
        "python-requests-doc",
        "/usr/share/doc/python-requests-doc/html",
        "https://requests.readthedocs.io/en/latest/",
    ),
    DocSite(
        "jinja2",
        "Sphinx",
        "python-jinja2-doc",
        "/usr/share/doc/python-jinja2-doc/html",
        "https://jinja.palletsprojects.com/en/3.1.x/",
    ),
    DocSite("junit4", "javadoc", "junit4-doc", "/usr/share/doc/junit4/api", "https://junit.org/junit4/javadoc/4.13.2/"),
    DocSite(
        "nodejs", "markdown", "nodejs-doc", "/usr/share/doc/nodejs/api", "https://nodejs.org/docs/latest-v18.x/api/"
    ),
    DocSite("git", "AsciiDoc", "git-doc", "/usr/share/doc/git-doc", "https://git-scm.com/docs/"),
    DocSite("coreutils-man", "man2html", "man2html-base", "", "https://manpages.debian.org/bookworm/coreutils/"),
)
MAN_PACKAGE = "coreutils"  # essential on Debian: its man pages are there wherever man pages are


def man_pages(package: str = MAN_PACKAGE) -> list[Path]:
    """The package's installed man1 pages (none where the image leaves man pages out)."""
    try:
        listing = subprocess.run(["dpkg", "-L", package], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return []
    return sorted(
        Path(p) for p in listing.splitlines() if "/man/man1/" in p and p.endswith(".1.gz") and Path(p).is_file()
    )


def render_man_site(out_dir: Path, package: str = MAN_PACKAGE) -> Path:
    """man2html's rendering of the package's man1 pages, one `name.1.html` each, in `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for page in man_pages(package):
        html = subprocess.run(
            ["man2html", "-r"], input=gzip.decompress(page.read_bytes()), capture_output=True, check=True
        ).stdout
        # man2html writes a CGI header ("Content-type: ...") and a blank line before the page
        html = html.split(b"\n\n", 1)[1] if html.lower().startswith(b"content-type") else html
        (out_dir / f"{page.name[:-3]}.html").write_bytes(html)
    return out_dir


def site_warc(site: DocSite, work: Path, limit: int | None = None) -> tuple[Path, int]:
    """The site as one WARC file under `work` and its page count (the site must be available)."""
    root = Path(site.root) if site.generator != "man2html" else render_man_site(work / f"{site.name}-html")
    out = work / f"{site.name}.warc.gz"
    return out, write_html_warc(root, out, site.base_url, limit=limit)
