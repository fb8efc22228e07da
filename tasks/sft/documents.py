"""Questions from what a crawl's own documents say: no ground truth needed.

Any crawl has sentences that say what something is or does: "pg_dump is a utility for backing
up a PostgreSQL database." Each such sentence in a clean document gives a question ("What is
pg_dump?") whose answer is the head of that sentence: a verbatim span of the document, which the
search tool finds again. Every page also has a subject, its title, and opens with what it is
about: "What is the page CREATE TABLE about?" is answered by its first sentence. This is how
SFT teaches a model to answer from search results on a crawl it knows nothing about in advance
(sources `doc_questions`, `doc_memory`, `doc_unknown` in generate.py), and how the evaluation
checks it (tasks/evaluate.py: the reply's overlap with the span).

- A topic: the title (from its first line or its URL, as the search index takes it) when it
  reads like a title (a few words, no verb of a sentence, not cut off), and the first sentence
  of the page that has a few words and ends like a sentence.
- A definition: a sentence opening with a short subject (one to six words, not a pronoun)
  then "is", "are", "was" or "were", then a predicate of a few words; a title-like subject
  ("The pg_dump utility") keeps its words, lowercased article aside.
- A statement: the same short subject then a verb of what documentation says things do
  ("pg_dump writes ...", "The server uses ..."): "What does the documentation say about X?".
- The answer is the sentence's head: up to its first clause boundary (a comma, "which", a
  parenthesis, ...) and at most ANSWER_WORDS words, so a small model can copy it from the
  results it reads; the subject's words are given by the question, so judging leaves them out.
- Documents are held out whole by a hash of their id, so the evaluation asks about documents
  whose questions no training conversation used (their text was pretrained on, and is in the
  search index: that is what search is for).
- Unknown subjects are invented terms in many shapes, alone or inside the crawl's own words
  ("pg_zuvex", "the brifen command", a blend of two real identifiers), whose invented words the
  crawl's own search index does not contain (checked by searching, never assumed), asked in
  the same forms as the answerable questions.
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
# Verbs of what documentation says a thing does: "pg_dump writes ...", "The server uses ...".
VERBS = {
    "accepts",
    "adds",
    "allows",
    "applies",
    "causes",
    "checks",
    "contains",
    "controls",
    "converts",
    "creates",
    "defines",
    "determines",
    "displays",
    "enables",
    "gives",
    "handles",
    "holds",
    "includes",
    "lets",
    "lists",
    "makes",
    "manages",
    "means",
    "prints",
    "provides",
    "reads",
    "records",
    "refers",
    "removes",
    "represents",
    "requires",
    "returns",
    "runs",
    "sends",
    "sets",
    "shows",
    "specifies",
    "starts",
    "stores",
    "supports",
    "takes",
    "tells",
    "updates",
    "uses",
    "writes",
}
# "pg_dump can be used to ...": what a subject can, must or does do.
MODALS = {"can", "cannot", "must", "should", "may", "will", "does", "has", "have"}
MAX_PER_DOCUMENT = 20
KEY_WORDS = 4  # the predicate's first words: what a base model must continue with to "know" a definition
ANSWER_WORDS = 14  # at most this many words in an answer: a tiny model copies a short span, not a paragraph
MAX_TITLE_WORDS = 8
# Where a sentence's head ends: the first clause boundary after its subject and verb.
_CLAUSE = re.compile(r"[,;:(]| [—–-] | (?:which|where|while|whereas|but|so that|because|unless|except|although) ")


def head(sentence: str, start: int = 0) -> str:
    """The sentence up to its first clause boundary after character `start`, at most
    ANSWER_WORDS words: a verbatim prefix, without its final punctuation."""
    text = sentence.rstrip(".!?")
    cut = _CLAUSE.search(text, start)
    text = text[: cut.start()] if cut else text
    kept = text.split(" ")[:ANSWER_WORDS]
    while len(kept) > 1 and kept[-1].lower() in STOP | OPENERS:  # "... log sequence at" ends at "sequence"
        kept.pop()
    return " ".join(kept).rstrip(" ,;:")


@dataclass(frozen=True)
class Definition:
    id: str  # document id and sentence position: stable
    doc_id: str
    url: str
    title: str
    subject: str  # as the question names it ("pg_dump", "the pg_dump utility"; a page's title)
    be: str  # the verb after the subject: "is", "are", ... for a definition, "writes", ... for a statement; "" for a topic
    sentence: str  # the document's sentence

    @property
    def form(self) -> str:
        if not self.be:
            return "topic"
        return "definition" if self.be in ("is", "are", "was", "were") else "statement"

    @property
    def predicate(self) -> str:
        return self.sentence.split(f" {self.be} ", 1)[1] if self.be else self.sentence

    @property
    def answer(self) -> str:
        """What the assistant answers: the sentence's head (a verbatim span of the document),
        cut after the subject and verb and a few words of the predicate at the earliest."""
        opening = len(self.sentence) - len(self.predicate)
        start = opening + len(" ".join(self.predicate.split()[:3]))
        span = head(self.sentence, start)
        return span if span.endswith((".", "!", "?")) else span + "."

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


def overlap(reply: str, span: str, given: str = "") -> float:
    """The share of the span's content words that the reply states, leaving out the words the
    question already gives (`given`, the subject): naming the subject answers nothing. 0 when
    the span has no other content words."""
    wanted = content_words(span) - content_words(given)
    return len(wanted & content_words(reply)) / len(wanted) if wanted else 0.0


_TOPIC_SENTENCE = re.compile(r"^\w[^.!?]{30,220}[.!?]$")  # a capital, or the title's own first word (pg_dump ...)
# Words that make a first line a cut-off sentence rather than a title ("It is a good idea to ...").
_SENTENCE_VERBS = {"is", "are", "was", "were", "can", "must", "may", "will", "should", "could", "might", "you"}


def reads_like_title(title: str) -> bool:
    """A few words, no verb of a sentence, not ending in a function word (a line cut short)."""
    lowered = [w.lower() for w in title.split()]
    return (
        1 <= len(lowered) <= MAX_TITLE_WORDS
        and lowered[0] not in PRONOUNS | OPENERS
        and lowered[-1] not in STOP | OPENERS
        and not _SENTENCE_VERBS & set(lowered)
        and bool(content_words(title))
    )


def topic_of(doc_id: str, url: str, text: str) -> Definition | None:
    """The page's title and the first sentence of its body that reads like one."""
    title, body = title_of(text or "", url or "")
    if not 2 <= len(title) <= 80 or not reads_like_title(title):
        return None
    for paragraph in body.split("\n"):
        for sentence in _SENTENCE.split(" ".join(paragraph.split())):
            opens = sentence[:1].isupper() or sentence.split(" ", 1)[0] == title.split(" ", 1)[0]
            if opens and _TOPIC_SENTENCE.match(sentence) and len(words(sentence)) >= 6:
                return Definition(f"{doc_id}:topic", doc_id, url or "", title, title, "", sentence)
    return None


