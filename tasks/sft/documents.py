"""Questions from what a crawl's own documents say: no ground truth needed.

Any crawl has sentences that define something: "pg_dump is a utility for backing up a
PostgreSQL database." Each such sentence in a clean document gives a question ("What is
pg_dump?") whose answer is that sentence: a span of the document, which the search tool can
find again. Every page also has a subject, its title, and opens with what it is about: "What
is the page CREATE TABLE about?" is answered by its first sentence. This is how SFT teaches a model to answer from search results on a crawl it knows
nothing about in advance (sources `doc_questions`, `doc_memory`, `doc_unknown` in generate.py),
and how the evaluation checks it (tasks/evaluate.py: the reply's overlap with the span).

- A topic: the title (from its first line or its URL, as the search index takes it) and the
  first sentence of the page that has a few words and ends like a sentence.
- A definition: a sentence opening with a short subject (one to six words, not a pronoun)
  then "is", "are", "was" or "were", then a predicate of a few words; a title-like subject
  ("The pg_dump utility") keeps its words, lowercased article aside.
- Documents are held out whole by a hash of their id, so the evaluation asks about documents
  whose questions no training conversation used (their text was pretrained on, and is in the
  search index: that is what search is for).
- Unknown subjects are invented terms that the crawl's own search index does not contain
  (checked by searching, never assumed), asked in the same forms.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from dataclasses import dataclass

from models import lake
from tasks.search import title_of
from tasks.sft.answers import words

_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
_DEFINITION = re.compile(
    r"^(?P<subject>[A-Za-z][\w.+#/-]*(?: [\w.+#/-]+){0,5}) (?P<be>is|are|was|were) "
    r"(?P<predicate>(?:\w+ly )?(?:a|an|the|one of|used to|used for) [^.!?]{8,220})[.!?]?$"
)
_ARTICLE = re.compile(r"^(The|A|An) ", re.IGNORECASE)
# Words that open a clause rather than name a subject ("If NOWAIT is ...", "So it is ..."), and
# subjects that point back rather than name something ("the latter is ...").
OPENERS = {
    "if",
    "when",
    "whenever",
    "although",
    "though",
    "so",
    "since",
    "because",
    "while",
    "once",
    "unless",
    "where",
    "after",
    "before",
    "until",
    "as",
    "but",
    "and",
    "or",
    "in",
    "on",
    "for",
    "hence",
    "otherwise",
    "now",
    "then",
    "whether",
    "whatever",
}
VAGUE = {
    "latter",
    "former",
    "object",
    "result",
    "following",
    "above",
    "below",
    "same",
    "value",
    "answer",
    "first",
    "second",
    "last",
    "rest",
    "problem",
    "reason",
    "difference",
    "idea",
    "goal",
    "purpose",
    "point",
    "case",
    "way",
    "thing",
    "example",
    "effect",
    "default",
    "output",
    "input",
    "name",
    "number",
    "only",
    "main",
    "other",
    "next",
    "current",
    "new",
    "old",
    "exception",
    "argument",
    "examples",
    "true",
    "false",
}
PRONOUNS = {
    "it",
    "this",
    "that",
    "there",
    "he",
    "she",
    "they",
    "these",
    "those",
    "which",
    "what",
    "here",
    "who",
    "one",
    "each",
    "all",
    "some",
    "any",
    "none",
    "everything",
    "nothing",
    "something",
    "i",
    "we",
    "you",
    "its",
    "his",
    "her",
    "their",
    "our",
    "my",
    "your",
    "such",
    "both",
    "other",
    "another",
    "also",
    "note",
    "thus",
    "however",
    "default",
    "result",
}
STOP = {
    "the",
    "a",
    "an",
    "of",
    "to",
    "in",
    "and",
    "or",
    "is",
    "are",
    "was",
    "were",
    "be",
    "for",
    "on",
    "at",
    "by",
    "with",
    "as",
    "that",
    "this",
    "it",
    "its",
    "from",
    "which",
    "can",
    "not",
    "if",
    "then",
    "than",
    "into",
    "also",
}
MAX_PER_DOCUMENT = 5
KEY_WORDS = 4  # the predicate's first words: what a base model must continue with to "know" a definition


@dataclass(frozen=True)
class Definition:
    id: str  # document id and sentence position: stable
    doc_id: str
    url: str
    title: str
    subject: str  # as the question names it ("pg_dump", "the pg_dump utility"; a page's title)
    be: str  # "is", "are", ...; "" for a page's topic
    sentence: str  # the answer: the document's sentence

    @property
    def form(self) -> str:
        return "definition" if self.be else "topic"

    @property
    def predicate(self) -> str:
        return self.sentence.split(f" {self.be} ", 1)[1] if self.be else self.sentence

    @property
    def cloze(self) -> str:
        """What a base model is asked to continue (knowledge probing): the sentence's opening,
        or for a topic the page's title as its first line."""
        return f"{self.sentence.split(f' {self.be} ', 1)[0]} {self.be}" if self.be else f"{self.subject}\n"

    @property
    def key(self) -> str:
        """The predicate's first words: a continuation that states them knows the definition."""
        return " ".join(self.predicate.split()[:KEY_WORDS])


