"""Word tokens as spaCy's `blank("en")` cuts them, which is what datatrove's filters count.

The Gopher and FineWeb thresholds count words: the share with a letter, the mean length, the
repeated n-grams, the newlines per word. On prose any sensible tokenizer gives the same counts,
but on documentation (options like `--no-verify`, paths, `java.lang.String`, `git-commit(1)`)
they differ by 10% and more, enough to move a page across the alphabetic-ratio threshold. So
this follows spaCy's algorithm, written from its documented description:

1. split the text on whitespace;
2. for each piece: unless it is a special case, peel prefixes off the front and suffixes off the
   back (one at a time, checking for a special case after each), then keep what is left whole
   if it is a URL or a special case, else cut it at the infixes;
3. glue back punctuation tokens that together make an emoticon spaCy knows (`):`, `:-)`).

The rule sets (which characters are prefixes, suffixes and infixes; which abbreviations keep
their dot) are spaCy's English ones, checked token by token against spaCy on the benchmark's
documentation corpus. A piece's tokens depend on the piece alone, so they are cached: most
pieces of a text were seen before, and a document costs one dictionary lookup per piece.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from itertools import chain


def _char_class(predicate) -> str:
    """A regex character-class body of the Basic Multilingual Plane characters for which
    `predicate(char)` holds, as ranges (a BMP class compiles to a bitmap: one lookup a char)."""
    out, start, prev = [], None, None
    for code in range(0x10000):
        if 0xD800 <= code <= 0xDFFF:
            continue
        if predicate(chr(code)):
            if start is None:
                start = code
            prev = code
        elif start is not None:
            out.append(f"\\u{start:04x}" if start == prev else f"\\u{start:04x}-\\u{prev:04x}")
            start = None
    if start is not None:
        out.append(f"\\u{start:04x}-\\u{prev:04x}")
    return "".join(out)


# spaCy counts letters without case (CJK, Arabic, ...) as both lower and upper case.
_LOWER = _char_class(lambda c: unicodedata.category(c) in ("Ll", "Lo"))
_UPPER = _char_class(lambda c: unicodedata.category(c) in ("Lu", "Lo"))
ALPHA = _char_class(lambda c: c.isalpha())
_SYMBOLS = _char_class(lambda c: unicodedata.category(c) == "So")  # dingbats, arrows, emoji
_CURRENCY = r"\$|£|€|¥|฿|US\$|C\$|A\$|[\u20a0-\u20bf]|₽|﷼"
# Quote-like marks, the comma among them: they come off either end of a piece.
_QUOTES = "'\"”“`‘´’‚,„»«「」『』（）〔〕【】《》〈〉⟦⟧"
_PUNCT = "…,:;!?¿؟¡()[]{}<>_#*&。？！，、；：～·।،۔؛٪"
_HYPHENS = "-|–|—|--|---|——|~"
_UNITS = (
    "km|km²|km³|m|m²|m³|dm|dm²|dm³|cm|cm²|cm³|mm|mm²|mm³|ha|µm|nm|yd|in|ft|kg|g|mg|µg|t|lb|oz|m/s|km/h|"
    "kmh|mph|hPa|Pa|mbar|mb|MB|kb|KB|gb|GB|tb|TB|T|G|M|K|%|км|км²|км³|м|м²|м³|дм|дм²|дм³|см|см²|см³|"
    "мм|мм²|мм³|нм|кг|г|мг|м/с|км/ч|кПа|Па|мбар|Кб|КБ|кб|Мб|МБ|мб|Гб|ГБ|гб|Тб|ТБ|тб"
)
_CHARS = re.escape(_PUNCT + _QUOTES)

_PREFIX = re.compile(rf"^(?:§|%|=|—|–|\+(?![0-9])|……|[{_CHARS}]|\.\.+|…|{_CURRENCY}|[{_SYMBOLS}])")
_SUFFIX = re.compile(
    rf"(?:……|[{_CHARS}]|\.\.+|…|[{_SYMBOLS}]|['’][sS]|—|–"
    rf"|(?<=[0-9])\+|(?<=°[FfCcKk])\.|(?<=[0-9])(?:{_CURRENCY})|(?<=[0-9])(?:{_UNITS})"
    rf"|(?<=[0-9{_LOWER}%²\-+|():?{_CHARS}])\.|(?<=[{_UPPER}][{_UPPER}])\.)$"
)
_INFIX = re.compile(
    rf"\.\.+|…|[{_SYMBOLS}]|(?<=[0-9])[+\-*^](?=[0-9-])"
    rf"|(?<=[{_LOWER}{re.escape(_QUOTES)}])\.(?=[{_UPPER}{re.escape(_QUOTES)}])"
    rf"|(?<=[{ALPHA}]),(?=[{ALPHA}])|(?<=[{ALPHA}0-9])(?:{_HYPHENS})(?=[{ALPHA}])"
    rf"|(?<=[{ALPHA}0-9])[:<>=/](?=[{ALPHA}])"
)
# A host with a lowercase top-level domain, or anything with a scheme; an optional path.
_URL = re.compile(
    r"^(?:[\w+.\-]{2,}://)?(?:\S+(?::\S*)?@)?"
    rf"(?:(?:[A-Za-z0-9\u00a1-\uffff][A-Za-z0-9\u00a1-\uffff_-]{{0,62}})?[A-Za-z0-9\u00a1-\uffff]\.)+[{_LOWER}]{{2,63}}"
    r"(?::\d{2,5})?(?:[/?#]\S*)?$"
)

# Pieces spaCy keeps whole: abbreviations that keep their dot, emoticons, and a few more.
_ABBREVIATIONS = (
    "Mr. Mrs. Ms. Dr. Prof. Gov. Sen. Rep. Gen. Rev. Corp. Inc. Ltd. Co. co. Jr. St. vs. v. Jan. Feb. "
    "Mar. Apr. Jun. Jul. Aug. Sep. Sept. Oct. Nov. Dec. Mt. Bros. Messrs. e.g. i.e. e.g i.e a.m. p.m. "
    "Ph.D. Calif. Mass. Wash. Va. Ala. Ariz. Ark. Colo. Conn. Del. Fla. Ga. Ill. Ind. Kan. Ky. La. Md. "
    "Mich. Minn. Miss. Mo. Mont. Neb. Nev. Okla. Ore. Pa. Tenn. Wis. o.O O.o o'clock ma'am ol' 'nuff "
    "'cause 'Cause -- '' 's 'S ’s ’S 'd ’d E.g. I.e. and/or w/o w/ (= (; =/"
)
_EMOTICONS = (
    ":) ): :( (: :-) =) :P :D ;) <3 :/ :| :] [: =( :o :O xD XD :-( ;-) :') :'( (-: )-: =D <333 :> :-/ "
    ":-P :p :-p ^_^ -_- -__- =[ =] [= ]= :-| :-] V_V o_o O_O 0_0 o_O O_o >:( >:o :3 :-3 :-D :)) :(( "
    ":-* :* ;D :x :X :-x ^__^ (^_^) (*_*) (>_<) (._.) (-_-) ._. =3 =| :-o :-O 8) 8-) (ಠ_ಠ) ಠ_ಠ ¯\\(ツ)/¯"
)
# Contractions written without their apostrophe, which spaCy still splits (dont -> do|nt).
_BARE_CONTRACTIONS = (
    "i:d,m,ve you:d,re,ve,ll he:d,s she:s it:d,ll we:d,ve they:d,re,ll that:s,ll there:s,d,ll "
    "what:s,re,ll,ve,d who:s,d,ll,ve where:s,d,ll how:s,d why:s,d when:s would:ve could:ve should:ve "
    "might:ve must:ve is:nt did:nt does:nt do:nt ca:nt wo:nt ai:nt have:nt has:nt had:nt would:nt "
    "could:nt should:nt must:nt are:nt were:nt was:nt might:nt need:nt ought:nt can:not gon:na got:ta y:all"
)
_SPLIT_WORDS = {
    head + tail: (head, tail)
    for entry in _BARE_CONTRACTIONS.split()
    for head, tails in [entry.split(":")]
    for tail in tails.split(",")
}
SPECIAL: dict[str, tuple[str, ...]] = {
    **{w: (w,) for w in (_ABBREVIATIONS + " " + _EMOTICONS).split()},
    **{c + ".": (c + ".",) for c in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"},
    **{
        k: v
        for w, parts in _SPLIT_WORDS.items()
        for k, v in ((w, parts), (w.capitalize(), (parts[0].capitalize(), parts[1])))
    },
}
# Special cases with punctuation in them are also found across tokens (`)` + `:` -> `):`).
_GLUED = frozenset(k for k, v in SPECIAL.items() if len(v) == 1 and not k.isalnum())
_GLUE_STARTS = frozenset(k[:i] for k in _GLUED for i in range(1, len(k)))  # a glued case starts with one
# English contractions: one of the words above, then n't or an apostrophe ending (do|n't,
# they|'re); other words keep theirs (which'll), except 's, which comes off any word as a suffix.
_CONTRACTION = re.compile(r"^([^\W\d_]+?)(n['’]t|['’](?:s|re|ve|ll|d|m))$", re.IGNORECASE)
_CONTRACTING = frozenset(entry.split(":")[0] for entry in _BARE_CONTRACTIONS.split()) | {"let", "sha"}


def _special(piece: str) -> tuple[str, ...] | None:
    found = SPECIAL.get(piece)
    if found is None and ("'" in piece or "’" in piece):
        m = _CONTRACTION.match(piece)
        if m and m.group(1).lower() in _CONTRACTING:
            found = (m.group(1), m.group(2))
    return found


def _infixes(piece: str) -> list[str]:
    out, offset = [], 0
    for m in _INFIX.finditer(piece):
        if m.start() == 0 and offset == 0:
            continue  # an infix at the very start does not split
        if m.start() > offset:
            out.append(piece[offset : m.start()])
        if m.end() > m.start():
            out.append(m.group())
        offset = m.end()
    if piece[offset:]:
        out.append(piece[offset:])
    return out


def _glue_specials(tokens: list[str]) -> list[str]:
    """Adjacent tokens that spell a special case become one (spaCy's last pass)."""
    i, out = 0, []
    while i < len(tokens):
        for n in (3, 2):
            if i + n <= len(tokens) and "".join(tokens[i : i + n]) in _GLUED:
                out.append("".join(tokens[i : i + n]))
                i += n
                break
        else:
            out.append(tokens[i])
            i += 1
    return out


_CLOSING = frozenset(",;:!?)")


def _affix_len(regex: re.Pattern, text: str, at_end: bool) -> int:
    m = regex.search(text) if text else None
    return 0 if m is None else (len(text) - m.start() if at_end else m.end())


CACHED_PIECE_CHARS = 64  # longer pieces (hostile input: megabytes without a space) are not cached


def piece_tokens(piece: str) -> tuple[str, ...]:
    """The tokens of one whitespace-free piece of text: cached when short, so the cache holds
    words, never the long runs a hostile page is made of (131,072 of those would be gigabytes)."""
    return _cached_piece_tokens(piece) if len(piece) <= CACHED_PIECE_CHARS else _piece_tokens(piece)


@lru_cache(maxsize=1 << 17)
def _cached_piece_tokens(piece: str) -> tuple[str, ...]:
    return _piece_tokens(piece)


def clear_cache() -> None:
    """Forget every cached piece (benchmarks start each round cold, as a fresh process does)."""
    _cached_piece_tokens.cache_clear()


def _piece_tokens(piece: str) -> tuple[str, ...]:
    if piece.isalpha() and piece not in SPECIAL:  # most pieces: a plain word, which no rule cuts
        return (piece,)
    # The next most common: a plain word and one closing mark, which is a suffix (a full stop
    # only after a lowercase ASCII letter: "fooB." keeps its dot).
    last, word = piece[-1], piece[:-1]
    if (
        (last in _CLOSING or (last == "." and "a" <= piece[-2:-1] <= "z"))
        and word.isalpha()
        and piece not in SPECIAL
        and word not in SPECIAL
    ):
        return (word, last)
    return split_piece(piece)


def split_piece(piece: str) -> tuple[str, ...]:
    """The rules: special case, prefixes and suffixes, then a URL, a special case or infixes."""
    special = _special(piece)
    if special is not None:
        return special
    prefixes: list[str] = []
    suffixes: list[str] = []
    rest, size = piece, -1
    # Peel one prefix and one suffix a round, until nothing comes off or a special case is left.
    while rest and len(rest) != size and _special(rest) is None:
        size = len(rest)
        pre = _affix_len(_PREFIX, rest, at_end=False)
        if pre and _special(rest[pre:]) is not None:
            prefixes.append(rest[:pre])
            rest = rest[pre:]
            break
        suf = _affix_len(_SUFFIX, rest[pre:], at_end=True)
        if suf and len(rest) > suf and _special(rest[:-suf]) is not None:
            suffixes.append(rest[-suf:])
            rest = rest[:-suf]
            break
        if pre and suf and pre + suf <= len(rest):
            prefixes.append(rest[:pre])
            suffixes.append(rest[len(rest) - suf :])
            rest = rest[pre : len(rest) - suf]
        elif pre:
            prefixes.append(rest[:pre])
            rest = rest[pre:]
        elif suf:
            suffixes.append(rest[len(rest) - suf :])
            rest = rest[: len(rest) - suf]
    middle: list[str] = []
    if rest:
        special = _special(rest)
        if special is not None:
            middle = list(special)
        elif _URL.match(rest):
            middle = [rest]
        else:
            middle = _infixes(rest)
    tokens = prefixes + middle + suffixes[::-1]
    if len(tokens) > 1 and not _GLUE_STARTS.isdisjoint(tokens[:-1]):
        tokens = _glue_specials(tokens)
    return tuple(tokens)


def words(text: str) -> list[str]:
    """The text's tokens (whitespace left out), in order."""
    return list(chain.from_iterable(map(piece_tokens, text.split())))
