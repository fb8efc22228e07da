"""Arithmetic word problems composed from grammars, with worked solutions and exact answers.

A *family* is a problem structure (its chain of operations on the quantities a story states)
with its own grammar: several sentence structures per fact, synonyms for every verb and noun,
numbers in digits or words, units, an optional distractor sentence (an irrelevant quantity),
the question first or last, and a few ways of asking. `make_problem(seed, difficulty, family)`
draws one problem: every quantity is chosen first and the story is written around it, so the
answer is exact by construction; `numbers` keeps the quantities the answer depends on, so a
test can recompute it independently.

Families are split in two (docs/sft.md, "Math data"):

- TRAIN_FAMILIES: what every training set draws from (SFT math and code_math, RL training,
  the sample crawl's worksheets);
- HELDOUT_FAMILIES: structures no training set ever draws from, asked only in evaluation.
  Each is a new story and a new chain built from operations training teaches (a product
  then a change, a single product, a single division, a product then a division), so a small
  model can solve them by composing what it learned, never by recalling a pattern.

`difficulty` (1-5) sets how large the numbers get and how many steps the chained families
take. `words=True` writes every number in words (a worksheet page); `words=False` in digits;
`words=None` spells some small numbers and varies money ("$12", "12 dollars"): what a user
types. Expressions stay in digits always, and the solution's sentences are in digits unless
`words=True`.
"""

from __future__ import annotations

import random
import re
import string
from collections.abc import Callable
from dataclasses import dataclass, field

MAX_DIFFICULTY = 5
# The largest base quantity at each difficulty; answers may be larger (products, totals).
SCALE = {1: 10, 2: 30, 3: 100, 4: 500, 5: 2000}

NAMES = (
    "Emily Jack Priya Mateo Aisha Noah Sofia Liam Chloe Omar Hana Lucas Zoe Ravi Maya Felix "
    "Amara Theo Lina Diego Nora Kofi Ines Sam Yuki Ben Leila Tom Ava Hugo"
).split()
ITEMS = (
    ("pencil", "pencils"),
    ("marble", "marbles"),
    ("sticker", "stickers"),
    ("card", "cards"),
    ("shell", "shells"),
    ("stamp", "stamps"),
    ("bead", "beads"),
    ("crayon", "crayons"),
    ("balloon", "balloons"),
    ("book", "books"),
    ("apple", "apples"),
    ("orange", "oranges"),
    ("egg", "eggs"),
    ("cookie", "cookies"),
    ("muffin", "muffins"),
    ("notebook", "notebooks"),
    ("marker", "markers"),
    ("toy car", "toy cars"),
)
CONTAINERS = (
    ("box", "boxes"),
    ("bag", "bags"),
    ("jar", "jars"),
    ("basket", "baskets"),
    ("crate", "crates"),
    ("pack", "packs"),
    ("tray", "trays"),
    ("tin", "tins"),
)
BAKES = (("loaf", "loaves"), ("muffin", "muffins"), ("bagel", "bagels"), ("pie", "pies"), ("cookie", "cookies"))
PLACES = ("bakery", "cafe", "market stall", "school kitchen", "corner shop", "shop", "canteen")
THINGS = ("bicycle", "guitar", "telescope", "tent", "camera", "keyboard", "scooter", "skateboard")
SALE_ITEMS = ("jacket", "lamp", "backpack", "board game", "pair of boots", "kettle", "watch", "rug")

_VARIABLES = string.ascii_lowercase  # a chained family has at most 1 + MAX_DIFFICULTY steps
_ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def spell(n: int) -> str:
    """An integer in English words: 42 -> "forty-two", 1305 -> "one thousand three hundred five"."""
    if n < 0:
        return "minus " + spell(-n)
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + (f"-{_ONES[ones]}" if ones else "")
    for size, name in ((10**9, "billion"), (10**6, "million"), (1000, "thousand"), (100, "hundred")):
        if n >= size:
            head, rest = divmod(n, size)
            return f"{spell(head)} {name}" + (f" {spell(rest)}" if rest else "")
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class Step:
    text: str
    expression: str  # arithmetic in digits and + - * / ( ), e.g. "(13 - 2 * 2) / 3"
    value: int


@dataclass(frozen=True)
class Problem:
    family: str
    difficulty: int
    question: str
    steps: tuple[Step, ...]
    answer: int
    unit: str  # what the answer counts: "dollars", "loaves", "km", ...
    numbers: dict[str, int] = field(default_factory=dict)

    @property
    def heldout(self) -> bool:
        return self.family in HELDOUT_FAMILIES

    def program(self) -> str:
        """The solution as a short Python program for the code tool: one variable per step
        (a, b, c, ...), each step's expression with the values of earlier steps written as
        their variables, `//` for division (every division here is exact, so the values
        stay integers), and the last variable alone on the last line: the code tool shows
        its value, which is the answer. Only earlier steps' values are replaced, so a number
        the question states that happens to equal one is still the same number."""
        lines: list[str] = []
        known: dict[int, str] = {}  # value -> the latest variable holding it
        for i, step in enumerate(self.steps):
            expression = re.sub(r"\d+", lambda m: known.get(int(m.group()), m.group()), step.expression)
            name = _VARIABLES[i]
            lines.append(f"{name} = {expression.replace('/', '//')}")
            known[step.value] = name
        return "\n".join([*lines, _VARIABLES[len(self.steps) - 1]])

    def solution(self) -> str:
        """The worked solution as one block of text, ending with the answer."""
        return "\n".join([*(s.text for s in self.steps), f"The answer is {self.answer}."])


