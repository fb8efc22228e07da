"""The curate stage's config: one section per step, thresholds named as FineWeb names them.

Defaults are FineWeb's (datatrove `examples/fineweb.py` with the filter defaults it relies on).
Where the FineWeb-era code, datatrove HEAD and the paper disagree, the field's description says
which one we follow; docs/curate.md explains why.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from tasks.runtime import StageConfig


class ReadConfig(StageConfig):
    html_types: list[str] = Field(
        ["text/html", "application/xhtml+xml"],
        description="Payload types kept (WARC-Identified-Payload-Type, else HTTP Content-Type, else sniffed)",
    )
    max_html_bytes: int = Field(2_000_000, ge=1, description="Pages with a larger payload are dropped (read/too_large)")
    require_http_ok: bool = Field(True, description="Drop responses whose HTTP status is not 2xx (read/http_status_N)")
    verify_digests: bool = Field(
        True, description="Drop records whose WARC-Block-Digest does not match (read/digest_mismatch)"
    )


class UrlConfig(StageConfig):
    enabled: bool = True
    blocklist_dir: str | None = Field(
        None,
        description="Folder with the lists; default: $CRAWL2CHAT_BLOCKLISTS, else .cache/blocklists (FineWeb's, from `crawl2chat fetch-blocklists`), else the small list shipped in tasks/curate/blocklists",
    )
    soft_word_threshold: int = Field(2, ge=1, description="Drop when this many soft-banned words appear in the URL")
    extra_domains: list[str] = Field(default_factory=list)
    extra_urls: list[str] = Field(default_factory=list)


class ExtractConfig(StageConfig):
    extractor: Literal["trafilatura", "resiliparse"] = "trafilatura"
    timeout_s: float = Field(
        1.0, ge=1.0, description="Per-document limit; the worker process is killed and respawned past it (no signals)"
    )
    favor_precision: bool = True
    include_comments: bool = False
    deduplicate: bool = True
    min_chars: int = Field(1, ge=0, description="Extracted text shorter than this counts as extract/empty")
    judge: Literal["fineweb", "extractor"] | None = Field(
        None,
        description="Whose text FineWeb's filters (language, Gopher, C4, FineWeb) judge. fineweb: the text trafilatura 1.11, FineWeb's own version, gives with these settings, so every decision is FineWeb's; the kept pages then keep the extractor's text (tasks/curate/fineweb_extractor.py). extractor: the extractor's own text. Default (null): fineweb for trafilatura, extractor for resiliparse",
    )
    fineweb_extractor_dir: str | None = Field(
        None,
        description="Folder holding trafilatura 1.11 (`crawl2chat install-fineweb-extractor`); default $CRAWL2CHAT_FINEWEB_EXTRACTOR, else .cache/trafilatura-1.11",
    )

    def judges_with_fineweb(self) -> bool:
        return self.judge == "fineweb" if self.judge is not None else self.extractor == "trafilatura"


class NormalizeConfig(StageConfig):
    enabled: bool | None = Field(
        None,
        description="Put extracted text in trafilatura 1.x's shape (lines stripped, inner whitespace runs collapsed, blank lines dropped; tasks/curate/normalize.py). Default (null): on for trafilatura, off for resiliparse",
    )
    join_bullets: bool = Field(
        False,
        description="Also join a line that is only a bullet with the next line. Off: trafilatura 1.x, which FineWeb ran, keeps such lines, and joining them lowers agreement with datatrove (docs/curate-agreement.md)",
    )

    def applies_to(self, extractor: str) -> bool:
        return self.enabled if self.enabled is not None else extractor == "trafilatura"


class LanguageConfig(StageConfig):
    enabled: bool = True
    languages: list[str] | None = Field(
        ["en"], description="Kept languages (fastText lid.176 labels); null keeps any language above the threshold"
    )
    threshold: float = Field(
        0.65,
        description="Keep when the language's score is > threshold (strict, as the code does; the paper writes >=)",
    )


class GopherRepetitionConfig(StageConfig):
    enabled: bool = True
    dup_para_frac: float = 0.30
    dup_para_char_frac: float = 0.20
    dup_line_frac: float = 0.30
    dup_line_char_frac: float = 0.20
    top_n_grams: dict[int, float] = {2: 0.20, 3: 0.18, 4: 0.16}
    dup_n_grams: dict[int, float] = {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10}


class GopherQualityConfig(StageConfig):
    enabled: bool = True
    min_doc_words: int = 50
    max_doc_words: int = 100_000
    min_avg_word_length: float = 3
    max_avg_word_length: float = 10
    max_symbol_word_ratio: float = 0.1
    max_bullet_lines_ratio: float = 0.9
    max_ellipsis_lines_ratio: float = 0.3
    min_alpha_words_ratio: float = 0.8
    min_stop_words: int = 2
    stop_words: list[str] = ["the", "be", "to", "of", "and", "that", "have", "with"]
    stop_words_distinct: bool = Field(
        True, description="Count distinct stop words (datatrove HEAD); false counts occurrences (FineWeb era)"
    )


class C4Config(StageConfig):
    enabled: bool = True
    min_num_sentences: int = 5
    min_words_per_line: int = 3
    max_word_length: int = 1000
    remove_citations: bool = True
    filter_lorem_ipsum: bool = True
    filter_javascript: bool = True
    filter_curly_bracket: bool = True
    filter_policy: bool = True
    filter_no_terminal_punct: bool = Field(
        False, description="Off in FineWeb: the rule alone removed about 30% of tokens"
    )


class FineWebQualityConfig(StageConfig):
    enabled: bool = True
    line_punct_thr: float = Field(
        0.12, description="Drop if the share of lines ending in terminal punctuation is < this"
    )
    short_line_thr: float = Field(
        0.67, description="Drop if the share of lines of <= short_line_length chars is > this"
    )
    short_line_length: int = 30
    char_duplicates_ratio: float = Field(
        0.01,
        description="Drop if chars in duplicated lines / chars is > this. 0.01 is the released code's value (used here); the paper says 0.1",
    )
    new_line_ratio: float = Field(0.3, description="Drop if newlines / words is > this (the 'list_ratio' rule)")


class CustomFilter(StageConfig):
    path: str = Field(
        description="Import path 'package.module:Name' of a class taking **options, or a function (doc) -> reason | None"
    )
    options: dict[str, Any] = Field(default_factory=dict)


class QualityConfig(StageConfig):
    """The model-based quality step (tasks/curate/quality.py): its own config section, not
    part of `curate`, so that changing it never invalidates the extraction and filter tasks."""

    model: str | None = Field(
        None,
        description="The classifier, off when null: a fastText .bin/.ftz file, a model from `crawl2chat quality train` (its lake folder), a transformers model folder (local or lake), or a hub name (e.g. HuggingFaceFW/fineweb-edu-classifier)",
    )
    kind: Literal["auto", "fasttext", "transformers"] = Field(
        "auto", description="auto: fastText for a .bin/.ftz file or a `quality train` folder, transformers otherwise"
    )
    threshold: float = Field(
        0.5,
        description="Keep a document when its score is >= this. FineWeb-Edu keeps int_score >= 3, i.e. a raw score above 2.5",
    )
    label: str | None = Field(
        None,
        description="Whose probability is the score: fastText default __label__hq; transformers with several outputs default the last label. A one-output (regression) head's value is the score as it is",
    )
    revision: str | None = Field(
        None,
        description="Hub revision (commit) of a hub model; pin it: the cache key knows a hub model only by name and revision",
    )
    batch_size: int = Field(32, ge=1, description="Documents per forward pass (transformers)")
    max_length: int = Field(
        512, ge=8, description="Tokens per document the transformers model sees (FineWeb-Edu's classifier: 512)"
    )
    device: str = Field(
        "auto", description="auto: the worker's GPU when it has one, else CPU; or cpu, cuda, cuda:1 ..."
    )
    dtype: Literal["float32", "bfloat16", "float16"] = Field(
        "float32", description="transformers weights and activations"
    )
    histogram: tuple[float, float, int] | None = Field(
        None,
        description="Score histogram (low, high, bins) in the funnel and report; default (0, 1, 10) for probabilities, (0, 5, 10) for a regression head",
    )


class PiiConfig(StageConfig):
    emails: bool = True
    public_ipv4: bool = True
    ipv6: bool = False
    phone_numbers: bool = False


class CurateConfig(StageConfig):
    crawl: str | None = Field(None, description="Name under curated/; default: the folder the WARC files sit in")
    read: ReadConfig = ReadConfig()
    url: UrlConfig = UrlConfig()
    extract: ExtractConfig = ExtractConfig()
    normalize: NormalizeConfig = NormalizeConfig()
    language: LanguageConfig = LanguageConfig()
    gopher_repetition: GopherRepetitionConfig = GopherRepetitionConfig()
    gopher_quality: GopherQualityConfig = GopherQualityConfig()
    c4: C4Config = C4Config()
    fineweb_quality: FineWebQualityConfig = FineWebQualityConfig()
    custom: list[CustomFilter] = Field(default_factory=list)
    dedup_enabled: bool = Field(
        True,
        description="Run exact + MinHash dedup (flows/dedup.py, the `dedup` config section) between the filters and PII",
    )
    pii: PiiConfig = PiiConfig()
    examples_per_step: int = Field(3, ge=0, description="Removed examples per step in the run report")
