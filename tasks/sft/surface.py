"""Surface variation of user turns: how people actually type a question.

A generated question is clean ("What is the birth year of Rudolf Abend?"); users write "hi!
what is the birth yaer of Rudolf Abend ??  thanks in advance." A small model trained only on
clean text treats a greeting or a typo as a new kind of question. `vary` adds, to a share of
rows, some of:

- a greeting before the question, and/or a context sentence before or after it;
- typos: a swapped, dropped or doubled letter in a few common lowercase words;
- a casing change of the whole turn: lower, UPPER or Title;
- extra spaces between words, and doubled or missing end punctuation.

What the assistant must copy never changes: numbers (digits and number words), quantity words
("half", "each", "more") and the `protected` spans (the entity name a search copies, whatever
the assistant's tool calls or reply repeat from the question) survive every variation
verbatim (tests/test_sft_surface.py checks it with hypothesis). Everything is decided by a
`random.Random` the caller seeds with the row's id, so a row varies the same way every run.

Held-out rows (meta `heldout: true`) draw greetings and context sentences from pools no
training row ever uses (`HELDOUT`), so the evaluation also asks in framings never seen.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable
from dataclasses import dataclass

# -- what surrounds the question ------------------------------------------------------------


@dataclass(frozen=True)
class Frames:
    """Greetings and context sentences: parts composed into whole phrases."""

    greetings: tuple[str, ...]
    greeting_marks: tuple[str, ...]
    openers: tuple[str, ...]  # context sentences that go before the question
    closers: tuple[str, ...]  # and after it

    def greeting(self, rng: random.Random) -> str:
        return rng.choice(self.greetings) + rng.choice(self.greeting_marks)

    def context(self, rng: random.Random, before: bool) -> str:
        return rng.choice(self.openers if before else self.closers)


def _compose(*parts: Iterable[str]) -> tuple[str, ...]:
    """Every concatenation of one choice from each part (the grammar's product)."""
    out = [""]
    for choices in parts:
        out = [prefix + choice for prefix in out for choice in choices]
    return tuple(out)


TRAIN = Frames(
    greetings=("Hi", "Hello", "Hey", "Good morning", "Good evening", "Hi there", "Hello again"),
    greeting_marks=("!", ",", ".", ""),
    openers=_compose(("I'm ", "I am "), ("working on ", "writing ", "preparing "), ("a report.", "a school project."))
    + _compose(("Quick question", "I have a question", "Another question"), (":", ".", "!"))
    + ("I was reading about this earlier.", "My friend and I were talking about this."),
    closers=("Thanks!", "Thank you.", "Thanks in advance.", "Any help is appreciated.", "I'm just curious.")
    + _compose(("Please ", ""), ("keep it short.", "be brief.")),
)
HELDOUT = Frames(
    greetings=("Greetings", "Good afternoon", "Howdy", "Hiya", "Yo", "Hey there"),
    greeting_marks=("!", ",", " :)", "..."),
    openers=_compose(("Sorry to bother you", "Hope you're well", "Random question"), (".", "!", ","))
    + _compose(("My teacher ", "My boss ", "A colleague "), ("asked me this.", "wants me to find out.")),
    closers=("Cheers.", "Much appreciated!", "Thanks a lot :)", "Just wondering.", "No rush.", "I'd love to know."),
)


# -- what must not change -------------------------------------------------------------------

NUMBER_WORDS = frozenset(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety hundred thousand million "
    "first second third fourth fifth half halves quarter quarters third thirds twice double triple dozen once".split()
)
# Words that carry a word problem's arithmetic: a typo here changes what is asked.
QUANTITY_WORDS = frozenset(
    "each every per more less fewer left remain remains remaining total times altogether both than "
    "add adds added gives gave give take takes took buys bought sells sold loses lost".split()
)
_NUMBER = re.compile(r"\d(?:[\d,.:/]*\d)?")
_WORD = re.compile(r"[A-Za-z]+")


def protected_ranges(
    text: str, protected: Iterable[str], vocabulary: frozenset[str] = frozenset()
) -> list[tuple[int, int]]:
    """Character ranges of `text` that must come out verbatim: every occurrence of a protected
    span or of one of its words (case-insensitive, whole words), every number in digits, every
    word of `vocabulary`; ranges separated only by spaces are merged, so a multi-word name never
    gets a space inside it."""
    words = set(vocabulary)
    ranges: list[tuple[int, int]] = [m.span() for m in _NUMBER.finditer(text)]
    for span in protected:
        if not span:
            continue
        ranges += [m.span() for m in re.finditer(re.escape(span), text, flags=re.IGNORECASE)]
        words.update(w.lower() for w in _WORD.findall(span))
    ranges += [m.span() for m in _WORD.finditer(text) if m.group().lower() in words]
    merged: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if merged and (start <= merged[-1][1] or not text[merged[-1][1] : start].strip()):
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


# -- the variations, each on text that holds nothing protected -------------------------------

_TYPO_WORD = re.compile(r"\b[a-z]{4,}\b")  # common lowercase words; capitalised ones may be names


def typo(word: str, rng: random.Random) -> str:
    """One keyboard slip inside a word (its first letter kept, as people's typos mostly do)."""
    i = rng.randrange(1, len(word) - 1)
    kind = rng.choice(("swap", "drop", "double"))
    if kind == "swap" and word[i] != word[i + 1]:
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    if kind == "double":
        return word[: i + 1] + word[i] + word[i + 1 :]
    return word[:i] + word[i + 1 :]


def typos(text: str, rng: random.Random, ranges: list[tuple[int, int]], rate: float) -> str:
    """Typos in a `rate` share (at least one) of the lowercase words of 4+ letters outside `ranges`."""
    free = [m for m in _TYPO_WORD.finditer(text) if not any(s < m.end() and m.start() < e for s, e in ranges)]
    if not free:
        return text
    hit = sorted(rng.sample(free, max(1, round(rate * len(free)))), key=lambda m: m.start())
    out, at = [], 0
    for m in hit:
        out += [text[at : m.start()], typo(m.group(), rng)]
        at = m.end()
    return "".join(out) + text[at:]


def recase(text: str, how: str) -> str:
    if how == "lower":
        return text.lower()
    if how == "upper":
        return text.upper()
    return re.sub(r"(?<![\w'])[a-z]", lambda m: m.group().upper(), text)  # Title: every word capitalised


def respace(text: str, rng: random.Random, rate: float) -> str:
    return re.sub(r"(?<=\S) (?=\S)", lambda m: "  " if rng.random() < rate else " ", text)


def repunctuate(text: str, rng: random.Random) -> str:
    """The end mark doubled, tripled, spaced off or dropped."""
    stripped = text.rstrip("?.!")
    mark = text[len(stripped) :][:1]
    if not mark:
        return text
    return stripped + rng.choice(("", mark * 2, mark * 3, " " + mark, mark + "!" if mark == "?" else mark))


# -- putting it together --------------------------------------------------------------------

VARIATIONS = ("frame", "typos", "casing", "spacing")
TYPO_RATE = 0.15  # of the eligible words in a turn that gets typos
SPACE_RATE = 0.2  # of the spaces in a turn that gets extra spaces


def _outside(text: str, ranges: list[tuple[int, int]], change) -> str:  # noqa: ANN001
    """`change` applied to each stretch of `text` between the protected ranges."""
    out, at = [], 0
    for start, end in ranges:
        out += [change(text[at:start]), text[start:end]]
        at = end
    out.append(change(text[at:]))
    return "".join(out)


def frame(text: str, rng: random.Random, heldout: bool) -> str:
    """A greeting before the question, or a context sentence before or after it (then
    sometimes a greeting too)."""
    frames = HELDOUT if heldout else TRAIN
    roll = rng.random()
    if roll < 0.4:
        return f"{frames.greeting(rng)} {text}"
    text = f"{frames.context(rng, True)} {text}" if roll < 0.7 else f"{text} {frames.context(rng, False)}"
    return f"{frames.greeting(rng)} {text}" if rng.random() < 0.3 else text


def vary(text: str, rng: random.Random, protected: Iterable[str] = (), heldout: bool = False) -> tuple[str, list[str]]:
    """`text` with one or more of VARIATIONS, and which were chosen. The frame comes first, so
    the greeting gets the turn's typos and casing too; protected spans, numbers and quantity
    words come out verbatim."""
    chosen = [v for v in VARIATIONS if rng.random() < 0.45] or [rng.choice(VARIATIONS)]
    protected = tuple(protected)
    if "frame" in chosen:
        text = frame(text, rng, heldout)
    applied = ["frame"] if "frame" in chosen else []
    for variation in ("typos", "casing", "spacing"):
        if variation not in chosen:
            continue
        before = text
        if variation == "typos":  # never in a number or quantity word: the problem would change
            text = typos(text, rng, protected_ranges(text, protected, NUMBER_WORDS | QUANTITY_WORDS), TYPO_RATE)
        elif variation == "casing":
            how = rng.choice(("lower", "lower", "upper", "title"))
            text = _outside(text, protected_ranges(text, protected), lambda s: recase(s, how))  # noqa: B023
        else:
            ranges = protected_ranges(text, protected)
            if not ranges or ranges[-1][1] <= len(text.rstrip("?.!")):  # the end mark is free
                text = repunctuate(text, rng)
            text = _outside(text, protected_ranges(text, protected), lambda s: respace(s, rng, SPACE_RATE))
        applied += [variation] if text != before else []
    if not applied:  # nothing the chosen variations could change (all of it protected): a frame does
        text, applied = frame(text, rng, heldout), ["frame"]
    return text, applied
