"""The SFT conversations crawl2chat writes itself: seeded, reproducible, split for evaluation.

Each `Source` builds one kind of conversation from what the crawl says (its `facts` dataset),
the real search index, the real calculator and the base model's knowledge probe:

- facts_search: a question about a person, an organisation or a town, composed by the
  grammar of questions.py; the assistant searches (<|search_start|> name <|search_end|>,
  the name in the question's own tokens), reads the real results and answers from them.
  Trained only where the results state the answer, so every trained answer is grounded in
  what the model sees (a span of the passages, copied into a fixed frame).
- facts_memory: the same questions with the search tool failing (what the engine returns
  when no index is loaded). The answer is what the knowledge probe found (probe.py): the
  fact where the base model consistently knew it, "I'm sorry, I don't believe I know."
  where it consistently did not (Llama 3's recipe), nothing where it was unsure.
- unknown: the same questions about people, towns, organisations and things that appear
  nowhere in the crawl (checked in its index). The search finds nothing about them ("no
  results", or passages about others), or the tool fails; either way the answer is the refusal.
- math: word problems (tasks/mathgen.py) solved step by step, every step's arithmetic
  through the calculator (<|calc_start|> 3 * 4 <|calc_end|>, the real result forced after
  it), ending with "Answer: N" (tasks/sft/answers.py). arithmetic: bare sums the same way.
- code_math: the same training problems solved by one short program through the code tool
  (<|python_start|> a = 3 * 4 ... <|python_end|>, its output forced after it), then "Answer: N".
- harmful and private-data requests composed from grammars of request shapes (requests.py:
  short refusals), each with a benign twin of the same shape (a plain answer, or a public
  detail answered from a search); identity, professions (what the encyclopedia says each
  profession does).

Splits are decided by hashes, never by position, so they are stable under any count:
people, organisations and towns are held out whole (`test_fraction` of them never appear
in training data), unknown names are held out by surname (people), town name (towns and
organisations) or invented word (things), questions about entities have held-out shapes
(questions.py), requests have held-out shapes (requests.py), the other kinds held-out phrasings
(templates.py), and math problems are held out by seed and by whole family (tasks/mathgen.py's
HELDOUT_FAMILIES). `val` is a hashed share of the training items (a loss to watch, same
distribution); `test` holds the held-out entities, problems and requests, asked in the training
grammar and, meta "heldout": true, in the held-out one: the evaluation set (tasks/evaluate.py).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from models import lake
from models.engine import run_tool
from models.hashing import unit
from models.tools import MAX_RESULTS, SearchIndex, calculate
from tasks import mathgen
from tasks.sft import documents as D
from tasks.sft import questions as Q
from tasks.sft import requests as R
from tasks.sft import surface
from tasks.sft import templates as T
from tasks.sft.answers import REFUSAL_HARMFUL, REFUSAL_IDK, REFUSAL_PRIVATE, format_answer, mentions
from tasks.sft.schema import row
from tasks.world import ORG_KINDS, TOWN_NAMES, UNKNOWN_FIRST_NAMES, UNKNOWN_SURNAMES

# What the engine forces after a search call when it has no index: the "search off" condition.
SEARCH_OFF = run_tool("search", "", None).result
SPLITS = ("train", "val", "test")


def fraction(*keys: object) -> float:
    """A number in [0, 1) fixed by the keys: how every split here is decided."""
    return unit("\x1f".join(map(str, keys)))


def article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


# -- what the crawl says --------------------------------------------------------------------


@dataclass
class Entity:
    id: str
    kind: str  # person, org, town
    name: str
    facts: dict[str, str] = field(default_factory=dict)


def entities_from_facts(rows: Iterator[dict[str, str]]) -> dict[str, Entity]:
    """Entities and their facts from rows of the crawl's `facts` dataset (one row per page
    that states a fact: the same fact comes several times, always with the same value)."""
    out: dict[str, Entity] = {}
    for r in rows:
        kind = r["entity_id"].split("-", 1)[0]
        if kind not in T.QUERY:
            continue
        entity = out.setdefault(r["entity_id"], Entity(r["entity_id"], kind, r["name"]))
        entity.facts[r["attribute"]] = r["value"]
    return dict(sorted(out.items()))


def load_entities(facts: str) -> dict[str, Entity]:
    """The entities of a crawl's `facts` dataset (a lake URI)."""
    columns = ["entity_id", "name", "attribute", "value"]
    return entities_from_facts(r for batch in lake.iter_batches(facts, columns=columns) for r in batch.to_pylist())


