"""Questions about an entity, composed from a grammar: what a user asks, in many shapes.

A question is a *core* (what is asked, with its synonyms: "When was X born?", "In what year
was X born?") put into a *frame* (how it is asked):

- direct: the core as a question, maybe with a lead-in ("Quick question: When was X born?");
- embedded: the core as an indirect question or a noun phrase, in its own word order ("Can you
  tell me when X was born?", "I'd like to know the birth year of X.");
- topic: the entity first, then the core about "they"/"it" ("About X: when were they born?"),
  two sentences with the name only in the first.

A core spells its synonyms as [a|b|c]; every combination is a surface form. A question's
*shape* is (attribute, core, frame); its *skeleton* is the question with the name taken out.

Held out: some cores and some frames of every entity kind are never trained on. A shape is
held out when its core or its frame is (`heldout`), so the training grammar and the held-out
grammar share no shape; the evaluation asks both (meta "heldout": true for the second).
Nothing in the sample crawl is phrased as a question about an entity, so no held-out shape
reaches pretraining either (tests/test_sft_questions.py checks both).
"""

from __future__ import annotations

import itertools
import random
import re
from typing import NamedTuple


class Core(NamedTuple):
    direct: str  # a question with {name}
    embedded: str  # an indirect question or noun phrase with {name} ("" when there is none)
    topic: str  # the question about "they"/"it", no name ("" when there is none)
    heldout: bool = False


class Frame(NamedTuple):
    form: str  # "direct", "embedded" or "topic": which part of a core it takes
    text: str  # with {q}: the core's part (and {name} for topic frames)
    heldout: bool = False


def _c(direct: str, embedded: str = "", topic: str = "", heldout: bool = False) -> Core:
    return Core(direct, embedded, topic, heldout)


H = True  # marks a held-out core or frame below

PERSON = {
    "birth_year": (
        _c("When was {name} born?", "when {name} was born", "When were they born?"),
        _c(
            "[What|Which] year was {name} born[| in]?", "[what|which] year {name} was born", "What year were they born?"
        ),
        _c("What is the [birth year|year of birth] of {name}?", "the [birth year|year of birth] of {name}"),
        _c("In [what|which] year was {name} born?", "in which year {name} was born", "In what year were they born?", H),
        _c("{name} was born in [what|which] year?", "", "", H),
        _c("What's {name}'s [birth year|year of birth]?", "{name}'s [birth year|year of birth]", "", H),
    ),
    "birthplace": (
        _c("Where was {name} born?", "where {name} was born", "Where were they born?"),
        _c("[Which|What] town [is|was] {name} from?", "which town {name} [is|was] from", "Which town are they from?"),
        _c("What is the [home town|birthplace|place of birth] of {name}?", "the [home town|birthplace] of {name}"),
        _c(
            "In [which|what] town was {name} born?", "in which town {name} was born", "In which town were they born?", H
        ),
        _c("Where does {name} come from?", "where {name} comes from", "Where do they come from?", H),
        _c("{name} was born where?", "", "", H),
    ),
    "profession": (
        _c("What does {name} do for a living?", "what {name} does for a living", "What do they do for a living?"),
        _c(
            "What is the [job|profession|trade] of {name}?",
            "the [job|profession|trade] of {name}",
            "What is their job?",
        ),
        _c("What [job|work] does {name} do?", "what [job|work] {name} does", "What work do they do?"),
        _c("What is {name}'s [occupation|line of work]?", "{name}'s [occupation|line of work]", "", H),
        _c("What kind of work does {name} do?", "what kind of work {name} does", "What kind of work do they do?", H),
        _c("{name} works as what?", "", "", H),
    ),
    "employer": (
        _c("Who does {name} work for?", "who {name} works for", "Who do they work for?"),
        _c("Where does {name} work?", "where {name} works", "Where do they work?"),
        _c("Who [employs|pays] {name}?", "who employs {name}", "Who employs them?"),
        _c("Which [organisation|company|employer] does {name} work for?", "which organisation {name} works for", "", H),
        _c("Who is the employer of {name}?", "the employer of {name}", "Who is their employer?", H),
        _c("{name} is employed by whom?", "", "", H),
    ),
    "who": (
        _c("Who is {name}?", "who {name} is", "Who are they?"),
        _c("What do you know about {name}?", "what is known about {name}", ""),
        _c("Tell me about {name}.", "", ""),
        _c("Who exactly is {name}?", "who exactly {name} is", "", H),
        _c("Give me a short description of {name}.", "", "", H),
        _c("What can you say about {name}?", "what you can say about {name}", "", H),
    ),
}

ORG = {
    "kind": (
        _c(
            "What kind of [organisation|place] is {name}?",
            "what kind of organisation {name} is",
            "What kind of place is it?",
        ),
        _c("What is {name}?", "what {name} is", "What is it?"),
        _c("What sort of [place|organisation|institution] is {name}?", "what sort of place {name} is", "", H),
        _c("{name} is what kind of organisation?", "", "", H),
    ),
    "headquarters": (
        _c("Where is {name}?", "where {name} is", "Where is it?"),
        _c("[Which|What] town is {name} in?", "which town {name} is in", "Which town is it in?"),
        _c("Where is {name} [based|located]?", "where {name} is based", "Where is it based?", H),
        _c("In which town does {name} have its headquarters?", "where {name} has its headquarters", "", H),
    ),
    "founded": (
        _c("When was {name} founded?", "when {name} was founded", "When was it founded?"),
        _c(
            "[What|Which] year was {name} [founded|established]?",
            "the year {name} was founded",
            "What year was it founded?",
        ),
        _c("In which year did {name} open?", "in which year {name} opened", "When did it open?", H),
        _c("How long has {name} been [open|around]? When did it start?", "", "", H),
    ),
}

