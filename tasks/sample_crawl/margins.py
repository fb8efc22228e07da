"""The margin every clean page keeps from the curation thresholds, checked at generation time.

The ground truth says "this page survives curation"; that is only right by construction if
the page's main text clears FineWeb's rules with room to spare, whatever the tokenizer details
of the filter that judges it. These are not the curation filters (tasks/curate has those) but a
stricter, simpler guard: a clean page that fails it is a generator bug, and the generator
raises rather than writing a wrong truth. Planted pages are built to break exactly one rule and
are checked against the rest of the guard the same way.
"""

from __future__ import annotations

import re
from collections import Counter

# Runs of letters and digits; every other character (underscores too) is a token of its own,
# which is how spaCy splits `__init__` and what makes the letter share a lower bound.
WORD = re.compile(r"[^\W_]+|\S")
STOP_WORDS = {"the", "be", "to", "of", "and", "that", "have", "with"}
POLICY = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies")
EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+\.[\w.-]+\b")
IPV4 = re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}\b")

# Stricter than FineWeb: (our limit, FineWeb's limit) for each measure.
MIN_WORDS = 70  # gopher: 50
MIN_ALPHA = 0.82  # gopher: 0.8 of tokens contain a letter (our tokenizer splits every
# punctuation mark off, so its share is a lower bound of what spaCy or NLTK tokens give)
MAX_SHORT_LINES = 0.5  # fineweb: 0.67 of lines of <= 30 characters
MIN_PUNCT_LINES = 0.4  # fineweb: 0.12 of lines end in terminal punctuation
MAX_NEWLINES_PER_WORD = 0.2  # fineweb: 0.3
MIN_SENTENCES = 7  # c4: 5
MAX_TOP_NGRAM = {2: 0.14, 3: 0.13, 4: 0.12}  # gopher: 0.20, 0.18, 0.16
MAX_DUP_NGRAM = {5: 0.1, 6: 0.09, 7: 0.08, 8: 0.07, 9: 0.06, 10: 0.05}  # gopher: 0.15 down to 0.10
REPETITION = frozenset({*(f"top_{n}gram" for n in MAX_TOP_NGRAM), *(f"dup_{n}gram" for n in MAX_DUP_NGRAM)})


def words(text: str) -> list[str]:
    return WORD.findall(text)


def _top_ngram_fraction(tokens: list[str], n: int, total_chars: int) -> float:
    """Characters of the most frequent n-gram times its count, over the text's length. Like
    Gopher's rule, a count of one counts too, which is what sinks very short texts."""
    grams = Counter(" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
    if not grams:
        return 0.0
    gram, count = grams.most_common(1)[0]
    return len(gram) * count / max(total_chars, 1)


def _dup_ngram_fraction(tokens: list[str], n: int, total_chars: int) -> float:
    """Characters in n-grams seen before (scanning greedily, as Gopher does), over the length."""
    seen, repeated, i = set(), 0, 0
    while i < len(tokens) - n + 1:
        gram = "".join(tokens[i : i + n])
        if gram in seen:
            repeated += len(gram)
            i += n
        else:
            seen.add(gram)
            i += 1
    return repeated / max(total_chars, 1)


def problems(text: str, *, allow: frozenset[str] = frozenset()) -> list[str]:
    """Every way `text` (a page's main text, one line per block) falls short of the margin.

    `allow` names checks a planted page is meant to fail, so it is judged on the others.
    """
    found: list[str] = []

    def check(name: str, bad: bool, detail: str) -> None:
        if bad and name not in allow:
            found.append(f"{name}: {detail}")

    tokens = words(text)
    alnum = [t for t in tokens if any(c.isalnum() for c in t)]
    lines = [line for line in text.split("\n") if line.strip()]
    lower = text.lower()
    check("short", len(alnum) < MIN_WORDS, f"{len(alnum)} words")
    alpha = sum(any(c.isalpha() for c in t) for t in tokens) / max(len(tokens), 1)
    check("alpha", alpha < MIN_ALPHA, f"{alpha:.2f} of tokens have a letter")
    check("stop_words", len(STOP_WORDS & {t.lower() for t in tokens}) < 2, "fewer than 2 distinct stop words")
    mean_len = sum(map(len, alnum)) / max(len(alnum), 1)
    check("word_length", not 3.5 <= mean_len <= 9, f"mean word length {mean_len:.1f}")
    check("symbols", "#" in text or "..." in text or "…" in text, "'#' or an ellipsis")
    dup = [line for line, n in Counter(lines).items() if n > 1]
    check("duplicate_lines", bool(dup), f"repeated line {dup[:1]}")
    short = sum(len(line) <= 30 for line in lines) / max(len(lines), 1)
    check("short_lines", short > MAX_SHORT_LINES, f"{short:.2f} of lines are short")
    punct = sum(line.rstrip().endswith((".", "!", "?", '"', "'")) for line in lines) / max(len(lines), 1)
    check("line_punct", punct < MIN_PUNCT_LINES, f"{punct:.2f} of lines end a sentence")
    check("newlines", text.count("\n") / max(len(alnum), 1) > MAX_NEWLINES_PER_WORD, "too many lines per word")
    sentences = sum(len(re.findall(r"[.!?](?:\s|$)", line)) for line in lines if len(line.split()) >= 3)
    check("sentences", sentences < MIN_SENTENCES, f"{sentences} sentences")
    check("brace", "{" in text or "}" in text, "a curly brace")
    check("lorem", "lorem ipsum" in lower, "lorem ipsum")
    check("javascript", "javascript" in lower, "mentions javascript")
    check("policy", any(p in lower for p in POLICY), "a cookie or policy phrase")
    check("pii", bool(EMAIL.search(text) or IPV4.search(text)), "an email or IPv4 address")
    for n, limit in MAX_TOP_NGRAM.items():
        frac = _top_ngram_fraction(tokens, n, len(text))
        check(f"top_{n}gram", frac > limit, f"top {n}-gram covers {frac:.2f}")
    for n, limit in MAX_DUP_NGRAM.items():
        frac = _dup_ngram_fraction(tokens, n, len(text))
        check(f"dup_{n}gram", frac > limit, f"repeated {n}-grams cover {frac:.2f}")
    return found