def content_words(text: str) -> set[str]:
    return {w for w in words(text) if w not in STOP and len(w) > 1}


def overlap(reply: str, span: str) -> float:
    """The share of the span's content words that the reply states (0 when the span has none)."""
    wanted = content_words(span)
    return len(wanted & content_words(reply)) / len(wanted) if wanted else 0.0


_TOPIC_SENTENCE = re.compile(r"^\w[^.!?]{30,220}[.!?]$")  # a capital, or the title's own first word (pg_dump ...)


def topic_of(doc_id: str, url: str, text: str) -> Definition | None:
    """The page's title and the first sentence of its body that reads like one."""
    title, body = title_of(text or "", url or "")
    if not 2 <= len(title) <= 80 or not content_words(title):
        return None
    for paragraph in body.split("\n"):
        for sentence in _SENTENCE.split(" ".join(paragraph.split())):
            opens = sentence[:1].isupper() or sentence.split(" ", 1)[0] == title.split(" ", 1)[0]
            if opens and _TOPIC_SENTENCE.match(sentence) and len(words(sentence)) >= 6:
                return Definition(f"{doc_id}:topic", doc_id, url or "", title, title, "", sentence)
    return None


def definitions_in(doc_id: str, url: str, text: str) -> list[Definition]:
    """The definitional sentences of one document, at most MAX_PER_DOCUMENT, in order."""
    title, body = title_of(text or "", url or "")
    found = []
    for p, paragraph in enumerate(body.split("\n")):
        for s, sentence in enumerate(_SENTENCE.split(" ".join(paragraph.split()))):
            match = _DEFINITION.match(sentence)
            if not match:
                continue
            subject = match["subject"]
            first, rest = subject.split()[0].lower(), [w.lower() for w in subject.split()[1:]]
            named = rest if first in ("the", "a", "an") else [first, *rest]
            if (
                first in PRONOUNS
                or first in OPENERS
                or not named
                or all(w in VAGUE or w in STOP for w in named)
                or OPENERS & set(rest)
                or subject.isdigit()
            ):
                continue
            subject = _ARTICLE.sub(lambda m: m.group(1).lower() + " ", subject)
            sentence = sentence if sentence.endswith((".", "!", "?")) else sentence + "."
            found.append(Definition(f"{doc_id}:{p}:{s}", doc_id, url or "", title, subject, match["be"], sentence))
            if len(found) == MAX_PER_DOCUMENT:
                return found
    return found


def definitions(cleans: list[str], limit: int) -> Iterator[Definition]:
    """Each document's topic, then its definitions, in dataset order, at most `limit`, each
    subject once (the first document that names it)."""
    seen: set[str] = set()
    count = 0
    for clean in cleans:
        for batch in lake.iter_batches(clean, columns=["id", "url", "text"], batch_size=512):
            for doc_id, url, text in zip(*(batch.column(c).to_pylist() for c in ("id", "url", "text"))):
                topic = topic_of(doc_id, url, text)
                for d in ([topic] if topic else []) + definitions_in(doc_id, url, text):
                    if d.subject.lower() in seen:
                        continue
                    seen.add(d.subject.lower())
                    yield d
                    count += 1
                    if count >= limit:
                        return


# Question phrasings: training ones, and held-out ones for the evaluation ({x} the subject, {be} its verb).
QUESTIONS = (
    ("What {be} {x}?", "Can you tell me what {x} {be}?", "Explain {x}.", "What do you know about {x}?"),
    ("Do you know what {x} {be}?", "I would like to know what {x} {be}.", "Describe {x}."),
)
# A page's topic, by its title.
TOPIC_QUESTIONS = (
    (
        "What is {x} about?",
        "What does the documentation say about {x}?",
        "Give me an overview of {x}.",
        "What is covered in {x}?",
    ),
    ("Can you summarise {x}?", "What is the page on {x} about?"),
)


def questions(d: Definition, held_out: bool) -> tuple[str, ...]:
    return (TOPIC_QUESTIONS if d.form == "topic" else QUESTIONS)[held_out]


_SYLLABLES = "ka lo mi zu ter vex dor pla qui sno bri fen gal hu jor".split()
_TECH = ("{w}", "{w}_{v}", "{W} {V}", "the {w} {kind}", "{w}{n}")
_KINDS = ("utility", "module", "protocol", "format", "daemon", "option", "library", "command", "setting", "extension")


def invented_term(rng: random.Random) -> str:
    """A made-up term in the shapes documentation uses ("zuvex_lomi", "the brifen daemon")."""

    def word() -> str:
        return "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 3)))

    w, v = word(), word()
    shape = rng.choice(_TECH)
    return shape.format(w=w, v=v, W=w.capitalize(), V=v.capitalize(), kind=rng.choice(_KINDS), n=rng.randint(2, 99))


def absent_from(result: str, term: str) -> bool:
    """Whether search results show nothing of `term`: none of its distinctive words appear."""
    return not (content_words(term) - set(_KINDS)) & content_words(result)
