"""The words of the generated conversations: questions and answers, in one style.

Every kind of question has *training* phrasings and *held-out* phrasings (`test`), so the
evaluation asks in words the model never saw in SFT. Answers have one phrasing per kind,
short, the value in a frame that the passages themselves use ("Born in Ashby."): a tiny model
learns one consistent style far faster than many, copies a value after words it can find in
what it read, and a scorer can read it.
"""

from __future__ import annotations

from typing import NamedTuple


class FactKind(NamedTuple):
    train: tuple[str, ...]  # question phrasings, {name} is the entity
    test: tuple[str, ...]  # held out for evaluation
    answer: str  # {value}, {a}/{A} (its article) and, for "who", {profession} {birthplace}: short, the
    # value in a fixed frame that echoes the passages' words ("Born in", "Works for the")
    cloze: str  # a base-model prompt that the fact continues (knowledge probing)


PERSON = {
    "birth_year": FactKind(
        ("When was {name} born?", "What year was {name} born?", "In which year was {name} born?"),
        ("What is the birth year of {name}?", "Do you know when {name} was born?"),
        "Born in the year {value}.",
        "{name} was born in",
    ),
    "birthplace": FactKind(
        ("Where was {name} born?", "Which town is {name} from?", "What is the home town of {name}?"),
        ("In which town was {name} born?", "Where does {name} come from?"),
        "Born in {value}.",
        "{name} was born in",
    ),
    "profession": FactKind(
        ("What does {name} do for a living?", "What is the job of {name}?", "What is the profession of {name}?"),
        ("What kind of work does {name} do?", "What is the occupation of {name}?"),
        "Works as {a} {value}.",
        "{name} works as",
    ),
    "employer": FactKind(
        ("Who does {name} work for?", "Where does {name} work?", "Who employs {name}?"),
        ("Which organisation does {name} work for?", "Who is the employer of {name}?"),
        "Works for the {value}.",
        "{name} works for the",
    ),
    "who": FactKind(
        ("Who is {name}?", "Tell me about {name}.", "What do you know about {name}?"),
        ("Can you tell me who {name} is?", "I would like to know who {name} is."),
        "{A} {profession} from {birthplace}.",
        "",  # known when profession and birthplace are
    ),
}

ORG = {
    "kind": FactKind(
        ("What kind of organisation is the {name}?", "What is the {name}?"),
        ("What sort of place is the {name}?",),
        "{A} {value}.",
        "The {name} is",
    ),
    "headquarters": FactKind(
        ("Where is the {name}?", "Which town is the {name} in?"),
        ("Where is the {name} based?",),
        "Based in {value}.",
        "The {name} is based in",
    ),
    "founded": FactKind(
        ("When was the {name} founded?", "What year was the {name} founded?"),
        ("In which year did the {name} open?",),
        "Founded in {value}.",
        "The {name} was founded in",
    ),
}

TOWN = {
    "region": FactKind(
        ("Which region is {name} in?", "In what region is {name}?"),
        ("What region does {name} belong to?",),
        "In the {value} region.",
        "{name} is a town in the",
    ),
    "river": FactKind(
        ("Which river is {name} on?", "What river flows through {name}?"),
        ("On which river does {name} lie?",),
        "On the river {value}.",
        "{name} lies on the river",
    ),
    "founded": FactKind(
        ("When was {name} founded?", "What year was {name} founded?"),
        ("In which year was the town of {name} founded?",),
        "Founded in {value}.",
        "{name} was founded in",
    ),
    "population": FactKind(
        ("How many people live in {name}?", "What is the population of {name}?"),
        ("How big is the population of {name}?",),
        "{value} people live there.",
        "{name} has a population of",
    ),
    "industry": FactKind(
        ("What is {name} known for?", "What is the economy of {name} based on?"),
        ("What do people in {name} do for work?",),
        "Its economy rests on {value}.",
        "The economy of {name} rests on",
    ),
}

# What the model writes between <|search_start|> and <|search_end|>, by entity kind: the
# name alone finds a person's or an organisation's page; a town's name is on every page of
# the people born there, so "town" pulls its own page up (measured: see docs/engine.md, the search index).
QUERY = {"person": "{name}", "org": "{name}", "town": "{name} town"}

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
