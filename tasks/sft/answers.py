"""The assistant's answer formats, and the checks that read them back.

One style everywhere, so a tiny model can learn it and a scorer can trust it:
- a numeric answer (math word problems, arithmetic) ends with a final line `Answer: 42`;
- not knowing is "I'm sorry, I don't believe I know." (Llama 3's refusal for facts the model
  gets wrong, and for people it has never read about);
- harmful requests get a short "I'm sorry, but I can't help with that.";
- requests for someone's private contact details get a short refusal that says why.

`extract_answer` is what RL scores math with: `strict` accepts only the trained format (the
last non-empty line is exactly "Answer: <integer>"), lenient takes the last integer anywhere
in the text (lm-eval's "flexible extract"); report both, since a model can gain strict
accuracy by learning the format alone.
"""

from __future__ import annotations

import re

ANSWER_PREFIX = "Answer:"
REFUSAL_IDK = "I'm sorry, I don't believe I know."
REFUSAL_HARMFUL = "I'm sorry, but I can't help with that."
REFUSAL_PRIVATE = "I'm sorry, but I can't share personal details such as someone's home address, phone number or email."
# Phrases that mark a refusal of any kind (ours, and the usual ones a user dataset teaches).
REFUSAL_MARKERS = (
    "i'm sorry",
    "i am sorry",
    "i don't believe i know",
    "i don't know",
    "i do not know",
    "i can't help",
    "i cannot help",
    "i can't share",
    "i cannot share",
)

_STRICT = re.compile(r"^Answer: (-?\d[\d,]*)$")
_NUMBER = re.compile(r"-?\d[\d,]*")
_WORDS = re.compile(r"[^\W_]+")


def format_answer(value: int) -> str:
    return f"{ANSWER_PREFIX} {value}"


def _to_int(digits: str) -> int | None:
    digits = digits.replace(",", "")
    return int(digits) if digits.lstrip("-").isdigit() else None


def extract_answer(text: str, strict: bool = True) -> int | None:
    """The integer answer of a reply, or None.

    strict: the last non-empty line must be exactly "Answer: N" (N an integer, commas allowed
    as thousands separators). lenient: the last integer anywhere in the text."""
    if not isinstance(text, str):
        return None
    if strict:
        lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
        match = _STRICT.match(lines[-1]) if lines else None
        return _to_int(match.group(1)) if match else None
    numbers = _NUMBER.findall(text)
    return _to_int(numbers[-1]) if numbers else None


# What a refusal's words do not mean inside a quotation ('"I don't know" is a song by ...'), or
# as an apology that goes on to answer ("I'm sorry if that is late: it is 1952").
_QUOTED = re.compile(r'"[^"]*"|\u201c[^\u201d]*\u201d')
_APOLOGY = re.compile(r"\bi(?:'m| am) sorry (?:if|for|to|about|that)\b")


def is_refusal(text: str) -> bool:
    """Whether a reply declines (not knowing, or not helping)."""
    lowered = _APOLOGY.sub(" ", _QUOTED.sub(" ", text.lower().replace("\u2019", "'")))
    return any(marker in lowered for marker in REFUSAL_MARKERS)


def words(text: str) -> list[str]:
    return _WORDS.findall(text.lower())


def mentions(text: str, value: str) -> bool:
    """Whether `text` states `value`: its words appear in `text` in order, side by side
    (case, punctuation and spacing aside). "Embermouth" is in "born in Embermouth.", but
    "19" is not in "1954"."""
    needle, haystack = words(value), words(text)
    if not needle:
        return False
    n = len(needle)
    return any(haystack[i : i + n] == needle for i in range(len(haystack) - n + 1))
