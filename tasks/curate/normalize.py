"""The `normalize` step: extracted text in the shape FineWeb's filters were tuned on.

FineWeb ran trafilatura 1.x, whose plain-text output has every line stripped, whitespace runs
inside a line collapsed to one space, and no blank lines. trafilatura 2.x keeps the page's own
indentation and line breaks inside blocks: on markup indented with tabs it returns
whitespace-only lines and bare "- " bullet lines (a list item whose text sits in a nested block).
The line rules then count the blank lines as duplicate lines and each lone "-" as a word without
a letter, and remove good pages. This step puts the text back in 1.x's shape:

- every line stripped, runs of spaces and tabs (any whitespace but the newline) made one space;
- whitespace-only lines dropped;
- optionally (`join_bullets`), a line that is only a bullet ("-", "•", ...) joined with the line
  after it, unless that one is a bullet item itself (so a second pass changes nothing). Off by
  default: trafilatura 1.x keeps such lines, and FineWeb's filters saw them.

It never drops a document (a text left empty is the extract step's `empty`, counted there) and it
is idempotent. Counters: documents changed, blank lines dropped, bullets joined, lines changed.
On by default for trafilatura; off for resiliparse, whose output datatrove's resiliparse chain
feeds to the filters as it is (its blank lines separate paragraphs, which Gopher counts).
"""

from __future__ import annotations

import re
from collections import Counter

BULLETS = frozenset("-•*–·◦▪‣⁃")
_INLINE_SPACE = re.compile(r"[^\S\n]+")  # whitespace runs without a newline


def _starts_with_bullet(line: str) -> bool:
    return line in BULLETS or (line[0] in BULLETS and line[1:2] == " ")


def normalize(text: str, join_bullets: bool = False, counts: Counter | None = None) -> str:
    """`text` in trafilatura 1.x's shape; `counts` (if given) gets what was changed."""
    lines, blank, changed = [], 0, 0
    for raw in text.split("\n"):
        line = _INLINE_SPACE.sub(" ", raw).strip(" ")
        if not line:
            blank += 1
            continue
        changed += line != raw
        lines.append(line)
    joined = 0
    if join_bullets:
        out: list[str] = []
        for line in lines:
            if out and out[-1] in BULLETS and not _starts_with_bullet(line):
                out[-1] = f"{out[-1]} {line}"
                joined += 1
            else:
                out.append(line)
        lines = out
    result = "\n".join(lines)
    if counts is not None and result != text:
        counts["docs_changed"] += 1
        counts["blank_lines_dropped"] += blank
        counts["bullets_joined"] += joined
        counts["lines_changed"] += changed
    return result
