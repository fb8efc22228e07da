"""FineWeb's filters judge the text of FineWeb's own extractor (trafilatura 1.11, in a folder of
its own); kept pages keep the project's extractor's text (tasks/curate/fineweb_extractor.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tasks.crawls_html import write_html_warc
from tasks.curate import fineweb_extractor
from tasks.curate.chain import Chain, Funnel
from tasks.curate.config import CurateConfig, ExtractConfig
from tasks.curate.extract import Extractor
from tasks.curate.filters import (
    C4QualityFilter,
    Doc,
    FineWebQualityFilter,
    GopherQualityFilter,
    GopherRepetitionFilter,
)
from tasks.curate.language import LanguageFilter
from tasks.curate.normalize import normalize
from tasks.curate.text import Text
from tasks.curate.warc import read_warc
from tasks.doc_sites import SITES, site_warc

PINS = Path(__file__).parent / "pins"
OFF = {"enabled": False}


def site(name: str):
    found = next(s for s in SITES if s.name == name)
    if not found.available():
        pytest.fail(f"{found.package} is not installed: run `make system-packages`")
    return found


def texts(config: ExtractConfig, pages: list[bytes], fineweb: bool) -> list[str]:
    """Each page's text from a fresh worker, in order (trafilatura's dedup cache carries over)."""
    worker = Extractor(config, fineweb)
    try:
        return [(worker.extract(page)[0] or "").strip() for page in pages]
    finally:
        worker.close()


def test_by_default_trafilatura_is_judged_by_finewebs_version_and_resiliparse_by_itself():
    assert CurateConfig().extract.judges_with_fineweb()
    assert not CurateConfig(extract={"extractor": "resiliparse"}).extract.judges_with_fineweb()
    assert not CurateConfig(extract={"judge": "extractor"}).extract.judges_with_fineweb()
    assert CurateConfig(extract={"extractor": "resiliparse", "judge": "fineweb"}).extract.judges_with_fineweb()


def test_the_judge_gives_trafilatura_1_11s_own_text():
    """Doxygen's graph legend page as trafilatura 1.11.0 extracted it (pinned in tests/pins),
    which the project's trafilatura 2.x does not give."""
    html = (Path(site("doxygen").root) / "examples/define/html/graph_legend.html").read_bytes()
    old = (PINS / "doxygen-graph-legend.trafilatura-1.11.0.txt").read_text().strip()
    judged, own = (texts(ExtractConfig(timeout_s=60), [html], fineweb)[0] for fineweb in (True, False))
    assert judged == old
    assert own != old


def test_a_missing_finewebs_extractor_is_a_clear_error_and_judging_by_the_extractor_needs_none(tmp_path):
    config = CurateConfig(extract={"fineweb_extractor_dir": str(tmp_path / "nowhere")})
    with pytest.raises(RuntimeError, match="crawl2chat install-fineweb-extractor"):
        Chain(config)
    Chain(config.model_copy(update={"extract": config.extract.model_copy(update={"judge": "extractor"})}))


def test_a_folder_that_does_not_hold_1_11_is_refused_by_the_worker(tmp_path):
    """A folder that looks installed but holds no trafilatura would let the project's 2.x answer
    in 1.11's place: the worker checks the version it imported."""
    meta = tmp_path / f"trafilatura-{fineweb_extractor.VERSION}.dist-info"
    meta.mkdir()
    (meta / "METADATA").write_text(f"Metadata-Version: 2.1\nName: trafilatura\nVersion: {fineweb_extractor.VERSION}\n")
    worker = Extractor(ExtractConfig(fineweb_extractor_dir=str(tmp_path)), fineweb=True)
    with pytest.raises(RuntimeError, match=r"(?s)did not start: .*expected trafilatura 1\.11\.0, imported 2\."):
        worker.extract("<html><body><p>hello</p></body></html>")