class _Writer:
    """Formats quantities (digits, words, or a user's mix of both) and arithmetic (symbols
    or prose)."""

    def __init__(self, rng: random.Random, words: bool | None):
        self.rng, self.words = rng, words

    def _spelled(self, x: int) -> bool:
        return self.words is True or (self.words is None and 0 <= x <= 20 and self.rng.random() < 0.3)

    def n(self, x: int) -> str:
        # No hyphens in words ("twenty four"): a hyphen is a token without letters, and a
        # worksheet page needs most of its tokens to be words to pass Gopher's quality rule.
        return spell(x).replace("-", " ") if self._spelled(x) else str(x)

    def money(self, x: int) -> str:
        if self.words is None and self.rng.random() < 0.3:
            return f"{self.n(x)} {'dollar' if x == 1 else 'dollars'}"
        return f"{self.n(x)} dollars" if self.words else f"${x}"

    def count(self, x: int, one: str, many: str) -> str:
        return f"{self.n(x)} {one if x == 1 else many}"

    def calc(self, a: int, op: str, b: int, result: int, kinds: str = "nnn") -> str:
        """`a op b = result`; `kinds` says which of the three are money ("$") or counts ("n")."""
        a_, b_, r_ = (self.money(x) if k == "$" else self.n(x) for x, k in zip((a, b, result), kinds))
        if self.words:
            verb = {"+": "plus", "-": "minus", "*": "times", "/": "divided by"}[op]
            return f"{a_} {verb} {b_} makes {r_}"
        return f"{a_} {dict(zip('+-*/', '+-×÷'))[op]} {b_} = {r_}"


@dataclass
class _Story:
    """What a family writes: the fact sentences (in story order), the ways of asking, and
    the solution."""

    facts: list[str]
    asks: list[str]  # complete questions or requests; one is drawn
    steps: list[Step]
    answer: int
    unit: str
    numbers: dict[str, int]


def _step(text: str, expression: str, value: int) -> Step:
    return Step(text=text, expression=expression, value=value)


def _pl(n: int, one: str, many: str) -> str:
    return one if n == 1 else many


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


# -- the grammar every family shares: distractors, ordering, ways of asking ----------------------

# Irrelevant sentences with a number of their own: the answer must not depend on them.
_DISTRACTORS = (
    "{other} is {k} years old.",
    "It is {k} degrees outside.",
    "The bus ride takes {k} minutes.",
    "{other} has read {k} pages of a book today.",
    "The school has {k} classrooms.",
    "{other} lives {k} streets away.",
    "Yesterday it rained for {k} hours.",
    "There are {k} birds on the roof.",
)
_PREFIXES = ("", "", "", "", "Here is a problem: ", "Question: ", "Word problem: ", "Please help me with this. ")
_SUFFIXES = ("", "", "", "", " Show your working.", " Explain each step.", " Give the number.", " Thanks!")


def _compose(rng: random.Random, w: _Writer, story: _Story, name: str) -> str:
    facts = list(story.facts)
    if rng.random() < 0.3:
        other = rng.choice([n for n in NAMES if n != name])
        facts.insert(
            rng.randint(0, len(facts)), rng.choice(_DISTRACTORS).format(other=other, k=w.n(rng.randint(2, 12)))
        )
    ask = rng.choice(story.asks)
    body = " ".join([ask, *facts] if rng.random() < 0.2 else [*facts, ask])
    return f"{rng.choice(_PREFIXES)}{body}{rng.choice(_SUFFIXES)}".strip()


def _how_many(many: str, question: str, statement: str) -> list[str]:
    """Ways to ask how many: `question` ("does it have left") as a question, `statement`
    ("it has left") inside a request."""
    return [
        f"How many {many} {question}?",
        f"Can you work out how many {many} {statement}?",
        f"Find how many {many} {statement}.",
        f"Tell me how many {many} {statement}.",
    ]


# Each family takes (rng, difficulty, question writer, solution writer) and returns its story
# and the name of its main character ("" if none: distractors name someone else).
Family = Callable[[random.Random, int, _Writer, _Writer], tuple[_Story, str]]


# -- training families ---------------------------------------------------------------------------