TOWN = {
    "region": (
        _c("Which region is {name} in?", "which region {name} is in", "Which region is it in?"),
        _c("In [what|which] region is {name}?", "in what region {name} is", "In what region is it?"),
        _c("What region does {name} belong to?", "what region {name} belongs to", "What region does it belong to?", H),
        _c("{name} lies in which region?", "", "", H),
    ),
    "river": (
        _c("Which river is {name} on?", "which river {name} is on", "Which river is it on?"),
        _c("What river [flows|runs] through {name}?", "what river flows through {name}", "What river runs through it?"),
        _c("On which river does {name} lie?", "on which river {name} lies", "On which river does it lie?", H),
        _c("What is the name of the river at {name}?", "the name of the river at {name}", "", H),
    ),
    "founded": (
        _c("When was {name} founded?", "when {name} was founded", "When was it founded?"),
        _c("[What|Which] year was {name} founded?", "what year {name} was founded", "What year was it founded?"),
        _c("How old is the town of {name}? When was it founded?", "", "", H),
        _c("In which year was the town of {name} founded?", "the year the town of {name} was founded", "", H),
    ),
    "population": (
        _c("How many people live in {name}?", "how many people live in {name}", "How many people live there?"),
        _c("What is the population of {name}?", "the population of {name}", "What is its population?"),
        _c("How big is the population of {name}?", "how big the population of {name} is", "", H),
        _c("How many [inhabitants|residents] does {name} have?", "how many residents {name} has", "", H),
    ),
    "industry": (
        _c("What is {name} known for?", "what {name} is known for", "What is it known for?"),
        _c(
            "What is the economy of {name} based on?",
            "what the economy of {name} rests on",
            "What is its economy based on?",
        ),
        _c("What do people in {name} do for work?", "what people in {name} do for work", "", H),
        _c("What is the main industry of {name}?", "the main industry of {name}", "What is its main industry?", H),
    ),
}

# Things nobody wrote about (festivals, prizes, machines, dishes): asked only as unknowns.
THING = {
    "what": (
        _c("What is {name}?", "what {name} is", "What is it?"),
        _c("What [exactly|really] is {name}?", "what {name} really is", ""),
        _c("Can you explain what {name} is?", "", "", H),
        _c("{name}: what is that?", "", "", H),
    ),
    "origin": (
        _c("Who [invented|created|started] {name}?", "who [invented|created] {name}", "Who created it?"),
        _c("When did {name} [start|begin]?", "when {name} started", "When did it start?"),
        _c("Where does {name} come from?", "where {name} comes from", "Where does it come from?", H),
        _c("What is the history of {name}?", "the history of {name}", "", H),
    ),
}

GRAMMARS = {"person": PERSON, "org": ORG, "town": TOWN, "thing": THING}

FRAMES = (
    Frame("direct", "{q}"),
    Frame("direct", "Quick question: {q}"),
    Frame("direct", "{q} Thanks."),
    Frame("direct", "Question: {q}"),
    Frame("direct", "{q} I'm curious.", H),
    Frame("direct", "One thing I'd like to check: {q}", H),
    Frame("embedded", "Do you know {q}?"),
    Frame("embedded", "Can you tell me {q}?"),
    Frame("embedded", "I'd like to know {q}."),
    Frame("embedded", "Please find out {q}."),
    Frame("embedded", "Tell me {q}, please."),
    Frame("embedded", "I want to know {q}."),
    Frame("embedded", "Could you look up {q}?", H),
    Frame("embedded", "Would you happen to know {q}?", H),
    Frame("embedded", "I'm trying to find out {q}.", H),
    Frame("topic", "About {name}: {q}"),
    Frame("topic", "I have a question about {name}. {q}"),
    Frame("topic", "{name}. {q}"),
    Frame("topic", "Let's talk about {name}. {q}", H),
    Frame("topic", "Regarding {name}: {q}", H),
)

_CHOICE = re.compile(r"\[([^\]]*)\]")


def forms(text: str) -> list[str]:
    """Every surface form of a text with [a|b] choices, in order."""
    parts = _CHOICE.split(text)  # literal, choice, literal, choice, ...
    options = [p.split("|") if i % 2 else [p] for i, p in enumerate(parts)]
    return ["".join(combo) for combo in itertools.product(*options)]


class Shape(NamedTuple):
    core: Core
    frame: Frame

    @property
    def heldout(self) -> bool:
        return self.core.heldout or self.frame.heldout


def shapes(kind: str, attribute: str, heldout: bool) -> list[Shape]:
    """Every (core, frame) pair of the training grammar, or of the held-out one."""
    out = []
    for core in GRAMMARS[kind][attribute]:
        for frame in FRAMES:
            part = getattr(core, frame.form)
            shape = Shape(core, frame)
            if part and shape.heldout == heldout:
                out.append(shape)
    return out


def _capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]


def compose(shape: Shape, name: str, rng: random.Random) -> str:
    """A question of this shape about `name` (a person's or town's name; "the X" for an
    organisation), its synonyms drawn by `rng`."""
    part = rng.choice(forms(getattr(shape.core, shape.frame.form)))
    if shape.frame.form == "topic":
        return _capitalised(shape.frame.text.format(name=name, q=part))
    return _capitalised(shape.frame.text.format(q=part.format(name=name)))


def question(kind: str, attribute: str, name: str, rng: random.Random, heldout: bool = False) -> str:
    """A question about `name`'s `attribute` from the training grammar or the held-out one."""
    return compose(rng.choice(shapes(kind, attribute, heldout)), name, rng)


def skeleton(text: str, name: str) -> str:
    """The question with the name taken out: what stays the same whoever is asked about."""
    return text.replace(name, "{name}")