def kinds_of(entity: Entity) -> dict[str, T.FactKind]:
    table = {"person": T.PERSON, "org": T.ORG, "town": T.TOWN}[entity.kind]
    out = {a: k for a, k in table.items() if a in entity.facts}
    if entity.kind == "person" and {"profession", "birthplace"} <= entity.facts.keys():
        out["who"] = T.PERSON["who"]
    return out


def fact_values(entity: Entity, attribute: str) -> list[str]:
    """What a correct answer must state."""
    if attribute == "who":
        return [entity.facts["profession"], entity.facts["birthplace"]]
    return [entity.facts[attribute]]


def answer_text(entity: Entity, attribute: str) -> str:
    kind = kinds_of(entity)[attribute]
    if attribute == "who":
        prof = entity.facts["profession"]
        return kind.answer.format(A=article(prof).capitalize(), profession=prof, birthplace=entity.facts["birthplace"])
    value = entity.facts[attribute]
    return kind.answer.format(value=value, a=article(value), A=article(value).capitalize())


def query_for(kind: str, name: str) -> str:
    return T.QUERY[kind].format(name=name)


def doc_query(subject: str) -> str:
    """What the model searches for a document's subject: after a space, as the question spells
    it (T.QUERY says why); the pointer that opens a query points at the question's tokens."""
    return f" {subject}"


def asked(kind: str, name: str) -> str:
    """How a question names an entity: "the Ashby Public Library" for an organisation or a thing."""
    return f"the {name}" if kind in ("org", "thing") else name


def entity_split(entity_id: str, seed: int, test_fraction: float) -> str:
    return "test" if fraction("entity", seed, entity_id) < test_fraction else "train"


def unknown_people(split: str) -> list[str]:
    """Names that appear nowhere in the crawl (tasks/world.py's unused pools); the test
    split has its own surnames, so no held-out name shares a word with a trained one."""
    surnames = sorted(UNKNOWN_SURNAMES)[(split == "test") :: 2]
    return [f"{first} {last}" for last in surnames for first in sorted(UNKNOWN_FIRST_NAMES)]


_ONSETS = "b br c d dr f g gr h j k kl l m n p pr r s st t tr v w z".split()
_VOWELS = "a e i o u ai ei ou ia".split()
_CODAS = ("", "", "n", "r", "l", "s", "m", "th", "k")


def invented_name(rng: random.Random) -> str:
    """A made-up name of random syllables ("Draiveth Kloumar"): endless fresh names, so the
    model can only learn to copy a name into its query, never to recall one."""

    def word() -> str:
        return (
            "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(rng.randint(2, 3))) + rng.choice(_CODAS)
        ).capitalize()

    return f"{word()} {word()}"


# -- the tools, exactly as the engine runs them ----------------------------------------------


class SearchTool:
    """The search result text the engine would force for a query (models/engine.py: the
    same index, k and character budget), cached: many questions share a query."""

    def __init__(self, index: SearchIndex, results: int, chars: int):
        self.index, self.results, self.chars = index, results, chars
        self._cache: dict[str, str] = {}

    def __call__(self, query: str) -> str:
        if query not in self._cache:
            self._cache[query] = run_tool("search", query, self.index, self.results, self.chars).result
        return self._cache[query]


def tool_turn(question: str, tool: str, argument: str, result: str, reply: str) -> list[dict[str, Any]]:
    return [
        {"role": "user", "content": question},
        {"role": "assistant", "content": "", "tool_calls": [{"name": tool, "arguments": argument}]},
        {"role": "tool", "content": result},
        {"role": "assistant", "content": reply},
    ]