def _combine(rng, d, w, s):
    """Two or three amounts put together (a sum)."""
    people = rng.sample(NAMES, 3)
    one, many = rng.choice(ITEMS)
    xs = [rng.randint(1, SCALE[d]) for _ in range(2 if d < 3 else 3)]
    verb = rng.choice(("has", "collected", "found", "brought", "owns"))
    style = rng.randrange(3)
    if style == 0:
        facts = [f"{p} {verb} {w.count(x, one, many)}." for p, x in zip(people, xs)]
        asks = _how_many(many, "do they have altogether", "they have altogether") + [
            f"How many {many} is that in total?"
        ]
    elif style == 1:
        parts = [w.count(x, one, many) for x in xs]
        when = ("on Monday", "on Tuesday", "on Wednesday")
        verb = rng.choice(("collected", "found", "picked up", "bought"))
        facts = [f"{people[0]} {verb} " + " and ".join(f"{p} {t}" for p, t in zip(parts, when)) + "."]
        asks = _how_many(many, f"does {people[0]} have in all", f"{people[0]} has in all") + [
            f"What is the total number of {many}?"
        ]
    else:
        facts = [
            f"There {'is' if xs[0] == 1 else 'are'} {w.count(xs[0], one, many)} in the first {rng.choice(CONTAINERS)[0]}."
        ]
        facts += [f"Another holds {w.n(x)}." for x in xs[1:]]
        asks = _how_many(many, "are there altogether", "there are altogether")
    steps, total = [], xs[0]
    for x in xs[1:]:
        steps.append(_step(f"Together that makes {s.calc(total, '+', x, total + x)}.", f"{total} + {x}", total + x))
        total += x
    return _Story(facts, asks, steps, total, many, {f"x{i}": x for i, x in enumerate(xs)}), people[0]


def _compare(rng, d, w, s):
    """How many more one has than another (a difference)."""
    a, b = rng.sample(NAMES, 2)
    one, many = rng.choice(ITEMS)
    small = rng.randint(1, SCALE[d])
    big = small + rng.randint(1, SCALE[d])
    style = rng.randrange(3)
    if style == 0:
        facts = [f"{a} has {w.count(big, one, many)}.", f"{b} has {w.count(small, one, many)}."]
    elif style == 1:
        facts = [f"{a} has {w.count(big, one, many)} and {b} has {w.n(small)}."]
    else:
        facts = [f"{b} collected {w.count(small, one, many)}.", f"{a} collected {w.count(big, one, many)}."]
    asks = [
        f"How many more {many} does {a} have than {b}?",
        f"How many fewer {many} does {b} have than {a}?",
        f"What is the difference between the number of {many} {a} has and the number {b} has?",
        f"By how many {many} does {a} have more than {b}?",
    ]
    diff = big - small
    steps = [_step(f"The difference is {s.calc(big, '-', small, diff)}.", f"{big} - {small}", diff)]
    return _Story(facts, asks, steps, diff, many, {"big": big, "small": small}), a


