"""The web around the main text: sites, and the page shell every page of a site shares.

Real pages wrap their article in navigation, cookie banners, ads, newsletter boxes, scripts and
footers; the extractor's job is to keep the article and drop the rest. So each page here is a
`Site`'s shell around a list of `Block`s (the main text). The shell's text is deliberately what
the C4 and FineWeb rules would catch if it leaked (cookie and privacy-policy lines, short link
lines), and its script holds braces; the main text never does, which is what makes the ground
truth checkable: the expected text of a page is its blocks, one line each.
"""

from __future__ import annotations

import html
import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Block:
    """One line of main text: a heading, a paragraph, a list item or a line of code."""

    tag: str  # h1 h2 h3 p li pre
    text: str


@dataclass(frozen=True)
class Site:
    domain: str
    name: str
    sections: tuple[str, ...]  # navigation labels
    server: str = "nginx/1.24.0"
    scheme: str = "https"

    def url(self, path: str) -> str:
        return f"{self.scheme}://{self.domain}/{path.lstrip('/')}"


SITES = {
    "wiki": Site(
        "en.folkopedia.org", "Folkopedia", ("Main page", "Random article", "Recent changes", "Help", "Donate")
    ),
    "docs": Site(
        "docs.stdlibref.org",
        "Python Standard Library Reference",
        ("Library", "Tutorial", "Glossary", "Downloads", "Index"),
        server="Apache/2.4.58",
    ),
    "math": Site(
        "www.mathpractice-hub.com",
        "Math Practice Hub",
        ("Worksheets", "Grade 3", "Grade 4", "Grade 5", "Answer keys"),
        server="cloudflare",
    ),
    "news": Site("www.harbourgazette.net", "The Harbour Gazette", ("Local", "Business", "Sport", "Weather", "Opinion")),
    "blog": Site(
        "quietgardener.blog",
        "The Quiet Gardener",
        ("Home", "Vegetables", "Flowers", "Tools", "About me"),
        server="openresty",
    ),
    "shop": Site(
        "shop.brightwindows-deals.com",
        "BrightWindows Deals",
        ("Windows", "Doors", "Conservatories", "Offers", "Contact"),
        server="Microsoft-IIS/10.0",
        scheme="http",
    ),
    "forum": Site("forum.trailrunners.net", "Trail Runners Forum", ("Forums", "Members", "Events", "Rules", "Login")),
    "tech": Site("www.packetwise.io", "Packetwise", ("Guides", "Networking", "Servers", "Security", "Newsletter")),
    "eu": Site("www.reisefreunde.de", "Reisefreunde", ("Startseite", "Reisen", "Rezepte", "Kontakt", "Impressum")),
    "fr": Site("www.carnetdevoyage.fr", "Carnet de voyage", ("Accueil", "Voyages", "Cuisine", "Contact", "Mentions")),
    "es": Site("www.rutasyrecetas.es", "Rutas y recetas", ("Inicio", "Viajes", "Recetas", "Contacto", "Aviso legal")),
    "adult": Site(
        "www.xxx-tube-videos.net", "XXX Tube", ("Videos", "Categories", "Live", "Upload", "Login"), scheme="http"
    ),
}

_ADS = (
    ("Save 40% on noise-cancelling headphones this week only", "Shop now"),
    ("Compare car insurance quotes in two minutes", "Get a quote"),
    ("Learn a language in 15 minutes a day", "Start free"),
    ("Top-rated meal kits delivered to your door", "Order today"),
    ("Find cheap flights to over 500 destinations", "Search flights"),
    ("The mattress that 9 out of 10 sleepers recommend", "Try it"),
)
_TRENDING = (
    "10 tips for a tidier desk",
    "Why the ferry timetable changed",
    "Best hiking boots of the year",
    "How to store winter vegetables",
    "A beginner's guide to sourdough",
    "What the new bus routes mean",
    "Five board games for rainy days",
    "The quietest dishwashers we tested",
)


def _e(text: str) -> str:
    return html.escape(text, quote=False)


