"""The URL filter: FineWeb's rules, in FineWeb's order, first match drops.

1. the registered domain is listed (`domain`); 2. the full host name is (`subdomain`);
3. the URL is (`url`); 4. a banned word is among the URL's words (`hard_blacklisted`);
5. at least `soft_word_threshold` soft-banned words are (`soft_blacklisted`);
6. a banned sub-word occurs in the URL reduced to lower-case letters and digits
   (`blacklisted_subword`, Aho-Corasick).

Two deliberate differences from datatrove: URL words are lower-cased before the word rules
(datatrove matches them case-sensitively against lower-case lists, so `/PORN/` slipped
through), and the URL list is matched without the scheme too (its entries have none, so
datatrove's exact-URL rule never fires).

tldextract uses its bundled public-suffix snapshot only: no suffix-list URLs, no cache dir,
so it never touches the network.
"""

from __future__ import annotations

import functools
import re

import ahocorasick
import tldextract

from tasks.curate import blocklists
from tasks.curate.config import UrlConfig

_WORD_SPLIT = re.compile(r"[^a-zA-Z0-9]+")
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


@functools.cache
def _tld_extractor() -> tldextract.TLDExtract:
    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None, fallback_to_snapshot=True)


@functools.lru_cache(maxsize=4)
def _automaton(subwords: tuple[str, ...]) -> ahocorasick.Automaton | None:
    if not subwords:
        return None
    automaton = ahocorasick.Automaton(ahocorasick.STORE_INTS)
    for i, word in enumerate(subwords):
        automaton.add_word(word, i)
    automaton.make_automaton()
    return automaton


class UrlFilter:
    step = "url"

    def __init__(self, config: UrlConfig):
        self.config = config
        self.lists = blocklists.load(str(blocklists.resolve_dir(config.blocklist_dir)))
        self.extra_domains = frozenset(d.strip().lower() for d in config.extra_domains)
        self.extra_urls = frozenset(_SCHEME.sub("", u.strip()).lower() for u in config.extra_urls)
        self.automaton = _automaton(self.lists.banned_subwords)
        self.extract = _tld_extractor()
        self.extract("http://warm.up.example.com/")  # loads the suffix snapshot now, not on the first page

    def _listed_domain(self, domain: str) -> bool:
        return bool(domain) and (domain in self.extra_domains or self.lists.contains(self.lists.domains, domain))

    def __call__(self, url: str) -> str | None:
        parts = self.extract(url)
        if self._listed_domain(parts.top_domain_under_public_suffix.lower()):
            return "domain"
        if self._listed_domain(parts.fqdn.lower()):
            return "subdomain"
        bare = _SCHEME.sub("", url)
        for candidate in (url, bare):
            if candidate.lower() in self.extra_urls or self.lists.contains(self.lists.urls, candidate):
                return "url"
        url_words = set(_WORD_SPLIT.split(url.lower()))
        if not url_words.isdisjoint(self.lists.banned_words):
            return "hard_blacklisted"
        if len(url_words & self.lists.soft_banned_words) >= self.config.soft_word_threshold:
            return "soft_blacklisted"
        if self.automaton is not None:
            squashed = blocklists.normalize_word(url)
            if next(self.automaton.iter(squashed), None) is not None:
                return "blacklisted_subword"
        return None
