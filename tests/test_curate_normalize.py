"""The normalize step: trafilatura 2.x's text in the shape trafilatura 1.x (FineWeb's) gave."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.curate.chain import Chain, Funnel
from tasks.curate.config import CurateConfig
from tasks.curate.filters import Doc, FineWebQualityFilter, GopherRepetitionFilter
from tasks.curate.normalize import normalize
from tasks.curate.text import Text
from tasks.doc_sites import SITES, site_warc

PINS = Path(__file__).parent / "pins"


def test_a_real_page_comes_out_as_trafilatura_1_gave_it():
    """Doxygen's graph legend page (doxygen-doc), extracted by trafilatura 2.3.1 and by 1.11.0
    with FineWeb's settings: 2.3.1 returns whitespace-only lines and bare "- " bullet lines, which
    make the Gopher line rules call the page repetitive. Normalized, it is 1.11.0's text exactly."""
    new = (PINS / "doxygen-graph-legend.trafilatura-2.3.1.txt").read_text()
    old = (PINS / "doxygen-graph-legend.trafilatura-1.11.0.txt").read_text()
    counts = Counter()
    assert normalize(new, counts=counts) == old
    assert counts["blank_lines_dropped"] == sum(1 for line in new.split("\n") if not line.strip()) == 8
    assert normalize(old) == old  # 1.x output is already in shape

    config = CurateConfig()
    repetition, fineweb = GopherRepetitionFilter(config.gopher_repetition), FineWebQualityFilter(config.fineweb_quality)
    assert repetition(Doc("p", "u", Text(new.strip()))) == "dup_line_frac"  # the blank lines repeat
    assert fineweb(Doc("p", "u", Text(new.strip()))) == "line_punct_ratio"  # "... meaning: " ends in a space
    assert repetition(Doc("p", "u", Text(normalize(new)))) is None
    assert fineweb(Doc("p", "u", Text(normalize(new)))) is None


def test_bullets_are_joined_only_when_asked():
    text = "Options:\n- \n  --help\n-\ndisplay help\n- - x\n-\n- item\n•"
    assert normalize(text) == "Options:\n-\n--help\n-\ndisplay help\n- - x\n-\n- item\n•"
    counts = Counter()
    assert (
        normalize(text, join_bullets=True, counts=counts) == "Options:\n- --help\n- display help\n- - x\n-\n- item\n•"
    )
    assert counts["bullets_joined"] == 2


LINES = st.lists(
    st.sampled_from(["", " ", "\t", "  word", "a  b\tc ", "-", "- ", "•", "* x", "end.", "\u00a0x\u2003y", "\r"]),
    max_size=12,
)


@given(LINES.map("\n".join) | st.text(max_size=80), st.booleans())
@settings(max_examples=400, deadline=None)
def test_normalized_text_has_the_shape_and_keeps_every_character(text, join):
    out = normalize(text, join_bullets=join)
    assert normalize(out, join_bullets=join) == out  # idempotent: a second pass changes nothing
    assert "".join(out.split()) == "".join(text.split())  # only whitespace changes
    for line in out.split("\n") if out else []:
        assert line and line == line.strip() and "  " not in line and "\t" not in line


def test_the_chain_normalizes_trafilatura_text_with_counters(tmp_path):
    """With the filters judging trafilatura's own text, normalize is a step of its own right
    after extract (with FineWeb's judge it is part of kept_text: tests/test_curate_judge.py)."""
    site = next(s for s in SITES if s.name == "doxygen")
    warc, _ = site_warc(site, tmp_path, limit=8)
    funnels = {}
    for name, config in {
        "trafilatura": CurateConfig(extract={"judge": "extractor"}),
        "resiliparse": CurateConfig(extract={"extractor": "resiliparse"}),
        "resiliparse+normalize": CurateConfig(extract={"extractor": "resiliparse"}, normalize={"enabled": True}),
    }.items():
        funnel = Funnel(0)
        outcomes = list(Chain(config).run(str(warc), funnel))
        funnels[name] = funnel.to_dict()
        for o in outcomes:
            if o.text and name != "resiliparse":
                assert o.text == normalize(o.text)
    steps = funnels["trafilatura"]["steps"]
    assert list(steps)[:4] == ["read", "url", "extract", "normalize"]
    assert steps["normalize"]["docs_in"] == steps["normalize"]["docs_out"] == steps["extract"]["docs_out"]
    assert steps["normalize"]["chars_out"] < steps["normalize"]["chars_in"]
    assert funnels["trafilatura"]["counts"]["normalize_docs_changed"] > 0
    assert "normalize" not in funnels["resiliparse"]["steps"]
    assert funnels["resiliparse+normalize"]["steps"]["normalize"]["docs_in"] > 0