_STATEMENT = re.compile(  # a shorter subject than a definition's: longer ones are mostly clauses
    r"^(?P<subject>[A-Za-z][\w.+#/-]*(?: [\w.+#/-]+){0,3}) (?P<be>" + "|".join(sorted(VERBS | MODALS)) + r") "
    r"(?P<predicate>[\w\"'(][^.!?]{12,220})[.!?]?$"
)


# Quantifiers and sentence adverbs: a subject they open is a class or a comment, not a name
# anyone asks about ("Many kinds of functions can ...", "Actually the preceding paragraph is ...").
QUALIFIERS = {
    "many",
    "some",
    "most",
    "each",
    "every",
    "all",
    "both",
    "few",
    "several",
    "any",
    "no",
    "other",
    "such",
    "various",
    "actually",
    "also",
    "only",
    "often",
    "usually",
    "typically",
    "generally",
    "here",
    "there",
    "now",
    "instead",
    "otherwise",
    "similarly",
}


_SENTENCE_END = re.compile(r"[.!?] ")


def _named(subject: str) -> bool:
    """Whether a subject names something (not a pronoun, a clause opener or only vague words)."""
    first, rest = subject.split()[0].lower(), [w.lower() for w in subject.split()[1:]]
    named = rest if first in ("the", "a", "an") else [first, *rest]
    return not (
        first in PRONOUNS
        or first in OPENERS
        or first in QUALIFIERS
        or (first in STOP and first not in ("the", "a", "an"))  # a line that starts mid-sentence: "of the group can"
        or not named
        or all(w in VAGUE or w in STOP for w in named)
        or (OPENERS | PRONOUNS | VERBS | MODALS) & set(rest)
        or subject.isdigit()
        or _SENTENCE_END.search(subject)  # "instead. --no-symlinks": the splitter wants a capital, a flag has none
    )