def test_the_chain_decides_on_finewebs_text_and_keeps_the_extractors_text(tmp_path):
    """Real Sphinx pages: every page is removed by the step that FineWeb's filters, chained on
    trafilatura 1.11's text, name, and a kept page's text is 2.x's, normalized, with C4's line
    rules. Among these pages one is kept by FineWeb's judgement and removed when the filters judge
    2.x's own text, so a chain that ignored the judge would fail here."""
    warc, _ = site_warc(site("requests"), tmp_path, limit=12)
    config = CurateConfig()
    records = [r for r in read_warc(str(warc), config.read) if r.reason is None]
    pages = [r.page for r in records]

    filters = [
        GopherRepetitionFilter(config.gopher_repetition),
        GopherQualityFilter(config.gopher_quality),
        C4QualityFilter(config.c4),
        FineWebQualityFilter(config.fineweb_quality),
    ]
    language = LanguageFilter(config.language)
    expected = {}
    for record, text in zip(records, texts(config.extract, pages, fineweb=True)):
        step = reason = None
        if not text:
            step, reason = "extract", "empty"
        elif reason := language(text)[0]:
            step = "language"
        else:
            doc = Doc(id=record.id, url=record.url, view=Text(text))
            step, reason = next(((f.step, r) for f in filters if (r := f(doc))), (None, None))
        expected[record.id] = (step, reason)
    kept_ids = [r.id for r in records if expected[r.id][0] is None]
    kept_pages = [r.page for r in records if r.id in kept_ids]
    kept_texts = [
        C4QualityFilter(config.c4).kept_lines(normalize(t)) for t in texts(config.extract, kept_pages, fineweb=False)
    ]

    funnel = Funnel()
    outcomes = list(Chain(config).run(str(warc), funnel))
    assert {o.id: (o.step, o.reason) for o in outcomes} == expected
    assert [o.text for o in outcomes if o.step is None] == kept_texts
    assert kept_texts and all(kept_texts)
    steps = funnel.to_dict()["steps"]
    assert "normalize" not in steps  # part of kept_text, after the judgement
    assert steps["kept_text"]["docs_in"] == steps["kept_text"]["docs_out"] == len(kept_ids)

    own = {o.id: o.step for o in Chain(CurateConfig(extract={"judge": "extractor"})).run(str(warc), Funnel())}
    assert any(own[i] is not None for i in kept_ids)


def test_a_kept_page_the_extractor_finds_nothing_in_keeps_the_judged_text(tmp_path):
    """Docutils' header page: trafilatura 1.11 returns its one line, 2.x nothing. With every
    filter off the page is kept; it keeps the judged text, counted, rather than vanish."""
    html_dir = tmp_path / "site"
    html_dir.mkdir()
    shutil.copy(Path(site("docutils").root) / "docs" / "header.html", html_dir / "header.html")
    write_html_warc(html_dir, tmp_path / "header.warc.gz", "https://docutils.sourceforge.io/docs/")
    config = CurateConfig(
        extract={"timeout_s": 60},
        language=OFF,
        gopher_repetition=OFF,
        gopher_quality=OFF,
        c4=OFF,
        fineweb_quality=OFF,
    )
    judged = texts(config.extract, [(html_dir / "header.html").read_bytes()], fineweb=True)[0]
    funnel = Funnel()
    [outcome] = Chain(config).run(str(tmp_path / "header.warc.gz"), funnel)
    assert outcome.step is None and judged and outcome.text == judged
    assert funnel.to_dict()["counts"]["kept_text_judged_empty"] == 1


def test_a_kept_page_whose_text_keeps_no_line_under_c4_keeps_the_judged_text():
    """trafilatura 2.x's text of this page is two-word lines only, all of which C4's line rules
    drop: the page keeps the judged text, counted, never an empty text."""
    words = ["Granite cliffs", "Salt marsh", "Tidal pools", "Sand dunes", "Pine forest", "Peat bog"] * 3
    page = (
        "<html><head><title>Landscapes</title></head><body><main><article><h1>Landscapes</h1>"
        + "".join(f"<p>{w}</p>" for w in words)
        + "</article></main></body></html>"
    ).encode()
    chain = Chain(CurateConfig(extract={"timeout_s": 60}))
    assert texts(chain.config.extract, [page], fineweb=False)[0]  # 2.x does extract the lines
    funnel = Funnel()
    judged = "The judged text of the page, which FineWeb's filters kept."
    assert chain._kept_text(page, judged, funnel) == judged
    assert funnel.to_dict()["counts"] == {"kept_text_judged_no_line_kept": 1}


C4_LINES = [
    "A river runs through the old town and past the mill.",
    "Short line",
    "Read the privacy policy before you sign up for the newsletter.",
    "Please enable JavaScript to see the map of the walk.",
    "The bridge was rebuilt in 1921 after the flood [3].",
    "Its arches [citation needed] are of local stone and brick.",
    "A code sample: { return 1; } closes the block.",
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit.",
    "Is the ferry still running on Sundays this year?",
    "   Indented line with enough words in it.   ",
    "",
]


@given(st.lists(st.sampled_from(C4_LINES), max_size=30))
def test_c4_line_rules_alone_keep_what_the_filter_keeps(lines):
    """kept_lines is C4's rewrite without its document rules: on a text C4 keeps, the same text;
    a line that would have dropped the document is dropped itself."""
    text = "\n".join(lines)
    c4 = C4QualityFilter(CurateConfig().c4)
    doc = Doc(id="d", url="", view=Text(text))
    kept = c4.kept_lines(text)
    if c4(doc) is None:
        assert kept == doc.text
    assert "{" not in kept and "lorem ipsum" not in kept.lower()
    assert set(filter(None, kept.split("\n"))) <= {c4.citation.sub("", line.strip()) for line in lines}
