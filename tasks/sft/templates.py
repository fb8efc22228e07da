"""The words of the generated conversations: questions and answers, in one style.

Questions about entities are composed by a grammar (questions.py); the other kinds have
*training* phrasings and *held-out* phrasings here, so the evaluation asks in words the model
never saw in SFT. Answers have one phrasing per kind,
short, the value in a frame that the passages themselves use ("Born in Ashby."): a tiny model
learns one consistent style far faster than many, copies a value after words it can find in
what it read, and a scorer can read it.
"""

from __future__ import annotations

from typing import NamedTuple


class FactKind(NamedTuple):
    answer: str  # {value}, {a}/{A} (its article) and, for "who", {profession} {birthplace}: short, the
    # value in a fixed frame that echoes the passages' words ("Born in", "Works for the")
    cloze: str  # a base-model prompt that the fact continues (knowledge probing)


PERSON = {
    "birth_year": FactKind("Born in the year {value}.", "{name} was born in"),
    "birthplace": FactKind("Born in {value}.", "{name} was born in"),
    "profession": FactKind("Works as {a} {value}.", "{name} works as"),
    "employer": FactKind("Works for the {value}.", "{name} works for the"),
    "who": FactKind("{A} {profession} from {birthplace}.", ""),
}
ORG = {
    "kind": FactKind("{A} {value}.", "The {name} is"),
    "headquarters": FactKind("Based in {value}.", "The {name} is based in"),
    "founded": FactKind("Founded in {value}.", "The {name} was founded in"),
}
TOWN = {
    "region": FactKind("In the {value} region.", "{name} is a town in the"),
    "river": FactKind("On the river {value}.", "{name} lies on the river"),
    "founded": FactKind("Founded in {value}.", "{name} was founded in"),
    "population": FactKind("{value} people live there.", "{name} has a population of"),
    "industry": FactKind("Its economy rests on {value}.", "The economy of {name} rests on"),
}

# What the model writes between <|search_start|> and <|search_end|>, by entity kind: the
# name alone finds a person's or an organisation's page; a town's name is on every page of
# the people born there, so "town" pulls its own page up (measured: see docs/engine.md, the search index).
# The leading space makes the query's tokens the question's own: BPE spells a word differently
# at the start of a text ("Nils" is "N" "ils" there, "▁Nils" after a space), and a model copies
# a name token for token far more easily than it respells it (docs/sft.md, search that works).
QUERY = {"person": " {name}", "org": " {name}", "town": " {name} town", "thing": " {name}"}

IDENTITY = (
    (
        (
            "Who are you?",
            "I'm a small chat assistant. crawl2chat trained me on a web crawl: first to read it, then to answer questions.",
        ),
        ("What is your name?", "I'm the crawl2chat assistant, a small language model trained on a web crawl."),
        ("Who made you?", "I was trained with crawl2chat, a pipeline that turns web crawls into a chat assistant."),
        (
            "What can you do?",
            "I can answer questions about the people, towns and organisations in my crawl, look facts up with a search tool, and do arithmetic with a calculator.",
        ),
        ("Are you a human?", "No, I'm a small language model trained with crawl2chat."),
        ("Hello!", "Hello! How can I help you today?"),
        ("Thank you!", "You're welcome! Let me know if there is anything else I can help with."),
        (
            "How do you look things up?",
            "I write a search query, read the passages the search tool returns, and answer from them.",
        ),
        ("Can you do math?", "Yes. I work through a problem step by step and use a calculator for the arithmetic."),
    ),
    (
        (
            "Tell me who you are.",
            "I'm a small chat assistant. crawl2chat trained me on a web crawl: first to read it, then to answer questions.",
        ),
        ("Hi there!", "Hello! How can I help you today?"),
    ),
)

ARITHMETIC = (
    ("What is {a} {op} {b}?", "Compute {a} {op} {b}.", "Calculate {a} {op} {b} for me."),
    ("Can you work out {a} {op} {b}?",),
)

PROFESSION_QUESTIONS = (
    ("What does {a} {profession} do?", "What is the work of {a} {profession}?"),
    ("Describe the job of {a} {profession}.",),
)

# Copying practice (as nanochat's spelling tasks): writing a search query means copying a name
# out of the question, a skill a small model has to be taught.
ECHO = (
    ("Repeat after me: {name}", "Please say {name}.", "Can you write the name {name}?", "Say {name} back to me."),
    ("Echo this name: {name}",),
)
ECHO_REPLY = "I heard: {name}."  # the names after a space, in the question's own tokens