def render_blocks(blocks: list[Block]) -> str:
    """Main text as HTML: runs of list items become one list, runs of code lines one <pre>."""
    out: list[str] = []
    for i, block in enumerate(blocks):
        prev = blocks[i - 1].tag if i else None
        nxt = blocks[i + 1].tag if i + 1 < len(blocks) else None
        if block.tag == "li":
            out.append(
                ("<ul>" if prev != "li" else "") + f"<li>{_e(block.text)}</li>" + ("</ul>" if nxt != "li" else "")
            )
        elif block.tag == "pre":
            out.append(
                ("<pre><code>" if prev != "pre" else "") + _e(block.text) + ("</code></pre>" if nxt != "pre" else "")
            )
        else:
            out.append(f"<{block.tag}>{_e(block.text)}</{block.tag}>")
    return "\n".join(out)


def expected_text(blocks: list[Block]) -> str:
    """What a good extractor returns for the main text: one line per block, list items
    marked the way trafilatura marks them."""
    return "\n".join(f"- {b.text}" if b.tag == "li" else b.text for b in blocks)


def render_page(
    site: Site,
    title: str,
    blocks: list[Block],
    rng: random.Random,
    *,
    lang: str = "en",
    charset: str = "utf-8",
    main_html: str | None = None,
) -> str:
    """A whole HTML page: the site's shell around the main text.

    `main_html` replaces the rendered blocks (for pages whose main area is not prose at all).
    The shell varies a little per page (which ads, which trending links), as real shells do.
    """
    nav = "\n".join(f'      <li><a href="/{s.lower().replace(" ", "-")}/">{_e(s)}</a></li>' for s in site.sections)
    ad, cta = rng.choice(_ADS)
    trending = "\n".join(
        f'        <li><a href="/trending/{i}">{_e(t)}</a></li>' for i, t in enumerate(rng.sample(_TRENDING, 4))
    )
    body = main_html if main_html is not None else render_blocks(blocks)
    year = 2024
    return f"""<!DOCTYPE html>
<html lang="{lang}">
<head>
  <meta charset="{charset}">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>{_e(title)} | {_e(site.name)}</title>
  <link rel="stylesheet" href="/static/site.css">
  <script>window.dataLayer = window.dataLayer || []; function gtag(){{dataLayer.push(arguments);}} gtag('js', new Date());</script>
</head>
<body>
  <div id="cookie-consent" class="banner">
    <p>This website uses cookies to improve your experience and to show personalised ads. See our cookie policy for details.</p>
    <button class="accept">Accept all</button> <button class="reject">Reject</button>
  </div>
  <header class="site-header">
    <a class="logo" href="/">{_e(site.name)}</a>
    <nav><ul>
{nav}
    </ul></nav>
    <form class="search" action="/search"><input name="q" placeholder="Search"><button>Go</button></form>
  </header>
  <div class="layout">
    <main id="content">
      <article>
{body}
      </article>
    </main>
    <aside class="sidebar">
      <div class="ad">
        <span class="ad-label">Advertisement</span>
        <a href="https://ads.example-network.com/click?id={rng.randrange(10**6)}">{_e(ad)}</a> <a class="cta">{_e(cta)}</a>
      </div>
      <div class="trending">
        <h4>Trending</h4>
        <ul>
{trending}
        </ul>
      </div>
      <div class="newsletter">
        <h4>Newsletter</h4>
        <p>Get the best of {_e(site.name)} in your inbox.</p>
        <form><input type="email" placeholder="Your email"><button>Subscribe</button></form>
      </div>
    </aside>
  </div>
  <footer class="site-footer">
    <ul><li><a href="/about">About</a></li><li><a href="/contact">Contact</a></li><li><a href="/privacy">Privacy Policy</a></li><li><a href="/terms">Terms of Use</a></li></ul>
    <p>&copy; {year} {_e(site.name)}. All rights reserved.</p>
  </footer>
  <script src="/static/app.js" async></script>
</body>
</html>
"""
