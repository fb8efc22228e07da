"""The SFT conversations crawl2chat writes itself: seeded, reproducible, split for evaluation.

Each `Source` builds one kind of conversation from what the crawl says (its `facts` dataset),
the real search index, the real calculator and the base model's knowledge probe:

- facts_search: a question about a person, an organisation or a town; the assistant
  searches (<|search_start|> name <|search_end|>), reads the real results and answers from
  them. Trained only where the results state the answer, so every trained answer is
  grounded in what the model sees.
- facts_memory: the same questions with the search tool failing (what the engine returns
  when no index is loaded). The answer is what the knowledge probe found (probe.py): the
  fact where the base model consistently knew it, "I'm sorry, I don't believe I know."
  where it consistently did not (Llama 3's recipe), nothing where it was unsure.
- unknown: the same questions about people who appear nowhere in the crawl. The search
  finds nothing ("no results"), or the tool fails; either way the answer is the refusal.
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
in training data), unknown names are held out by surname, every kind has held-out question
phrasings (templates.py), requests have held-out shapes (requests.py), and math problems
are held out by seed. `val` is a hashed share
of the training items (a loss to watch, same distribution); `test` holds the held-out
entities asked with the held-out phrasings: the evaluation set (tasks/evaluate.py).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from models.tools import SearchIndex, ToolError, calculate, format_passages
from tasks import lake, mathgen
from tasks.sft import documents as D
from tasks.sft import requests as R
from tasks.sft import surface
from tasks.sft import templates as T
from tasks.sft.answers import REFUSAL_HARMFUL, REFUSAL_IDK, REFUSAL_PRIVATE, format_answer, mentions
from tasks.sft.schema import row
from tasks.world import UNKNOWN_FIRST_NAMES, UNKNOWN_SURNAMES

# What the engine forces after a search call when it has no index (models/engine.py): the
# "search off" condition. tests/test_sft_generate.py pins it against the real engine.
SEARCH_OFF = "error: no search index is loaded"
SPLITS = ("train", "val", "test")


def fraction(*keys: object) -> float:
    """A number in [0, 1) fixed by the keys: how every split here is decided."""
    digest = hashlib.blake2b("\x1f".join(map(str, keys)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


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
            try:
                self._cache[query] = format_passages(
                    self.index.search(query, k=self.results, max_chars=self.chars), self.chars
                )
            except ToolError as exc:
                self._cache[query] = f"error: {exc}"
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


def facts_search(ctx: Context) -> Iterator[Item]:
    """Search, then answer from the results (training: only where they state the answer)."""
    per_fact = ctx.counts.get("facts_search", 2)
    for split in ("train", "test"):
        for entity, attribute, kind in _facts(ctx, split):
            rng = ctx.rng("facts_search", entity.id, attribute)
            query = query_for(entity.kind, entity.name)
            result = ctx.search(query)
            grounded = all(mentions(result, v) for v in fact_values(entity, attribute))
            phrasings = kind.test if split == "test" else kind.train
            chosen = (
                [rng.choice(phrasings)] if split == "test" else rng.sample(phrasings, min(per_fact, len(phrasings)))
            )
            for question in chosen:
                if split == "train" and not grounded:
                    continue  # nothing in the results to ground an answer in
                question = question.format(name=entity.name)
                meta = _fact_meta(entity, attribute, query=query, retrievable=grounded, template=question)
                yield split, tool_turn(question, "search", query, result, answer_text(entity, attribute)), meta


def facts_memory(ctx: Context) -> Iterator[Item]:
    """The search tool fails: answer what the base model knew, refuse what it did not."""
    for entity, attribute, kind in _facts(ctx, "train"):
        verdict = ctx.probe.get((entity.id, attribute), "unsure")
        if verdict == "unsure":
            continue
        rng = ctx.rng("facts_memory", entity.id, attribute)
        question = rng.choice(kind.train).format(name=entity.name)
        reply = answer_text(entity, attribute) if verdict == "known" else REFUSAL_IDK
        meta = _fact_meta(entity, attribute, probe=verdict, template=question)
        yield "train", tool_turn(question, "search", query_for(entity.kind, entity.name), SEARCH_OFF, reply), meta


def unknown(ctx: Context) -> Iterator[Item]:
    """People nobody wrote about: search finds nothing (or fails) and the assistant says so.

    Training asks about the training half of tasks/world.py's unused names and, as often,
    about invented names, so that writing the query means copying the name from the
    question; the test split asks about the held-out names. Every name is checked against
    the crawl's own search index and skipped where the crawl mentions it."""
    for split in ("train", "test"):
        names = unknown_people(split)
        n = ctx.counts.get("unknown", 200) if split == "train" else len(names)
        rng = ctx.rng("unknown", split)
        for i in range(n):
            name = names[i] if split == "test" else names[(i // 2) % len(names)] if i % 2 == 0 else invented_name(rng)
            query = query_for("person", name)
            if not D.absent_from(ctx.search(query), name):
                continue  # the crawl mentions this name: not an unknown person here
            attribute = rng.choice(sorted(T.PERSON))
            phrasings = T.PERSON[attribute].test if split == "test" else T.PERSON[attribute].train
            question = rng.choice(phrasings).format(name=name)
            # Training: one in four with the tool failing (the refusal holds either way).
            result = SEARCH_OFF if split == "train" and rng.random() < 0.25 else ctx.search(query)
            meta = {"kind": "unknown", "name": name, "attribute": attribute, "template": question}
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


def math(ctx: Context) -> Iterator[Item]:
    """Word problems; the test split is problems of other seeds (the same ten templates),
    minus any that happen to repeat a training question."""
    seen: set[str] = set()
    for split, n in (("train", ctx.counts.get("math", 400)), ("test", ctx.counts.get("math_test", 100))):
        for i in range(n):
            difficulty = ctx.math_difficulty[i % len(ctx.math_difficulty)]
            problem = mathgen.make_problem(f"sft:{ctx.seed}:{split}:{i}", difficulty)
            if split == "test" and problem.question in seen:
                continue
            seen.add(problem.question)
            meta = {"kind": "math", "answer": problem.answer, "template": problem.template, "difficulty": difficulty}
            yield split, _math_messages(problem), meta


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
        difficulty = ctx.math_difficulty[i % len(ctx.math_difficulty)]
        problem = mathgen.make_problem(f"sft:{ctx.seed}:train:{i}", difficulty)
        meta = {
            "kind": "math",
            "answer": problem.answer,
            "template": problem.template,
            "difficulty": difficulty,
            "tool": "python",
        }
        yield "train", _code_messages(problem), meta


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
    """Names repeated back: invented ones, and new pairings of the crawl's first names and
    surnames (no such person exists), so that after the first name the model must copy the
    surname from the question rather than recall the one it has read most often."""
    people = [e.name.split(" ", 1) for e in ctx.entities.values() if e.kind == "person" and ctx.split_of(e) == "train"]
    real = {e.name for e in ctx.entities.values()}
    rng = ctx.rng("echo")
    for i in range(ctx.counts.get("echo", 2000)):
        name = invented_name(rng)
        if people and i % 2:
            paired = f"{rng.choice(people)[0]} {rng.choice(people)[1]}"
            name = paired if paired not in real else name
        question = rng.choice(T.ECHO[0]).format(name=name)
        yield "train", plain_turn(question, name), {"kind": "echo", "template": question}


# -- questions from the crawl's own documents (documents.py) ----------------------------------


def doc_split(ctx: Context, definition: D.Definition) -> str:
    return "test" if fraction("doc", ctx.seed, definition.doc_id) < ctx.test_fraction else "train"


def _doc_meta(d: D.Definition, **extra: Any) -> dict[str, Any]:
    return {"kind": "doc", "answer": d.sentence, "subject": d.subject, "doc": d.doc_id, "url": d.url, **extra}


def doc_questions(ctx: Context) -> Iterator[Item]:
    """What a document defines, asked; the assistant searches and answers with the document's
    sentence. Trained only where the results hold that sentence's predicate; the held-out
    documents' questions are all kept (the evaluation's answerable items)."""
    per_definition = ctx.counts.get("doc_questions", 2)
    for d in ctx.definitions:
        split = doc_split(ctx, d)
        result = ctx.search(d.subject)
        grounded = mentions(result, d.key)
        if split == "train" and not grounded:
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
                tool_turn(question, "search", d.subject, result, d.sentence),
                _doc_meta(d, retrievable=grounded, template=question),
            )


def doc_memory(ctx: Context) -> Iterator[Item]:
    """The search tool fails: the definition where the base model knew it (probe.py), "I don't
    know" where it did not, nothing where it was unsure."""
    for d in ctx.definitions:
        verdict = ctx.probe.get((d.id, "definition"), "unsure")
        if doc_split(ctx, d) != "train" or verdict == "unsure":
            continue
        question = ctx.rng("doc_memory", d.id).choice(D.questions(d, False)).format(x=d.subject, be=d.be)
        reply = d.sentence if verdict == "known" else REFUSAL_IDK
        yield (
            "train",
            tool_turn(question, "search", d.subject, SEARCH_OFF, reply),
            _doc_meta(d, probe=verdict, template=question),
        )


def doc_unknown(ctx: Context) -> Iterator[Item]:
    """Invented terms asked like the documents' subjects and topics. Each is searched in the
    crawl's own index and kept only where the results show none of its words: verified unknown
    here. Training asks at most as many as the answerable questions (doc_questions' phrasings
    per training definition), so the model learns "not in what I read", not "refuse"."""
    answerable = ctx.counts.get("doc_questions", 2) * sum(doc_split(ctx, d) == "train" for d in ctx.definitions)
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
            term = D.invented_term(rng)
            result = ctx.search(term)
            if not D.absent_from(result, term):
                continue
            forms = D.QUESTIONS if rng.random() < 0.5 else D.TOPIC_QUESTIONS
            question = rng.choice(forms[split == "test"]).format(x=term, be="is")
            if split == "train" and rng.random() < 0.25:  # the refusal holds when the tool fails too
                result = SEARCH_OFF
            kept += 1
            yield (
                split,
                tool_turn(question, "search", term, result, REFUSAL_IDK),
                {"kind": "doc_unknown", "name": term, "verified": True, "template": question},
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
