"""Every filter rule at the edge of its threshold: at the threshold it keeps, just past it drops
(FineWeb's rules are strict `>`/`<`), plus the tokenizer and sentence splitter they share."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.curate.config import (
    C4Config,
    CurateConfig,
    CustomFilter,
    FineWebQualityConfig,
    GopherQualityConfig,
    GopherRepetitionConfig,
)
from tasks.curate.filters import (
    C4QualityFilter,
    CustomFilterStep,
    Doc,
    FineWebQualityFilter,
    GopherQualityFilter,
    GopherRepetitionFilter,
    duplicated_ngram_chars,
    top_ngram_chars,
)
from tasks.curate.text import Text, count_sentences, words
from tasks.curate.tokenizer import SPECIAL, piece_tokens, split_piece

EPS = 1e-9
SENTENCE = "The cat and the dog sat on the mat with a hat that they have. "


def doc(text: str) -> Doc:
    return Doc(id="x", url="http://example.com/", view=Text(text))


PROSE = [
    "The old lighthouse keeper climbed the spiral stairs every evening at dusk.",
    "He carried a brass lantern and a notebook filled with weather observations.",
    "Ships passing the rocky headland relied on his steady signal through the storms.",
    "In winter the wind howled against the glass and rattled the iron railings.",
    "Local children often visited him to hear stories about shipwrecks and sea monsters.",
    "One spring morning a small boat washed ashore with no crew aboard.",
    "The keeper searched the beach and found footprints leading toward the village.",
    "Nobody in town admitted to knowing anything about the mysterious vessel.",
    "Weeks later a letter arrived from a distant port thanking him for his help.",
    "It was signed by a fisherman whose family had been rescued years before.",
    "That evening he lit the lamp with a smile and watched the horizon glow.",
    "The light still turns tonight, guiding travelers home across the dark water.",
]


def prose(n_sentences: int = 12) -> str:
    """Varied English prose, one sentence per line, that passes every filter."""
    return "\n".join(PROSE[:n_sentences])


# -- tokenizer ---------------------------------------------------------------------------------


def test_words_follow_spacy_on_numbers_contractions_and_punctuation():
    assert words("I don't know, it's 3.14 and 1,000 O'Brien!") == [
        "I",
        "do",
        "n't",
        "know",
        ",",
        "it",
        "'s",
        "3.14",
        "and",
        "1,000",
        "O'Brien",
        "!",
    ]
    # the cases where a looser regex disagreed with datatrove's spaCy tokens
    assert words("See http://amzn.to/2iJFhRj or a.b@c.org.") == [
        "See",
        "http://amzn.to/2iJFhRj",
        "or",
        "a.b@c.org",
        ".",
    ]
    assert words("The U.S. Gov. and John A. Smith, e.g. Inc. wait...") == [
        "The",
        "U.S.",
        "Gov.",
        "and",
        "John",
        "A.",
        "Smith",
        ",",
        "e.g.",
        "Inc.",
        "wait",
        "...",
    ]
    assert words("11/19/19 3-4") == ["11/19/19", "3", "-", "4"]
    assert words("@Indiapost_News पानी नहीं") == ["@Indiapost_News", "पानी", "नहीं"]  # vowel signs stay in the word


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=300))
@settings(max_examples=300, deadline=None)
def test_words_cover_every_non_space_character_in_order(text):
    tokens = words(text)
    assert "".join(tokens) == "".join(text.split())
    assert all(t and not any(ch.isspace() for ch in t) for t in tokens)


def test_words_follow_spacy_on_documentation():
    """Options, paths, dotted names, man-page references and bare contractions: where a
    punctuation-splitting tokenizer undercounts words with a letter on documentation pages
    (expected tokens are spaCy blank("en")'s)."""
    assert words("git commit --no-verify -m SHA-1 /usr/bin java.lang.String git-commit(1)") == [
        "git",
        "commit",
        "--no",
        "-",
        "verify",
        "-m",
        "SHA-1",
        "/usr",
        "/",
        "bin",
        "java.lang",
        ".",
        "String",
        "git",
        "-",
        "commit(1",
        ")",
    ]
    assert words("It cannot be, dont worry: f(x,y) and/or <stdio.h> etc. (e.g., x=1):") == [
        "It",
        "can",
        "not",
        "be",
        ",",
        "do",
        "nt",
        "worry",
        ":",
        "f(x",
        ",",
        "y",
        ")",
        "and/or",
        "<",
        "stdio.h",
        ">",
        "etc",
        ".",
        "(",
        "e.g.",
        ",",
        "x=1",
        "):",
    ]
    assert words("10km $5 which'll they're ``quoted''. |sub|.") == [
        "10",
        "km",
        "$",
        "5",
        "which'll",
        "they",
        "'re",
        "`",
        "`",
        "quoted",
        "''",
        ".",
        "|sub|",
        ".",
    ]


PIECES = [
    "don",
    "N",
    "n",
    "'t",
    "’T",
    "'s",
    "’re",
    "'ll",
    "'d",
    "it",
    "I",
    "U.S.",
    "e.g.",
    "Inc.",
    "etc.",
    "vs.",
    "a.",
    "3.14",
    "1,000",
    "@x",
    "a@b.co",
    "http://x.y/don't",
    "www.z.org",
    "...",
    "-",
    "--",
    "_",
    ",",
    "(",
    ")",
    ":",
    "/",
    "=",
    "§",
    "é",
    "\u0301",
    "пи",
    "あ",
    "can",
    "not",
    "id",
    ".",
    "!",
    ";",
    "?",
    "B",
    "ʰ",
    "ª",
    "Mr",
    "vs",
    "co",
    "and",
]


@given(st.lists(st.sampled_from(PIECES), max_size=12).map("".join) | st.text(max_size=30))
@settings(max_examples=500, deadline=None)
def test_cached_pieces_are_cut_as_the_rules_cut_them(text):
    for piece in text.split():
        assert piece_tokens(piece) == split_piece(piece)
        assert "".join(piece_tokens(piece)) == piece


@given(st.text(alphabet=st.characters(categories=("Lu", "Ll", "Lo", "Lm")), min_size=1, max_size=20))
@settings(max_examples=300, deadline=None)
def test_plain_words_skip_the_rules_because_no_rule_cuts_them(piece):
    if piece.isalpha() and piece not in SPECIAL:
        assert split_piece(piece) == (piece,)


@given(st.text(alphabet="a \n", max_size=40))
@settings(max_examples=300, deadline=None)
def test_newline_runs_split_as_the_regex_does(text):
    import re

    assert Text(text).newline_runs == re.split(r"\n+", text)


def test_count_sentences():
    assert count_sentences("One. Two! Three? Four") == 4
    assert count_sentences("Pi is 3.14 and e.g. this is one sentence.") == 1
    assert count_sentences("   ") == 0
    assert count_sentences("He was a physician.Police arrived.") == 2


@given(st.lists(st.sampled_from(["a", "b", "cc", "d"]), max_size=60), st.integers(1, 6))
@settings(max_examples=200, deadline=None)
def test_ngram_counts_match_the_plain_definitions(tokens, n):
    view = Text(" ".join(tokens))
    seen, chars, i = set(), 0, 0
    while i < len(tokens) - n + 1:
        gram = tuple(tokens[i : i + n])
        if gram in seen:
            chars += sum(map(len, gram))
            i += n
        else:
            seen.add(gram)
            i += 1
    assert duplicated_ngram_chars(view, n) == chars
    grams = [" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    if grams:
        from collections import Counter

        gram, count = Counter(grams).most_common(1)[0]
        assert top_ngram_chars(view, n) == len(gram) * count


# -- Gopher repetition -------------------------------------------------------------------------


def edge(filter_cls, config_cls, field: str, text: str, ratio: float, reason: str, **extra):
    """Threshold == measured ratio keeps; a hair below drops with `reason`."""
    keep = filter_cls(config_cls(**{field: ratio, **extra}))
    drop = filter_cls(config_cls(**{field: ratio - EPS, **extra}))
    assert keep(doc(text)) != reason
    assert drop(doc(text)) == reason


def test_gopher_repetition_paragraph_and_line_edges():
    para = "alpha beta gamma delta\n\n"
    text = para * 3 + "epsilon zeta eta theta iota\n\nkappa lambda mu nu"
    paragraphs = Text(text).paragraphs
    edge(GopherRepetitionFilter, GopherRepetitionConfig, "dup_para_frac", text, 2 / len(paragraphs), "dup_para_frac")
    relaxed = dict(dup_para_frac=1.0)
    chars = 2 * len("alpha beta gamma delta")
    edge(
        GopherRepetitionFilter,
        GopherRepetitionConfig,
        "dup_para_char_frac",
        text,
        chars / len(text),
        "dup_para_char_frac",
        **relaxed,
    )
    lines_text = "one two three\nfour five six\none two three\nseven eight nine ten"
    relaxed = dict(dup_para_frac=1.0, dup_para_char_frac=1.0)
    edge(GopherRepetitionFilter, GopherRepetitionConfig, "dup_line_frac", lines_text, 1 / 4, "dup_line_frac", **relaxed)
    relaxed["dup_line_frac"] = 1.0
    edge(
        GopherRepetitionFilter,
        GopherRepetitionConfig,
        "dup_line_char_frac",
        lines_text,
        len("one two three") / len(lines_text),
        "dup_line_char_frac",
        **relaxed,
    )


def test_gopher_repetition_ngram_edges():
    text = " ".join(["red fox"] * 5 + ["jumps over lazy dogs while birds sing songs in tall green trees today"])
    off = dict(dup_para_frac=1.0, dup_para_char_frac=1.0, dup_line_frac=1.0, dup_line_char_frac=1.0)
    ratio = top_ngram_chars(Text(text), 2) / len(text)
    keep = GopherRepetitionFilter(GopherRepetitionConfig(**off, top_n_grams={2: ratio}, dup_n_grams={}))
    drop = GopherRepetitionFilter(GopherRepetitionConfig(**off, top_n_grams={2: ratio - EPS}, dup_n_grams={}))
    assert keep(doc(text)) is None and drop(doc(text)) == "top_2_gram"
    ratio = duplicated_ngram_chars(Text(text), 5) / len(text)
    assert ratio > 0
    keep = GopherRepetitionFilter(GopherRepetitionConfig(**off, top_n_grams={}, dup_n_grams={5: ratio}))
    drop = GopherRepetitionFilter(GopherRepetitionConfig(**off, top_n_grams={}, dup_n_grams={5: ratio - EPS}))
    assert keep(doc(text)) is None and drop(doc(text)) == "duplicated_5_n_grams"


def test_gopher_repetition_defaults_keep_prose_and_drop_spam():
    f = GopherRepetitionFilter(GopherRepetitionConfig())
    assert f(doc(prose())) is None
    assert f(doc("buy now\n" * 10 + prose(3))) == "dup_line_frac"
    assert f(doc("")) == "empty"


# -- Gopher quality ----------------------------------------------------------------------------


def test_gopher_quality_word_count_edges():
    f = GopherQualityFilter(GopherQualityConfig())
    base = "the cat and the dog have that with it "
    fifty = " ".join((base * 10).split()[:50])
    assert f(doc(fifty + " .")) is None  # 50 words (the "." is not a word)
    assert f(doc(" ".join(fifty.split()[:49]) + " .")) == "gopher_short_doc"
    long_cfg = GopherQualityConfig(max_doc_words=50)
    assert GopherQualityFilter(long_cfg)(doc(fifty)) is None
    assert GopherQualityFilter(long_cfg)(doc(fifty + " cat")) == "gopher_long_doc"


def test_gopher_quality_ratio_edges():
    text = prose(8)
    view = Text(text)
    mean = sum(map(len, view.non_symbol_words)) / len(view.non_symbol_words)
    edge(GopherQualityFilter, GopherQualityConfig, "max_avg_word_length", text, mean, "gopher_above_avg_threshold")
    # min_avg: at the mean keeps, a hair above drops
    assert GopherQualityFilter(GopherQualityConfig(min_avg_word_length=mean))(doc(text)) is None
    assert (
        GopherQualityFilter(GopherQualityConfig(min_avg_word_length=mean + EPS))(doc(text))
        == "gopher_below_avg_threshold"
    )
    hashes = text + " #a #b #c"
    n = len(Text(hashes).words)
    edge(GopherQualityFilter, GopherQualityConfig, "max_symbol_word_ratio", hashes, 3 / n, "gopher_too_many_hashes")
    dots = text + " wait... and… more..."
    n = len(Text(dots).words)
    edge(GopherQualityFilter, GopherQualityConfig, "max_symbol_word_ratio", dots, 3 / n, "gopher_too_many_ellipsis")
    bullets = "\n".join(["- " + line for line in text.splitlines()[:6]] + text.splitlines()[6:])
    edge(GopherQualityFilter, GopherQualityConfig, "max_bullet_lines_ratio", bullets, 6 / 8, "gopher_too_many_bullets")
    ellipses = "\n".join([line + "..." for line in text.splitlines()[:2]] + text.splitlines()[2:])
    n_words = len(Text(ellipses).words)
    loose = dict(max_symbol_word_ratio=1.0)
    edge(
        GopherQualityFilter,
        GopherQualityConfig,
        "max_ellipsis_lines_ratio",
        ellipses,
        2 / 8,
        "gopher_too_many_end_ellipsis",
        **loose,
    )
    assert n_words


def test_gopher_quality_alpha_and_stop_words():
    text = prose(8) + " 1 2 3 4 5 6 7 8 9 10"
    view = Text(text)
    alpha = sum(1 for w in view.words if any(c.isalpha() for c in w)) / len(view.words)
    assert GopherQualityFilter(GopherQualityConfig(min_alpha_words_ratio=alpha))(doc(text)) is None
    assert (
        GopherQualityFilter(GopherQualityConfig(min_alpha_words_ratio=alpha + EPS))(doc(text))
        == "gopher_below_alpha_threshold"
    )
    no_stops = " ".join(["apples oranges bananas grapes cherries"] * 12) + " the the the"
    distinct = GopherQualityFilter(GopherQualityConfig())
    occurrences = GopherQualityFilter(GopherQualityConfig(stop_words_distinct=False))
    assert distinct(doc(no_stops)) == "gopher_enough_stop_words"  # one distinct stop word
    assert occurrences(doc(no_stops)) is None  # three occurrences (FineWeb-era counting)
    assert distinct(doc(no_stops + " and")) is None


# -- C4 ------------------------------------------------------------------------------------------


def test_c4_sentence_edge_and_rewrite():
    f = C4QualityFilter(C4Config())
    five = "\n".join(["One two three four. Five six seven eight."] * 2 + ["Nine ten eleven twelve."])
    d = doc(five + "\nok\nEnable javascript to see this page please\nRead our privacy policy now please")
    assert f(d) is None
    assert d.text == five  # short, javascript and policy lines dropped
    four = "\n".join(["One two three four. Five six seven eight."] * 2)
    assert f(doc(four)) == "too_few_sentences"
    assert C4QualityFilter(C4Config(min_num_sentences=4))(doc(four)) is None


def test_c4_document_rules_and_citations():
    f = C4QualityFilter(C4Config())
    body = "\n".join(["This is a sentence here. And another one here."] * 3)
    assert f(doc(body + "\nLorem ipsum dolor sit amet.")) == "lorem_ipsum"
    assert f(doc(body + "\nfunction f() { return 1; }")) == "curly_bracket"
    d = doc(body + "\nThe river[1] is long[citation needed] and wide[edit].")
    assert f(d) is None and "The river is long and wide." in d.text
    word = "x" * 1001
    d = doc(body + f"\nA line with {word} inside it.")
    assert f(d) is None and word not in d.text
    assert C4QualityFilter(C4Config(max_word_length=1001))(doc(body + f"\nA line with {word} inside.")) is None


def test_c4_min_words_per_line_edge():
    f = C4QualityFilter(C4Config(min_num_sentences=1))
    d = doc("Three words here.\nTwo words.")
    assert f(d) is None and d.text == "Three words here."


# -- FineWeb quality -------------------------------------------------------------------------------


def test_fineweb_line_punct_edge():
    lines = [f"line number {i} has some words in it" for i in range(25)]
    lines[0] += "."
    lines[1] += "!"
    lines[2] += "?"
    text = "\n".join(lines)
    off = dict(short_line_thr=1.0, char_duplicates_ratio=1.0, new_line_ratio=1.0)
    ratio = 3 / 25
    assert FineWebQualityFilter(FineWebQualityConfig(line_punct_thr=ratio, **off))(doc(text)) is None
    assert (
        FineWebQualityFilter(FineWebQualityConfig(line_punct_thr=ratio + EPS, **off))(doc(text)) == "line_punct_ratio"
    )
    # quote marks are not sentence terminals (datatrove HEAD); CJK full stops are
    assert FineWebQualityFilter(FineWebQualityConfig(**off))(doc('He said "yes"\n' * 2)) == "line_punct_ratio"
    assert FineWebQualityFilter(FineWebQualityConfig(**off))(doc("これは文です。\nもう一つ。")) is None


def test_fineweb_short_lines_dup_chars_and_list_ratio_edges():
    long = [f"This is a long enough line number {i} of prose." for i in range(3)]
    short = ["Short one.", "Short two.", "Short six."]
    text = "\n".join(long + short)
    off = dict(char_duplicates_ratio=1.0, new_line_ratio=1.0)
    edge(FineWebQualityFilter, FineWebQualityConfig, "short_line_thr", text, 3 / 6, "short_line_ratio", **off)
    dup = "\n".join(long + [long[0]])
    ratio = len(long[0]) / (len(dup) - dup.count("\n"))
    edge(
        FineWebQualityFilter,
        FineWebQualityConfig,
        "char_duplicates_ratio",
        dup,
        ratio,
        "char_dup_ratio",
        short_line_thr=1.0,
        new_line_ratio=1.0,
    )
    ratio = text.count("\n") / len(Text(text).words)
    edge(
        FineWebQualityFilter,
        FineWebQualityConfig,
        "new_line_ratio",
        text,
        ratio,
        "list_ratio",
        short_line_thr=1.0,
        char_duplicates_ratio=1.0,
    )


def test_fineweb_defaults_and_blank_lines_ignored():
    f = FineWebQualityFilter(FineWebQualityConfig())
    assert f(doc(prose(10).replace("\n", "\n\n\n"))) is None
    assert f(doc("\n\n  \n")) == "empty"


# -- custom filters ---------------------------------------------------------------------------------


class MinWords:
    def __init__(self, n: int):
        self.n = n

    def __call__(self, d: Doc) -> str | None:
        return None if len(d.view.words) >= self.n else f"under_{self.n}_words"


def mentions(d: Doc, word: str = "casino") -> bool:
    return word not in d.text.lower()


def test_custom_filters_by_import_path():
    cls = CustomFilterStep(CustomFilter(path="tests.test_curate_filters:MinWords", options={"n": 5}))
    assert cls(doc("one two three four five")) is None
    assert cls(doc("one two three four")) == "MinWords:under_5_words"
    fn = CustomFilterStep(CustomFilter(path="tests.test_curate_filters.mentions"))
    assert fn(doc("Visit our CASINO")) == "mentions"
    assert fn(doc("A quiet library")) is None
    with pytest.raises(ModuleNotFoundError):
        CustomFilterStep(CustomFilter(path="no_such_module:thing"))


def test_config_defaults_are_finewebs():
    c = CurateConfig()
    assert c.language.languages == ["en"] and c.language.threshold == 0.65
    assert c.fineweb_quality.char_duplicates_ratio == 0.01
    assert (c.fineweb_quality.line_punct_thr, c.fineweb_quality.short_line_thr, c.fineweb_quality.new_line_ratio) == (
        0.12,
        0.67,
        0.3,
    )
    assert c.gopher_repetition.dup_n_grams[10] == 0.10 and c.gopher_repetition.top_n_grams[2] == 0.20
    assert c.c4.filter_no_terminal_punct is False and c.extract.timeout_s >= 1.0


@given(
    st.lists(
        st.sampled_from(
            PROSE
            + [
                "ok",
                "Enable javascript now please",
                "Cite me[1] here and[edit] there.",
                "Our privacy policy applies here",
                "x" * 1001 + " long",
            ]
        ),
        min_size=1,
        max_size=20,
    )
)
@settings(max_examples=100, deadline=None)
def test_c4_carries_an_exact_word_count_to_the_next_filter(lines):
    d = doc("\n".join(lines))
    d.view.words  # noqa: B018 (computed before C4, as after the Gopher filters)
    if C4QualityFilter(C4Config(min_num_sentences=0))(d) is None:
        assert d.view.word_count == len(words(d.text))