def definitions_in(doc_id: str, url: str, text: str) -> list[Definition]:
    """The definitional sentences and statements of one document, at most MAX_PER_DOCUMENT, in order."""
    title, body = title_of(text or "", url or "")
    found = []
    for p, paragraph in enumerate(body.split("\n")):
        for s, sentence in enumerate(_SENTENCE.split(" ".join(paragraph.split()))):
            match = _DEFINITION.match(sentence) or _STATEMENT.match(sentence)
            if not match or not _named(match["subject"]):
                continue
            subject = _ARTICLE.sub(lambda m: m.group(1).lower() + " ", match["subject"])
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
    (
        "What {be} {x}?",
        "Can you tell me what {x} {be}?",
        "Explain {x}.",
        "What do you know about {x}?",
        "Tell me what {x} {be}.",
        "Define {x}.",
        "What exactly {be} {x}?",
        "Please explain what {x} {be}.",
    ),
    ("Do you know what {x} {be}?", "I would like to know what {x} {be}.", "Describe {x}."),
)
# What a statement says about its subject.
STATEMENT_QUESTIONS = (
    (
        "What does the documentation say about {x}?",
        "Tell me about {x}.",
        "What can you tell me about {x}?",
        "What do you know about {x}?",
        "What does the manual say about {x}?",
        "Can you explain {x}?",
        "Give me the facts about {x}.",
        "Give me a description of {x}.",
    ),
    ("What do the docs say about {x}?", "I would like to know about {x}."),
)
# A page's topic, by its title.
TOPIC_QUESTIONS = (
    (
        "What is {x} about?",
        "What does the documentation say about {x}?",
        "Give me an overview of {x}.",
        "What is covered in {x}?",
        "Summarise {x}.",
        "Tell me about {x}.",
        "What does the page {x} cover?",
        "What is {x} about, in short?",
    ),
    ("Can you summarise {x}?", "What is the page on {x} about?"),
)
FORMS = {"definition": QUESTIONS, "statement": STATEMENT_QUESTIONS, "topic": TOPIC_QUESTIONS}


def questions(d: Definition, held_out: bool) -> tuple[str, ...]:
    return FORMS[d.form][held_out]


_SYLLABLES = "ka lo mi zu ter vex dor pla qui sno bri fen gal hu jor".split()
_KINDS = ("utility", "module", "protocol", "format", "daemon", "option", "library", "command", "setting", "extension")
# Shapes of made-up terms ({w}, {v}: invented words; {real}, {other}: words of the crawl's own subjects;
# {blend}: the front of one real word joined to the back of another): what documentation names look like.
_SHAPES = (
    "{w}",
    "{w}_{v}",
    "{W}{V}",
    "{w}-{v}",
    "{W} {V}",
    "{w}{n}",
    "the {w} {kind}",
    "the {w} {real}",
    "{real}_{w}",
    "{real}-{w}",
    "{W} {real}",
    "{real} {w}",
    "{blend}",
    "the {blend} {real}",
    "{blend}_{real}",
)


@dataclass(frozen=True)
class Invented:
    term: str  # what the question names
    new: tuple[str, ...]  # its invented words: what the crawl must not contain


def invented_term(rng: random.Random, vocabulary: list[str] = ()) -> Invented:
    """A made-up term in one of the shapes documentation uses, alone or inside the crawl's own
    words ("zuvex_lomi", "the brifen daemon", "pg_zuvex", "dumpstable"); without a vocabulary
    only the shapes of invented words and kinds."""

    def word() -> str:
        return "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 3)))

    shapes = _SHAPES if len(vocabulary) >= 2 else _SHAPES[:7]
    shape = rng.choice(shapes)
    w, v = word(), word()
    real = rng.choice(vocabulary) if vocabulary else ""
    blend = ""
    if "{blend}" in shape:
        a, b = rng.sample(vocabulary, 2)
        blend = a[: max(2, len(a) // 2)] + b[len(b) // 2 :]
    term = shape.format(
        w=w,
        v=v,
        W=w.capitalize(),
        V=v.capitalize(),
        kind=rng.choice(_KINDS),
        n=rng.randint(2, 99),
        real=real,
        blend=blend,
    )
    new = tuple(x for x, mark in ((w, "{w}"), (w, "{W}"), (v, "{v}"), (v, "{V}"), (blend, "{blend}")) if mark in shape)
    if "{W}{V}" in shape:
        new = (f"{w}{v}",)  # one word to the index: CamelCase is not split
    if "{w}{n}" in shape:
        new = (words(term)[0],)
    return Invented(term, tuple(dict.fromkeys(new)))


def vocabulary_of(subjects: list[str]) -> list[str]:
    """The crawl's own naming words: the words of its subjects, a few letters long, sorted."""
    return sorted({w for s in subjects for w in words(s) if len(w) >= 3 and w not in STOP and not w.isdigit()})


def absent_from(result: str, term: str) -> bool:
    """Whether search results show nothing of `term`: none of its distinctive words appear."""
    return not (content_words(term) - set(_KINDS)) & content_words(result)