def plain_turn(question: str, reply: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": question}, {"role": "assistant", "content": reply}]


# -- sources ---------------------------------------------------------------------------------


@dataclass
class Context:
    """Everything a source may read. `probe` maps (entity_id, attribute) to the probe's
    verdict ("known", "unknown", "unsure")."""

    seed: int
    test_fraction: float
    entities: dict[str, Entity]
    search: SearchTool | None = None
    probe: dict[tuple[str, str], str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    math_difficulty: tuple[int, ...] = (1, 2)
    definitions: list[D.Definition] = field(default_factory=list)  # what the crawl's documents define

    def rng(self, *keys: object) -> random.Random:
        return random.Random(f"{self.seed}:" + ":".join(map(str, keys)))

    def split_of(self, entity: Entity) -> str:
        return entity_split(entity.id, self.seed, self.test_fraction)


Item = tuple[str, list[dict[str, Any]], dict[str, Any]]  # (split, messages, meta)


def _facts(ctx: Context, split: str) -> Iterator[tuple[Entity, str, T.FactKind]]:
    for entity in ctx.entities.values():
        if ctx.split_of(entity) == split:
            for attribute, kind in kinds_of(entity).items():
                yield entity, attribute, kind


def _fact_meta(entity: Entity, attribute: str, **extra: Any) -> dict[str, Any]:
    return {
        "kind": "fact",
        "entity": entity.id,
        "entity_kind": entity.kind,
        "name": entity.name,
        "attribute": attribute,
        "answer": fact_values(entity, attribute),
        **extra,
    }


def _question(entity: Entity, attribute: str, rng: random.Random, heldout: bool) -> tuple[str, dict[str, Any]]:
    """A question about an entity's attribute from the grammar (questions.py), and its meta."""
    shape = rng.choice(Q.shapes(entity.kind, attribute, heldout))
    name = asked(entity.kind, entity.name)
    text = Q.compose(shape, name, rng)
    return text, {"template": Q.skeleton(text, name), "heldout": heldout}


def facts_search(ctx: Context) -> Iterator[Item]:
    """Search, then answer from the results (training: only where they state the answer).

    Training asks `counts["facts_search"]` questions per fact in the training grammar; the
    test split asks every held-out fact twice: once in the training grammar, once in the
    held-out one (meta "heldout": true)."""
    per_fact = ctx.counts.get("facts_search", 2)
    for split in ("train", "test"):
        for entity, attribute, _ in _facts(ctx, split):
            rng = ctx.rng("facts_search", entity.id, attribute)
            query = query_for(entity.kind, entity.name)
            result = ctx.search(query)
            grounded = all(mentions(result, v) for v in fact_values(entity, attribute))
            if split == "train" and not grounded:
                continue  # nothing in the results to ground an answer in
            asks = [False] * per_fact if split == "train" else [False, True]
            for heldout in asks:
                question, shape = _question(entity, attribute, rng, heldout)
                meta = _fact_meta(entity, attribute, query=query, retrievable=grounded, **shape)
                yield split, tool_turn(question, "search", query, result, answer_text(entity, attribute)), meta


def facts_memory(ctx: Context) -> Iterator[Item]:
    """The search tool fails: answer what the base model knew, refuse what it did not."""
    for entity, attribute, _ in _facts(ctx, "train"):
        verdict = ctx.probe.get((entity.id, attribute), "unsure")
        if verdict == "unsure":
            continue
        question, shape = _question(entity, attribute, ctx.rng("facts_memory", entity.id, attribute), False)
        reply = answer_text(entity, attribute) if verdict == "known" else REFUSAL_IDK
        meta = _fact_meta(entity, attribute, probe=verdict, **shape)
        yield "train", tool_turn(question, "search", query_for(entity.kind, entity.name), SEARCH_OFF, reply), meta


THING_KINDS = ("Festival", "Prize", "Engine", "Cheese", "Dance", "Method", "Lamp", "Cipher", "Regatta", "Fund")
# The share of each kind among unknown entities: people most, as users ask about people most.
UNKNOWN_KINDS = (("person", 0.5), ("town", 0.15), ("org", 0.15), ("thing", 0.2))


def unknown_entity(kind: str, split: str, rng: random.Random, people: list[list[str]]) -> tuple[str, str]:
    """(name, distinctive word(s)) of an entity of `kind` nobody wrote about, drawn for `split`.

    People: tasks/world.py's unused pools (the test split has its own surnames); in training
    also invented names, and new pairings of the training people's first names and surnames
    (`people`): "Harald Ibsen", where the crawl knows a Harald Hale and a Berit Ibsen. A model
    that writes a name it has memorised instead of the one asked finds them; only copying the
    name finds nothing, so these teach the query to be a copy. Towns: the crawl's own naming
    (head + tail: "Cinderholm"), by a hash of the name per split; organisations: such a town's
    name and an organisation kind ("Cinderholm Observatory"); things: an invented word and
    what it is ("the Kloumar Regatta")."""
    if kind == "person":
        draw = rng.random() if split == "train" else 1.0
        if draw < 1 / 3:
            name = invented_name(rng)
        elif draw < 2 / 3 and people:
            name = f"{rng.choice(people)[0]} {rng.choice(people)[1]}"
        else:
            name = rng.choice(unknown_people(split))
        return name, name
    if kind == "thing":
        word = invented_name(rng).split()[0]
        return f"{word} {rng.choice(THING_KINDS)}", word
    towns = [t for t in TOWN_NAMES if (fraction("unknown-town", t) < 0.3) == (split == "test")]
    town = rng.choice(towns)
    if kind == "town":
        return town, town
    return f"{town} {rng.choice(ORG_KINDS)[0]}", town


def _absent(ctx: Context, query: str, name: str, distinctive: str) -> bool:
    """Whether the crawl's index knows nothing of `name`: no word of `distinctive` in the
    results for the query or for those words alone, and (a pairing of known words) the name
    itself in none of the best passages for it."""
    if distinctive != name:
        return D.absent_from(ctx.search(query), distinctive) and D.absent_from(ctx.search(distinctive), distinctive)
    if D.absent_from(ctx.search(query), name):
        return True
    hits = ctx.search.index.search(name, k=MAX_RESULTS, max_chars=8000)  # whole passages (passage_chars <= 8000)
    return not any(mentions(f"{p.title}: {p.text}", name) for p in hits)


def unknown(ctx: Context) -> Iterator[Item]:
    """People, towns, organisations and things nobody wrote about: search finds nothing about
    them (no results, or passages about others) and the assistant says it does not know.

    Each name is checked against the crawl's own search index, for the query and for its
    distinctive words alone, and skipped where the crawl mentions it. Training asks in the
    training grammar (and one in four with the tool failing: the refusal holds either way);
    the test split asks its own names, half in the training grammar, half in the held-out
    one (meta "heldout": true)."""
    kinds = [k for k, _ in UNKNOWN_KINDS]
    weights = [w for _, w in UNKNOWN_KINDS]
    people = [e.name.split(" ", 1) for e in ctx.entities.values() if e.kind == "person" and ctx.split_of(e) == "train"]
    for split in ("train", "test"):
        n = ctx.counts.get("unknown", 200) if split == "train" else ctx.counts.get("unknown_test", 120)
        rng = ctx.rng("unknown", split)
        kept = tries = 0
        while kept < n and tries < 4 * n:
            tries += 1
            kind = rng.choices(kinds, weights)[0]
            name, distinctive = unknown_entity(kind, split, rng, people)
            query = query_for(kind, name)
            if not _absent(ctx, query, name, distinctive):
                continue  # the crawl mentions this name: not unknown here
            found = ctx.search(query)
            heldout = split == "test" and kept % 2 == 1
            attribute = rng.choice(sorted(Q.GRAMMARS[kind]))
            shape = rng.choice(Q.shapes(kind, attribute, heldout))
            named = asked(kind, name)
            question = Q.compose(shape, named, rng)
            result = SEARCH_OFF if split == "train" and rng.random() < 0.25 else found
            kept += 1
            meta = {
                "kind": "unknown",
                "entity_kind": kind,
                "name": name,
                "term": distinctive,  # the word(s) checked absent from the index
                "attribute": attribute,
                "template": Q.skeleton(question, named),
                "heldout": heldout,
                "verified": True,
            }
            yield split, tool_turn(question, "search", query, result, REFUSAL_IDK), meta


def _math_messages(problem: mathgen.Problem) -> list[dict[str, Any]]:
    """Each step: the calculator call, its real output, then the step's sentence (which
    restates the value the calculator gave); then "Answer: N"."""
    messages: list[dict[str, Any]] = [{"role": "user", "content": problem.question}]
    text = ""
    for step in problem.steps:
        output = calculate(step.expression)
        if output != str(step.value):
            raise AssertionError(f"mathgen step {step.expression} = {step.value}, the calculator says {output}")
        messages += [
            {
                "role": "assistant",
                "content": text,
                "tool_calls": [{"name": "calculator", "arguments": step.expression}],
            },
            {"role": "tool", "content": output},
        ]
        text = f" {step.text}\n"
    messages.append({"role": "assistant", "content": f"{text}{format_answer(problem.answer)}"})
    return messages


def _math_meta(problem: mathgen.Problem, **extra: Any) -> dict[str, Any]:
    meta = {"kind": "math", "answer": problem.answer, "template": problem.family, "difficulty": problem.difficulty}
    return {**meta, "heldout": True, **extra} if problem.heldout else {**meta, **extra}


def _training_problem(ctx: Context, i: int) -> mathgen.Problem:
    """Training problem i: a training family, numbers written as users write them."""
    return mathgen.make_problem(
        f"sft:{ctx.seed}:train:{i}", ctx.math_difficulty[i % len(ctx.math_difficulty)], words=None
    )


def math(ctx: Context) -> Iterator[Item]:
    """Word problems of the training families (mathgen.TRAIN_FAMILIES); the test split has
    problems of other seeds from the same families, minus any that repeat a training
    question, and (`math_heldout`) problems of the held-out families, which no training set
    draws from, marked `heldout: true`."""
    seen: set[str] = set()
    for i in range(ctx.counts.get("math", 400)):
        problem = _training_problem(ctx, i)
        seen.add(problem.question)
        yield "train", _math_messages(problem), _math_meta(problem)
    difficulties = ctx.math_difficulty
    for i in range(ctx.counts.get("math_test", 100)):
        problem = mathgen.make_problem(f"sft:{ctx.seed}:test:{i}", difficulties[i % len(difficulties)], words=None)
        if problem.question not in seen:
            yield "test", _math_messages(problem), _math_meta(problem)
    for i in range(ctx.counts.get("math_heldout", 100)):
        family = mathgen.HELDOUT_FAMILIES[i % len(mathgen.HELDOUT_FAMILIES)]
        difficulty = difficulties[(i // len(mathgen.HELDOUT_FAMILIES)) % len(difficulties)]
        problem = mathgen.make_problem(f"sft:{ctx.seed}:heldout:{i}", difficulty, family, words=None)
        yield "test", _math_messages(problem), _math_meta(problem)


def _code_messages(problem: mathgen.Problem) -> list[dict[str, Any]]:
    """One code-tool call: the problem's program (`Problem.program`), what the sandbox shows
    for it (the last line's value, the answer: tests/test_sft_generate.py runs every
    template's program in the real sandbox and checks), then "Answer: N"."""
    return tool_turn(problem.question, "python", problem.program(), str(problem.answer), format_answer(problem.answer))


def code_math(ctx: Context) -> Iterator[Item]:
    """The training problems of `math` (the same seeds, so the same questions and no new
    overlap with its test split), solved by writing a short program and reading its output.
    No test split of its own: the evaluation asks `math`'s held-out problems with the code
    tool, with the calculator and with neither (tasks/evaluate.py)."""
    for i in range(ctx.counts.get("code_math", 400)):
        problem = _training_problem(ctx, i)
        yield "train", _code_messages(problem), _math_meta(problem, tool="python")


def arithmetic(ctx: Context) -> Iterator[Item]:
    ops = (("+", "plus"), ("-", "minus"), ("*", "times"))
    seen: set[str] = set()
    for split, n in (("train", ctx.counts.get("arithmetic", 150)), ("test", ctx.counts.get("arithmetic_test", 30))):
        rng = ctx.rng("arithmetic", split)
        phrasings = T.ARITHMETIC[split == "test"]
        for _ in range(n):
            symbol, word = rng.choice(ops)
            a, b = rng.randint(2, 999), rng.randint(2, 99 if symbol == "*" else 999)
            expression = f"{a} {symbol} {b}"
            if split == "test" and expression in seen:
                continue
            seen.add(expression)
            value = calculate(expression)
            question = rng.choice(phrasings).format(a=a, b=b, op=rng.choice((symbol, word)))
            reply = f"{a} {symbol} {b} = {value}.\n{format_answer(int(value))}"
            meta = {"kind": "math", "answer": int(value), "template": "arithmetic"}
            yield split, tool_turn(question, "calculator", expression, value, reply), meta


# -- requests to decline, and their benign twins (requests.py) -------------------------------


def _request_draws(ctx: Context, family: str, shapes: tuple[R.Shape, ...], count: str) -> Iterator[tuple]:
    """(split, heldout, i, shape, skeleton): `counts[count]` training draws of the training
    shapes, then for the test split `refusal_test` draws of the training shapes (new wordings
    of the trained shapes: in-distribution) and as many of the held-out shapes. Keyed by
    family and position only, so a request and its benign twin get the same skeleton."""
    n_test = ctx.counts.get("refusal_test", 40)
    for split, heldout, n in (
        ("train", False, ctx.counts.get(count, 300)),
        ("test", False, n_test),
        ("test", True, n_test),
    ):
        for i in range(n):
            shape, skeleton = R.draw(shapes, heldout, ctx.rng("request-shape", family, split, heldout, i))
            yield split, heldout, i, shape, skeleton


def _request_meta(kind: str, shape: R.Shape, skeleton: str, heldout: bool, question: str, **extra: Any) -> dict:
    return {"kind": kind, "shape": shape.name, "skeleton": skeleton, "heldout": heldout, "template": question, **extra}


def _new_in_test(split: str, question: str, seen: set[str]) -> bool:
    """Whether a row is kept: a test question never repeats a training one."""
    if split == "test" and question in seen:
        return False
    seen.add(question)
    return True


def harmful(ctx: Context) -> Iterator[Item]:
    """Requests for harm, in many shapes (requests.ACT_SHAPES x HARMFUL_ACTS): refused."""
    seen: set[str] = set()
    for split, heldout, i, shape, skeleton in _request_draws(ctx, "act", R.ACT_SHAPES, "harmful"):
        rng = ctx.rng("harmful", split, heldout, i)
        act = R.expand(rng.choice(R.HARMFUL_ACTS), rng)
        question = skeleton.format(act=act)
        if _new_in_test(split, question, seen):
            yield (
                split,
                plain_turn(question, REFUSAL_HARMFUL),
                _request_meta("harmful", shape, skeleton, heldout, question, act=act),
            )


def _private_names(ctx: Context, split: str) -> list[str]:
    people = [e.name for e in ctx.entities.values() if e.kind == "person" and ctx.split_of(e) == split]
    return people + unknown_people(split)[:: 7 if people else 1]


def private(ctx: Context) -> Iterator[Item]:
    """Requests for a person's private details (home address, phone, password, medical
    records, ...), in many shapes, about people of the crawl and people nobody wrote about
    (and, in training, invented names): refused."""
    names = {split: _private_names(ctx, split) for split in ("train", "test")}
    seen: set[str] = set()
    for split, heldout, i, shape, skeleton in _request_draws(ctx, "person", R.PERSON_SHAPES, "private"):
        rng = ctx.rng("private", split, heldout, i)
        name = invented_name(rng) if split == "train" and rng.random() < 0.25 else rng.choice(names[split])
        info = rng.choice(R.PRIVATE_INFO)
        question = skeleton.format(name=name, info=info)
        if _new_in_test(split, question, seen):
            meta = _request_meta("private", shape, skeleton, heldout, question, name=name, info=info)
            yield split, plain_turn(question, REFUSAL_PRIVATE), meta


def _public_details(ctx: Context, split: str) -> list[tuple[Entity, str, str]]:
    """What a private request's twin may ask: (entity, the detail's words, its fact attribute)
    for every public detail the crawl states of the split's people and organisations."""
    tables = {"person": R.PUBLIC_PERSON_INFO, "org": R.PUBLIC_ORG_INFO}
    return [
        (entity, info, attribute)
        for entity in ctx.entities.values()
        if ctx.split_of(entity) == split
        for info, attribute in tables.get(entity.kind, {}).items()
        if attribute in entity.facts
    ]


def benign(ctx: Context) -> Iterator[Item]:
    """The benign twin of every harmful and private request: the same shape and skeleton, a
    harmless object. Twins of harmful requests ask how to do something harmless (often with
    the same verb: "kill a stuck process") and get a plain answer; twins of private requests
    ask a public detail of a person or an organisation of the crawl (their employer, the
    museum's address) and are answered from a search, trained only where the results state it."""
    seen: set[str] = set()
    for split, heldout, i, shape, skeleton in _request_draws(ctx, "act", R.ACT_SHAPES, "harmful"):
        rng = ctx.rng("benign", split, heldout, i)
        pattern, answer = rng.choice(R.BENIGN_ACTS)
        act = R.expand(pattern, rng)
        question = skeleton.format(act=act)
        if _new_in_test(split, question, seen):
            meta = _request_meta("benign", shape, skeleton, heldout, question, act=act, twin_of="harmful")
            yield split, plain_turn(question, R.benign_reply(act, answer)), meta
    if ctx.search is None:
        return  # no search to answer a public detail from
    details = {split: _public_details(ctx, split) for split in ("train", "test")}
    for split, heldout, i, shape, skeleton in _request_draws(ctx, "person", R.PERSON_SHAPES, "private"):
        if not details[split]:
            continue  # no facts dataset (a crawl other than the sample's): no public details to ask
        entity, info, attribute = ctx.rng("benign-public", split, heldout, i).choice(details[split])
        shown = entity.name if entity.kind == "person" else f"the {entity.name}"
        question = skeleton.format(name=shown, info=info)
        query = query_for(entity.kind, entity.name)
        result = ctx.search(query)
        grounded = all(mentions(result, v) for v in fact_values(entity, attribute))
        if (split == "train" and not grounded) or not _new_in_test(split, question, seen):
            continue
        meta = {
            **_fact_meta(entity, attribute, query=query, retrievable=grounded),
            **_request_meta("benign", shape, skeleton, heldout, question, twin_of="private", info=info),
        }
        yield split, tool_turn(question, "search", query, result, answer_text(entity, attribute)), meta


def identity(ctx: Context) -> Iterator[Item]:
    rng = ctx.rng("identity")
    for split, pairs in (("train", T.IDENTITY[0]), ("test", T.IDENTITY[1])):
        n = ctx.counts.get("identity", 60) if split == "train" else len(pairs)
        for i in range(n):
            question, reply = pairs[i % len(pairs)] if split == "test" else rng.choice(pairs)
            yield split, plain_turn(question, reply), {"kind": "identity", "template": question}


def professions(ctx: Context) -> Iterator[Item]:
    """What each profession does, in the encyclopedia's words (its pages all say it)."""
    from tasks.sample_crawl.encyclopedia import WORK

    forms = {"p": "they", "P": "They", "poss": "their", "obj": "them"}
    for profession, sentences in sorted(WORK.items()):
        split = "test" if fraction("profession", ctx.seed, profession) < ctx.test_fraction else "train"
        first = sentences[0].format(**forms)
        reply = f"{article(profession).capitalize()} {profession}{first[len('They') :]}"
        rng = ctx.rng("professions", profession)
        for template in rng.sample(T.PROFESSION_QUESTIONS[split == "test"], 1 if split == "test" else 2):
            question = template.format(a=article(profession), profession=profession)
            yield (
                split,
                plain_turn(question, reply),
                {"kind": "profession", "answer": [profession], "template": question},
            )


def echo(ctx: Context) -> Iterator[Item]:
    """Names repeated back, one to four at a time: invented ones, and new pairings of the
    crawl's first names and surnames (no such person exists), so that after a first name the
    model must copy the surname from the question rather than recall the one it has read
    most often. Several names a row make most of the trained tokens copies (induction is
    what a search query needs, and a tiny model forms it slowly)."""
    people = [e.name.split(" ", 1) for e in ctx.entities.values() if e.kind == "person" and ctx.split_of(e) == "train"]
    real = {e.name for e in ctx.entities.values()}
    rng = ctx.rng("echo")
    for i in range(ctx.counts.get("echo", 2000)):
        names = []
        for j in range(rng.randint(1, 4)):
            name = invented_name(rng)
            if people and (i + j) % 2:
                paired = f"{rng.choice(people)[0]} {rng.choice(people)[1]}"
                name = paired if paired not in real else name
            names.append(name)
        said = ", ".join(names)
        question = rng.choice(T.ECHO[0]).format(name=said)
        meta = {"kind": "echo", "name": said, "template": question}
        yield "train", plain_turn(question, T.ECHO_REPLY.format(name=said)), meta


# -- questions from the crawl's own documents (documents.py) ----------------------------------


def doc_split(ctx: Context, definition: D.Definition) -> str:
    return "test" if fraction("doc", ctx.seed, definition.doc_id) < ctx.test_fraction else "train"


def _doc_meta(d: D.Definition, **extra: Any) -> dict[str, Any]:
    return {
        "kind": "doc",
        "answer": d.answer,
        "sentence": d.sentence,
        "subject": d.subject,
        "form": d.form,
        "doc": d.doc_id,
        "url": d.url,
        **extra,
    }


def doc_questions(ctx: Context) -> Iterator[Item]:
    """What a document defines or says, asked; the assistant searches the subject and answers
    with the head of the document's sentence, copied from the results. Kept only where the
    results hold that whole span, in training and in the held-out set alike: a question whose
    answer searching its subject cannot find tests retrieval luck, not answering from search."""
    per_definition = ctx.counts.get("doc_questions", 2)
    for d in ctx.definitions:
        split = doc_split(ctx, d)
        query = doc_query(d.subject)
        result = ctx.search(query)
        if not mentions(result, d.answer):
            continue
        rng = ctx.rng("doc_questions", d.id)
        phrasings = D.questions(d, split == "test")
        chosen = (
            [rng.choice(phrasings)] if split == "test" else rng.sample(phrasings, min(per_definition, len(phrasings)))
        )
        for template in chosen:
            question = template.format(x=d.subject, be=d.be)
            yield (
                split,
                tool_turn(question, "search", query, result, d.answer),
                _doc_meta(d, retrievable=True, template=question),
            )


def doc_memory(ctx: Context) -> Iterator[Item]:
    """The search tool fails: the definition where the base model knew it (probe.py), "I don't
    know" where it did not, nothing where it was unsure."""
    for d in ctx.definitions:
        verdict = ctx.probe.get((d.id, "definition"), "unsure")
        if doc_split(ctx, d) != "train" or verdict == "unsure":
            continue
        question = ctx.rng("doc_memory", d.id).choice(D.questions(d, False)).format(x=d.subject, be=d.be)
        reply = d.answer if verdict == "known" else REFUSAL_IDK
        yield (
            "train",
            tool_turn(question, "search", doc_query(d.subject), SEARCH_OFF, reply),
            _doc_meta(d, probe=verdict, template=question),
        )


def verified_unknown(ctx: Context, invented: D.Invented) -> str | None:
    """The results of searching an invented term, where the crawl's own index holds none of
    its invented words (each searched alone: the index matches any word it has); else None."""
    result = ctx.search(doc_query(invented.term))
    if not D.absent_from(result, " ".join(invented.new)):
        return None
    if any(not D.absent_from(ctx.search(word), word) for word in invented.new):
        return None
    return result


def doc_unknown(ctx: Context) -> Iterator[Item]:
    """Invented terms in many shapes, alone or inside the crawl's own words, asked in every
    form the answerable questions take. Each is kept only where the crawl's own index holds
    none of its invented words: verified unknown here. Training asks at most as many as
    doc_questions' training conversations, so the model learns "not in what I read", not
    "refuse"."""
    answerable = sum(split == "train" for split, _, _ in doc_questions(ctx))
    vocabulary = D.vocabulary_of([d.subject for d in ctx.definitions if doc_split(ctx, d) == "train"])
    seen: set[str] = set()
    for split in ("train", "test"):
        n = (
            min(ctx.counts.get("doc_unknown", 400), answerable)
            if split == "train"
            else ctx.counts.get("doc_unknown_test", 60)
        )
        rng = ctx.rng("doc_unknown", split)
        kept = tries = 0
        while kept < n and tries < 4 * n:
            tries += 1
            invented = D.invented_term(rng, vocabulary)
            if invented.term.lower() in seen:
                continue
            result = verified_unknown(ctx, invented)
            if result is None:
                continue
            seen.add(invented.term.lower())
            form = rng.choice(sorted(D.FORMS))
            question = rng.choice(D.FORMS[form][split == "test"]).format(x=invented.term, be="is")
            if split == "train" and rng.random() < 0.25:  # the refusal holds when the tool fails too
                result = SEARCH_OFF
            kept += 1
            yield (
                split,
                tool_turn(question, "search", doc_query(invented.term), result, REFUSAL_IDK),
                {"kind": "doc_unknown", "name": invented.term, "verified": True, "form": form, "template": question},
            )


SOURCES: dict[str, Callable[[Context], Iterator[Item]]] = {
    "facts_search": facts_search,
    "facts_memory": facts_memory,
    "unknown": unknown,
    "math": math,
    "code_math": code_math,
    "arithmetic": arithmetic,
    "private": private,
    "harmful": harmful,
    "benign": benign,
    "identity": identity,
    "professions": professions,
    "echo": echo,
    "doc_questions": doc_questions,
    "doc_memory": doc_memory,
    "doc_unknown": doc_unknown,
}
DOC_SOURCES = ("doc_questions", "doc_memory", "doc_unknown")


def copied_spans(messages: list[dict[str, Any]], meta: dict[str, Any]) -> list[str]:
    """What the assistant copies out of the question, which surface variation must leave as it
    is: every tool call's argument (a search query carries the entity's name), the entity name
    or subject the row is about, and any reply that repeats part of the question verbatim."""
    question = messages[0]["content"]
    spans = [call["arguments"] for m in messages for call in m.get("tool_calls") or []]
    spans += [meta[key] for key in ("name", "subject", "query") if isinstance(meta.get(key), str)]
    spans += [m["content"] for m in messages[1:] if m["role"] == "assistant" and m["content"].strip() in question]
    return [s for s in spans if s.strip()]


def with_surface(messages: list[dict[str, Any]], meta: dict[str, Any], rng: random.Random) -> tuple[list, dict]:
    """The row with its first user turn varied (surface.py), and `surface` in its meta naming
    the variations; meta["template"] keeps the clean question."""
    text, chosen = surface.vary(messages[0]["content"], rng, copied_spans(messages, meta), bool(meta.get("heldout")))
    return [{**messages[0], "content": text}, *messages[1:]], {**meta, "surface": chosen}


def generate(
    source: str, ctx: Context, val_fraction: float, surface_rate: float = 0.0
) -> dict[str, list[dict[str, Any]]]:
    """Rows of one source by split. Row ids are `{source}-{n:06d}` in generation order, so the
    same seed and inputs give identical rows; val is a hashed share of the training rows.
    A `surface_rate` share of the rows (every split, chosen by id) gets its user turn varied
    as people type (surface.py): greetings, context, typos, casing, spacing."""
    out: dict[str, list[dict[str, Any]]] = {s: [] for s in SPLITS}
    for n, (split, messages, meta) in enumerate(SOURCES[source](ctx)):
        rid = f"{source}-{n:06d}"
        if split == "train" and fraction("val", ctx.seed, rid) < val_fraction:
            split = "val"
        if messages and messages[0]["role"] == "user" and fraction("surface", ctx.seed, rid) < surface_rate:
            messages, meta = with_surface(messages, meta, ctx.rng("surface", rid))
        out[split].append(row(rid, source, messages, {**meta, "split": split}))
    return out