def _change(rng, d, w, s):
    """Pays for several of a thing with a round sum: the change (a product, then a difference)."""
    name = rng.choice(NAMES)
    one, many = rng.choice(ITEMS)
    count, price = rng.randint(2, max(3, SCALE[d] // 3)), rng.randint(1, SCALE[d])
    cost = count * price
    paid = next(b * 10**k for k in range(20) for b in (1, 2, 5) if b * 10**k > cost)  # the next round sum
    style = rng.randrange(3)
    if style == 0:
        facts = [
            f"{name} buys {w.count(count, one, many)} that cost {w.money(price)} each and pays with {w.money(paid)}."
        ]
    elif style == 1:
        facts = [
            f"Each {one} costs {w.money(price)}.",
            f"{name} buys {w.n(count)} of them with a {w.money(paid)} note.",
        ]
    else:
        facts = [
            f"{name} has {w.money(paid)}.",
            f"{name} spends it on {w.count(count, one, many)} at {w.money(price)} each.",
        ]
    asks = [
        f"How much change does {name} get?",
        f"How much change should {name} receive?",
        f"What change does {name} get back?",
        f"How much money does {name} have left?" if style == 2 else f"How much change is {name} given?",
    ]
    steps = [
        _step(f"The {many} cost {s.calc(count, '*', price, cost, 'n$$')}.", f"{count} * {price}", cost),
        _step(f"The change is {s.calc(paid, '-', cost, paid - cost, '$$$')}.", f"{paid} - {cost}", paid - cost),
    ]
    return _Story(facts, asks, steps, paid - cost, "dollars", dict(count=count, price=price, paid=paid)), name


def _unit_price(rng, d, w, s):
    name = rng.choice(NAMES)
    (x1, xs), (y1, ys) = rng.sample(ITEMS, 2)
    top = SCALE[d]
    a, b = rng.randint(2, max(3, top // 2)), rng.randint(2, max(3, top // 2))
    price_x, price_y = rng.randint(1, top), rng.randint(1, top)
    total = a * price_x + b * price_y
    if rng.random() < 0.5:
        facts = [f"{name} buys {w.n(a)} {xs} and {w.n(b)} {ys}.", f"Each {y1} costs {w.money(price_y)}."]
    else:
        facts = [f"{_cap(ys)} cost {w.money(price_y)} each.", f"{name} buys {w.n(b)} {ys} and {w.n(a)} {xs}."]
    facts.append(rng.choice((f"The total cost is {w.money(total)}.", f"{name} pays {w.money(total)} altogether.")))
    asks = [f"What is the cost of each {x1}?", f"How much does one {x1} cost?", f"What does a single {x1} cost?"]
    cost_y, rest = b * price_y, total - b * price_y
    steps = [
        _step(f"The {ys} cost {s.calc(b, '*', price_y, cost_y, 'n$$')}.", f"{b} * {price_y}", cost_y),
        _step(f"That leaves {s.calc(total, '-', cost_y, rest, '$$$')} for the {xs}.", f"{total} - {cost_y}", rest),
        _step(f"Each {x1} costs {s.calc(rest, '/', a, price_x, '$n$')}.", f"{rest} / {a}", price_x),
    ]
    return _Story(facts, asks, steps, price_x, "dollars", dict(a=a, b=b, price_y=price_y, total=total)), name


def _share(rng, d, w, s):
    """Keeps some, shares the rest equally (a difference, then a division)."""
    name = rng.choice(NAMES)
    one, many = rng.choice(ITEMS)
    friends, each, kept = rng.randint(2, min(12, 2 + SCALE[d] // 4)), rng.randint(1, SCALE[d]), rng.randint(1, SCALE[d])
    total = friends * each + kept
    group = rng.choice(("friends", "classmates", "cousins", "neighbours"))
    keep = rng.choice(("keeps", "saves", "holds on to"))
    if rng.random() < 0.5:
        facts = [
            f"{name} has {w.count(total, one, many)}.",
            f"{name} {keep} {w.n(kept)} and shares the rest equally among {w.n(friends)} {group}.",
        ]
    else:
        facts = [
            f"{name} {keep} {w.n(kept)} of {w.count(total, one, many)}.",
            f"The others are split evenly between {w.n(friends)} {group}.",
        ]
    asks = [
        f"How many {many} does each of the {group} get?",
        f"How many {many} does each one receive?",
        "What is each share?",
    ]
    rest = total - kept
    steps = [
        _step(
            f"After keeping some, {name} has {s.calc(total, '-', kept, rest)} {many} to share.",
            f"{total} - {kept}",
            rest,
        ),
        _step(f"Each gets {s.calc(rest, '/', friends, each)} {_pl(each, one, many)}.", f"{rest} / {friends}", each),
    ]
    return _Story(facts, asks, steps, each, _pl(each, one, many), dict(total=total, kept=kept, friends=friends)), name


def _stock(rng, d, w, s):
    """A running total over 1 + difficulty changes: the chained family."""
    place = rng.choice(PLACES)
    one, many = rng.choice(BAKES)
    top = SCALE[d]
    level = start = rng.randint(top, 3 * top)
    numbers: dict[str, int] = {"start": start}
    clauses, steps = [], []
    for i in range(1 + d):
        if rng.random() < 0.5 and level > 1:
            amount = rng.randint(1, level)
            clauses.append(f"{rng.choice(('sells', 'gives away', 'uses'))} {w.n(amount)}")
            new, op, verb = level - amount, "-", "taking away"
        else:
            amount = rng.randint(1, top)
            clauses.append(f"{rng.choice(('bakes', 'makes', 'gets'))} {w.n(amount)} more")
            new, op, verb = level + amount, "+", "adding"
        numbers[f"change{i}"] = amount if op == "+" else -amount
        steps.append(
            _step(
                f"After {verb} {s.n(amount)}, there are {s.calc(level, op, amount, new)}.",
                f"{level} {op} {amount}",
                new,
            )
        )
        level = new
    story = rng.choice((", then ", ", and then ", ". After that it ")).join(clauses)
    opening = rng.choice(
        (f"A {place} starts the day with {w.n(start)} {many}.", f"In the morning a {place} has {w.n(start)} {many}.")
    )
    facts = [opening, f"It {story}."]
    asks = _how_many(many, "does it have at the end", "it has at the end") + [
        f"How many {many} are left at the end of the day?"
    ]
    return _Story(facts, asks, steps, level, _pl(level, one, many), numbers), ""


def _distance(rng, d, w, s):
    """Two legs of a trip, each a speed times a time, summed."""
    name = rng.choice(NAMES)
    verb = rng.choice(("cycles", "drives", "walks", "rides", "runs"))
    unit = rng.choice(("kilometres", "miles"))
    v1, t1 = rng.randint(2, 4 + SCALE[d] // 2), rng.randint(1, 2 + d)
    v2, t2 = rng.randint(2, 4 + SCALE[d] // 2), rng.randint(1, 2 + d)
    a, b = v1 * t1, v2 * t2

    def leg(v, t):
        hours = w.count(t, "hour", "hours")
        return rng.choice((f"at {w.n(v)} {unit} per hour for {hours}", f"for {hours} at {w.n(v)} {unit} an hour"))

    facts = [f"{name} {verb} {leg(v1, t1)}, then {leg(v2, t2)}."]
    asks = [
        f"How many {unit} does {name} travel in total?",
        f"How far does {name} go altogether?",
        f"What is the whole distance in {unit}?",
    ]
    steps = [
        _step(f"The first part is {s.calc(v1, '*', t1, a)} {unit}.", f"{v1} * {t1}", a),
        _step(f"The second part is {s.calc(v2, '*', t2, b)} {unit}.", f"{v2} * {t2}", b),
        _step(f"Together that is {s.calc(a, '+', b, a + b)} {unit}.", f"{a} + {b}", a + b),
    ]
    return _Story(facts, asks, steps, a + b, unit, dict(v1=v1, t1=t1, v2=v2, t2=t2)), name


def _total_cost(rng, d, w, s):
    """Two kinds of thing bought at two prices: the bill (two products, summed)."""
    name = rng.choice(NAMES)
    (x1, xs), (y1, ys) = rng.sample(ITEMS, 2)
    a, b = rng.randint(2, max(3, SCALE[d] // 2)), rng.randint(2, max(3, SCALE[d] // 2))
    p, q = rng.randint(1, SCALE[d]), rng.randint(1, SCALE[d])
    if rng.random() < 0.5:
        facts = [f"{name} buys {w.n(a)} {xs} at {w.money(p)} each and {w.n(b)} {ys} at {w.money(q)} each."]
    else:
        facts = [
            f"A {x1} costs {w.money(p)} and a {y1} costs {w.money(q)}.",
            f"{name} buys {w.n(a)} {xs} and {w.n(b)} {ys}.",
        ]
    asks = [f"How much does {name} spend?", "What is the total cost?", f"How much does {name} pay altogether?"]
    steps = [
        _step(f"The {xs} cost {s.calc(a, '*', p, a * p, 'n$$')}.", f"{a} * {p}", a * p),
        _step(f"The {ys} cost {s.calc(b, '*', q, b * q, 'n$$')}.", f"{b} * {q}", b * q),
        _step(f"Altogether {s.calc(a * p, '+', b * q, a * p + b * q, '$$$')}.", f"{a * p} + {b * q}", a * p + b * q),
    ]
    return _Story(facts, asks, steps, a * p + b * q, "dollars", dict(a=a, p=p, b=b, q=q)), name


def _savings(rng, d, w, s):
    name = rng.choice(NAMES)
    item = rng.choice(THINGS)
    per_week, weeks, has = rng.randint(2, SCALE[d]), rng.randint(2, 4 + 2 * d), rng.randint(0, SCALE[d])
    price = has + per_week * weeks
    period = rng.choice(("week", "month"))
    facts = [
        rng.choice(
            (
                f"{name} wants a {item} that costs {w.money(price)}.",
                f"A {item} costs {w.money(price)} and {name} wants one.",
            )
        ),
        f"{name} already has {w.money(has)} and saves {w.money(per_week)} every {period}.",
    ]
    asks = [f"How many {period}s does {name} need to save?", f"How many {period}s until {name} can buy the {item}?"]
    need = price - has
    steps = [
        _step(f"{name} still needs {s.calc(price, '-', has, need, '$$$')}.", f"{price} - {has}", need),
        _step(
            f"At that rate it takes {s.calc(need, '/', per_week, weeks, '$$n')} {period}s.",
            f"{need} / {per_week}",
            weeks,
        ),
    ]
    return _Story(facts, asks, steps, weeks, f"{period}s", dict(price=price, has=has, per_week=per_week)), name


def _fence(rng, d, w, s):
    """The perimeter of a rectangle, then its cost."""
    name = rng.choice(NAMES)
    length, width, price = rng.randint(2, SCALE[d]), rng.randint(2, SCALE[d]), rng.randint(1, 5 + d * 3)
    half, place = length + width, rng.choice(("garden", "field", "yard", "playground"))
    perimeter = 2 * half
    facts = [
        rng.choice(
            (
                f"{name} puts a fence around a {place} that is {w.n(length)} metres long and {w.n(width)} metres wide.",
                f"A rectangular {place} measures {w.n(length)} metres by {w.n(width)} metres, and {name} fences all of it.",
            )
        ),
        f"Fencing costs {w.money(price)} per metre.",
    ]
    asks = ["How much does the fence cost?", f"What does it cost to fence the {place}?"]
    steps = [
        _step(f"One length and one width make {s.calc(length, '+', width, half)} metres.", f"{length} + {width}", half),
        _step(f"The whole fence is {s.calc(2, '*', half, perimeter)} metres long.", f"2 * {half}", perimeter),
        _step(
            f"It costs {s.calc(perimeter, '*', price, perimeter * price, 'n$$')}.",
            f"{perimeter} * {price}",
            perimeter * price,
        ),
    ]
    return _Story(facts, asks, steps, perimeter * price, "dollars", dict(length=length, width=width, price=price)), name


def _area(rng, d, w, s):
    """The area of a rectangle, then what covering it costs."""
    name = rng.choice(NAMES)
    length, width, price = (
        rng.randint(2, 2 + SCALE[d] // 2),
        rng.randint(2, 2 + SCALE[d] // 2),
        rng.randint(1, 5 + 2 * d),
    )
    room, cover = rng.choice(("room", "hall", "kitchen", "patio")), rng.choice(("carpet", "tiles", "paint", "flooring"))
    facts = [
        rng.choice(
            (
                f"A {room} is {w.n(length)} metres long and {w.n(width)} metres wide.",
                f"{name}'s {room} measures {w.n(length)} metres by {w.n(width)} metres.",
            )
        ),
        f"{_cap(cover)} costs {w.money(price)} per square metre.",
    ]
    asks = [
        f"How much does it cost to cover the {room} with {cover}?",
        f"What is the cost of the {cover} for the whole {room}?",
    ]
    area = length * width
    steps = [
        _step(f"The area is {s.calc(length, '*', width, area)} square metres.", f"{length} * {width}", area),
        _step(f"It costs {s.calc(area, '*', price, area * price, 'n$$')}.", f"{area} * {price}", area * price),
    ]
    return _Story(facts, asks, steps, area * price, "dollars", dict(length=length, width=width, price=price)), name


def _discount(rng, d, w, s):
    name = rng.choice(NAMES)
    item = rng.choice(SALE_ITEMS)
    percent = rng.choice((10, 20, 25, 50))
    unit = 100 // percent  # price multiple that keeps the discount whole
    price = unit * rng.randint(1, max(1, SCALE[d] * 2 // unit))
    off = price * percent // 100
    if rng.random() < 0.5:
        facts = [f"A {item} costs {w.money(price)}.", f"{name} buys it in a sale with {w.n(percent)} percent off."]
        asks = [f"How much does {name} pay?", f"How much does {name} pay for the {item}?"]
    else:
        facts = [f"A {item} costs {w.money(price)}.", f"The shop takes {w.n(percent)} percent off the price."]
        asks = ["What is the sale price?", f"How much does the {item} cost in the sale?"]
    steps = [
        _step(
            f"The discount is {s.n(percent)} percent of {s.money(price)}, which is {s.money(off)}.",
            f"{price} * {percent} / 100",
            off,
        ),
        _step(f"The price is {s.calc(price, '-', off, price - off, '$$$')}.", f"{price} - {off}", price - off),
    ]
    return _Story(facts, asks, steps, price - off, "dollars", dict(price=price, percent=percent)), name


def _ages(rng, d, w, s):
    name, other = rng.sample(NAMES, 2)
    young, extra, later = rng.randint(2, 6 + 3 * d), rng.randint(1, 5 + 2 * d), rng.randint(1, 5 + 3 * d)
    twice = 2 * young
    now = twice + extra
    facts = [
        f"{name} is {w.count(extra, 'year', 'years')} older than twice the age of {other}.",
        f"{other} is {w.n(young)} years old.",
    ]
    later_ = w.count(later, "year", "years")
    asks = [f"How old will {name} be in {later_}?", f"What age will {name} be {later_} from now?"]
    steps = [
        _step(f"Twice the age of {other} is {s.calc(2, '*', young, twice)}.", f"2 * {young}", twice),
        _step(f"So {name} is {s.calc(twice, '+', extra, now)} years old now.", f"{twice} + {extra}", now),
        _step(f"Later {name} will be {s.calc(now, '+', later, now + later)}.", f"{now} + {later}", now + later),
    ]
    return _Story(facts, asks, steps, now + later, "years", dict(young=young, extra=extra, later=later)), name


def _boxes(rng, d, w, s):
    """Rows in a box, boxes in a delivery (two products)."""
    one, many = rng.choice(ITEMS)
    box, boxes_ = rng.choice(CONTAINERS)
    boxes, rows, per_row = rng.randint(2, 2 + SCALE[d] // 3), rng.randint(2, 2 + d), rng.randint(2, 3 + d)
    per_box = rows * per_row
    facts = [f"A {box} holds {w.n(rows)} rows of {many} with {w.n(per_row)} {many} in each row."]
    asks = _how_many(many, f"are there in {w.n(boxes)} {boxes_}", f"there are in {w.n(boxes)} {boxes_}") + [
        f"How many {many} fill {w.n(boxes)} {boxes_}?"
    ]
    steps = [
        _step(f"One {box} holds {s.calc(rows, '*', per_row, per_box)} {many}.", f"{rows} * {per_row}", per_box),
        _step(
            f"So the {boxes_} hold {s.calc(boxes, '*', per_box, boxes * per_box)} {many}.",
            f"{boxes} * {per_box}",
            boxes * per_box,
        ),
    ]
    return _Story(facts, asks, steps, boxes * per_box, many, dict(boxes=boxes, rows=rows, per_row=per_row)), ""


# -- held-out families: never in any training set ------------------------------------------------


def _groups_change(rng, d, w, s):
    """Equal groups, then some given away or added: a product, then a change to it."""
    name = rng.choice(NAMES)
    one, many = rng.choice(ITEMS)
    box, boxes_ = rng.choice(CONTAINERS)
    groups, size = rng.randint(2, 2 + SCALE[d] // 3), rng.randint(2, 2 + SCALE[d] // 2)
    total = groups * size
    give = rng.random() < 0.6
    amount = rng.randint(1, total - 1) if give else rng.randint(1, SCALE[d])
    verb = (
        rng.choice(("gives away", "loses", "uses", "hands out")) if give else rng.choice(("buys", "finds", "is given"))
    )
    extra = f"{verb} {w.count(amount, one, many)}" if give else f"{verb} {w.n(amount)} more {many}"
    style = rng.randrange(3)
    if style == 0:
        facts = [
            f"{name} has {w.count(groups, box, boxes_)} with {w.count(size, one, many)} in each {box} and {extra}."
        ]
    elif style == 1:
        facts = [
            f"There are {w.count(size, one, many)} in every {box}.",
            f"{name} has {w.n(groups)} {boxes_}.",
            f"Then {name} {extra}.",
        ]
    else:
        facts = [
            f"{name} fills {w.count(groups, box, boxes_)}, putting {w.n(size)} {many} in each.",
            f"After that {name} {extra}.",
        ]
    asks = [
        f"How many {many} are left?" if give else f"How many {many} are there now?",
        f"How many {many} does {name} have now?",
    ]
    op = "-" if give else "+"
    answer = total - amount if give else total + amount
    steps = [
        _step(f"The {boxes_} hold {s.calc(groups, '*', size, total)} {many}.", f"{groups} * {size}", total),
        _step(f"Then {s.calc(total, op, amount, answer)}.", f"{total} {op} {amount}", answer),
    ]
    numbers = dict(groups=groups, size=size, change=-amount if give else amount)
    return _Story(facts, asks, steps, answer, many, numbers), name


_RATES = (
    # (subject, verb, per-unit phrase, unit of the answer, the time unit, how to ask)
    ("A train", "travels", "miles", "miles", "hour", "How far does it go in {t}?"),
    ("A car", "drives", "kilometres", "kilometres", "hour", "How many kilometres does it drive in {t}?"),
    ("{name}", "reads", "pages", "pages", "day", "How many pages does {name} read in {t}?"),
    ("A pump", "moves", "litres of water", "litres", "minute", "How many litres does it move in {t}?"),
    ("{name}", "earns", "dollars", "dollars", "hour", "How much does {name} earn in {t}?"),
    ("A printer", "prints", "pages", "pages", "minute", "How many pages does it print in {t}?"),
)


def _rate_time(rng, d, w, s):
    """A rate and a time: one product, told as a steady rate."""
    name = rng.choice(NAMES)
    subject, verb, what, unit, per, ask = rng.choice(_RATES)
    subject = subject.format(name=name)
    rate, time = rng.randint(2, 4 + SCALE[d]), rng.randint(2, 2 + d * 2)
    every = rng.choice((f"every {per}", f"each {per}", f"per {per}", f"an {per}" if per == "hour" else f"a {per}"))
    inner = "a" + subject[1:] if subject.startswith("A ") else subject
    facts = [
        rng.choice(
            (f"{subject} {verb} {w.n(rate)} {what} {every}.", f"{_cap(every)}, {inner} {verb} {w.n(rate)} {what}.")
        )
    ]
    t = w.count(time, per, per + "s")
    asks = [ask.format(t=t, name=name), f"What is the total after {t}?"]
    steps = [
        _step(
            f"In {s.count(time, per, per + 's')} that is {s.calc(rate, '*', time, rate * time)} {unit}.",
            f"{rate} * {time}",
            rate * time,
        )
    ]
    return _Story(facts, asks, steps, rate * time, unit, dict(rate=rate, time=time)), name


def _pack(rng, d, w, s):
    """A total packed into equal groups: one division."""
    one, many = rng.choice(ITEMS)
    box, boxes_ = rng.choice(CONTAINERS)
    size, groups = rng.randint(2, 2 + SCALE[d] // 2), rng.randint(2, 2 + SCALE[d] // 2)
    total = size * groups
    style = rng.randrange(2)
    if style == 0:
        facts = [f"{_cap(w.n(total))} {many} are packed into {boxes_} of {w.n(size)}."]
    else:
        facts = [f"A shop has {w.count(total, one, many)}.", f"It puts {w.n(size)} {many} in each {box}."]
    asks = [f"How many {boxes_} are filled?", f"How many {boxes_} does it take?", f"How many full {boxes_} are there?"]
    steps = [_step(f"That fills {s.calc(total, '/', size, groups)} {boxes_}.", f"{total} / {size}", groups)]
    return _Story(facts, asks, steps, groups, boxes_, dict(total=total, size=size)), ""


def _split_bill(rng, d, w, s):
    """Several things bought together, the bill split equally: a product, then a division."""
    one, many = rng.choice(ITEMS)
    people = rng.randint(2, 6)
    count, share = rng.randint(2, max(3, SCALE[d] // 2)), rng.randint(1, max(2, SCALE[d] // 3))
    price = people * share  # each of the people pays count * share
    total = count * price
    group = rng.choice(("friends", "brothers", "teammates", "people"))
    facts = [
        f"{_cap(w.n(people))} {group} buy {w.count(count, one, many)} for {w.money(price)} each.",
        rng.choice(("They share the cost equally.", "They split the bill evenly.")),
    ]
    asks = [f"How much does each of the {group} pay?", "How much does each one pay?"]
    steps = [
        _step(f"The {many} cost {s.calc(count, '*', price, total, 'n$$')}.", f"{count} * {price}", total),
        _step(
            f"Each pays {s.calc(total, '/', people, total // people, '$n$')}.", f"{total} / {people}", total // people
        ),
    ]
    return _Story(facts, asks, steps, total // people, "dollars", dict(count=count, price=price, people=people)), ""


FAMILIES: dict[str, Family] = {
    "combine": _combine,
    "compare": _compare,
    "change": _change,
    "unit_price": _unit_price,
    "share": _share,
    "stock": _stock,
    "distance": _distance,
    "total_cost": _total_cost,
    "savings": _savings,
    "fence": _fence,
    "area": _area,
    "discount": _discount,
    "ages": _ages,
    "boxes": _boxes,
    # held out of every training set:
    "groups_change": _groups_change,
    "rate_time": _rate_time,
    "pack": _pack,
    "split_bill": _split_bill,
}
HELDOUT_FAMILIES = ("groups_change", "rate_time", "pack", "split_bill")
TRAIN_FAMILIES = tuple(f for f in FAMILIES if f not in HELDOUT_FAMILIES)


def make_problem(
    seed: int | str, difficulty: int = 1, family: str | None = None, words: bool | None = False
) -> Problem:
    """One problem, a pure function of (seed, difficulty, family, words). Without a family,
    one of the training families (never a held-out one)."""
    if not 1 <= difficulty <= MAX_DIFFICULTY:
        raise ValueError(f"difficulty must be 1..{MAX_DIFFICULTY}, got {difficulty}")
    name = family or random.Random(f"math:{seed}:{difficulty}").choice(TRAIN_FAMILIES)
    if name not in FAMILIES:
        raise ValueError(f"unknown family {name!r}; known: {sorted(FAMILIES)}")
    rng = random.Random(f"math:{seed}:{difficulty}:{name}:{words}")
    ask_writer = _Writer(rng, words)
    story, subject = FAMILIES[name](rng, difficulty, ask_writer, _Writer(rng, words is True))
    question = _compose(rng, ask_writer, story, subject)
    return Problem(name, difficulty, question, tuple(story.steps), story.answer, story.unit, story.numbers)


def problems(seed: int, count: int, difficulty: int = 1, words: bool | None = False) -> list[Problem]:
    """`count` problems cycling through every training family, so a batch is varied."""
    order = list(TRAIN_FAMILIES)
    random.Random(f"order:{seed}").shuffle(order)
    return [make_problem(f"{seed}:{i}", difficulty, order[i % len(order)], words) for i in range(count)]


_NUMBER_WORDS = "|".join(sorted(set(_ONES + _TENS[2:] + ["hundred", "thousand", "million"]), key=len, reverse=True))


def skeleton(question: str) -> str:
    """A question with its quantities, names and nouns blanked: its sentence structure. Two
    questions with the same skeleton differ only in what fills the slots."""
    out = re.sub(r"\$?\d+", "#", question)
    out = re.sub(rf"\b({_NUMBER_WORDS})\b", "#", out, flags=re.IGNORECASE)
    out = re.sub(r"#(?:[\s-]+#)+", "#", out)
    out = re.sub(rf"\b({'|'.join(NAMES)})\b", "N", out)
    nouns = {w for pair in (*ITEMS, *CONTAINERS, *BAKES) for w in pair} | set(PLACES) | set(THINGS) | set(SALE_ITEMS)
    out = re.sub(rf"\b({'|'.join(sorted(map(re.escape, nouns), key=len, reverse=True))})\b", "X", out)
    return out
