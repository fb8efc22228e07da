"""Arithmetic word problems with worked solutions and exact integer answers.

The sample crawl prints them on worksheet pages; SFT and RL draw held-out problems from the
same generator (a different seed), so the model is tested on problems it never read.

`make_problem(seed, difficulty)` returns a `Problem`: the question, the worked steps (each a
sentence plus the arithmetic expression it states and that expression's value) and the integer
answer. Every quantity is chosen first and the question is built backwards from it, so answers
are exact by construction; `numbers` keeps the quantities the question states, so a test can
recompute the answer independently.

`difficulty` (1-5) sets how large the numbers get and how many steps the chained templates take.
`words=True` writes numbers as English words ("thirteen dollars"), the way a worksheet page
reads; the expressions stay in digits either way.
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
FRUITS = (
    ("apple", "apples"),
    ("orange", "oranges"),
    ("pear", "pears"),
    ("lemon", "lemons"),
    ("mango", "mangoes"),
    ("peach", "peaches"),
)
GOODS = (
    ("notebook", "notebooks"),
    ("pencil", "pencils"),
    ("sticker", "stickers"),
    ("marker", "markers"),
    ("comic", "comics"),
    ("ticket", "tickets"),
)
BAKES = (("loaf", "loaves"), ("muffin", "muffins"), ("bagel", "bagels"), ("pie", "pies"), ("cookie", "cookies"))
PLACES = ("bakery", "cafe", "market stall", "school kitchen", "corner shop")

_VARIABLES = string.ascii_lowercase  # a chained template has at most 1 + MAX_DIFFICULTY steps
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
    template: str
    difficulty: int
    question: str
    steps: tuple[Step, ...]
    answer: int
    unit: str  # what the answer counts: "dollars", "loaves", "km", ...
    numbers: dict[str, int] = field(default_factory=dict)

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
    """Formats quantities as digits or as words, and arithmetic as symbols or as prose."""

    def __init__(self, words: bool):
        self.words = words

    def n(self, x: int) -> str:
        # No hyphens in words mode ("twenty four"): a hyphen is a token without letters, and a
        # worksheet page needs most of its tokens to be words to pass Gopher's quality rule.
        return spell(x).replace("-", " ") if self.words else str(x)

    def money(self, x: int) -> str:
        return f"{self.n(x)} dollars" if self.words else f"${x}"

    def calc(self, a: int, op: str, b: int, result: int, kinds: str = "nnn") -> str:
        """`a op b = result`; `kinds` says which of the three are money ("$") or counts ("n")."""
        a_, b_, r_ = (self.money(x) if k == "$" else self.n(x) for x, k in zip((a, b, result), kinds))
        if self.words:
            verb = {"+": "plus", "-": "minus", "*": "times", "/": "divided by"}[op]
            return f"{a_} {verb} {b_} makes {r_}"
        return f"{a_} {dict(zip('+-*/', '+-×÷'))[op]} {b_} = {r_}"


def _step(text: str, expression: str, value: int) -> Step:
    return Step(text=text, expression=expression, value=value)


def _pl(n: int, one: str, many: str) -> str:
    return one if n == 1 else many


# Each template takes (rng, difficulty, writer) and returns (numbers, question, steps, answer, unit).
Template = Callable[[random.Random, int, _Writer], tuple[dict[str, int], str, list[Step], int, str]]


def _unit_price(rng: random.Random, d: int, w: _Writer):
    name = rng.choice(NAMES)
    (x1, xs), (y1, ys) = rng.sample(FRUITS, 2)
    top = SCALE[d]
    a, b = rng.randint(2, max(3, top // 2)), rng.randint(2, max(3, top // 2))
    price_x, price_y = rng.randint(1, top), rng.randint(1, top)
    total = a * price_x + b * price_y
    q = (
        f"{name} buys {w.n(a)} {xs} and {w.n(b)} {ys}. Each {y1} costs {w.money(price_y)}. "
        f"The total cost is {w.money(total)}. What is the cost of each {x1}?"
    )
    cost_y, rest = b * price_y, total - b * price_y
    steps = [
        _step(f"The {ys} cost {w.calc(b, '*', price_y, cost_y, 'n$$')}.", f"{b} * {price_y}", cost_y),
        _step(f"That leaves {w.calc(total, '-', cost_y, rest, '$$$')} for the {xs}.", f"{total} - {cost_y}", rest),
        _step(f"Each {x1} costs {w.calc(rest, '/', a, price_x, '$n$')}.", f"{rest} / {a}", price_x),
    ]
    return dict(a=a, b=b, price_y=price_y, total=total), q, steps, price_x, "dollars"


def _change(rng: random.Random, d: int, w: _Writer):
    name = rng.choice(NAMES)
    one, many = rng.choice(GOODS)
    count, price = rng.randint(2, max(3, SCALE[d] // 3)), rng.randint(1, SCALE[d])
    cost = count * price
    paid = next(b * 10**k for k in range(20) for b in (1, 2, 5) if b * 10**k > cost)  # the next round sum
    q = f"{name} buys {w.n(count)} {many} that cost {w.money(price)} each and pays with {w.money(paid)}. How much change does {name} get?"
    steps = [
        _step(f"The {many} cost {w.calc(count, '*', price, cost, 'n$$')}.", f"{count} * {price}", cost),
        _step(f"The change is {w.calc(paid, '-', cost, paid - cost, '$$$')}.", f"{paid} - {cost}", paid - cost),
    ]
    return dict(count=count, price=price, paid=paid), q, steps, paid - cost, "dollars"


def _share(rng: random.Random, d: int, w: _Writer):
    name = rng.choice(NAMES)
    one, many = rng.choice(GOODS)
    friends, each, kept = rng.randint(2, min(12, 2 + SCALE[d] // 4)), rng.randint(1, SCALE[d]), rng.randint(1, SCALE[d])
    total = friends * each + kept
    q = (
        f"{name} has {w.n(total)} {many}. {name} keeps {w.n(kept)} and shares the rest equally among "
        f"{w.n(friends)} friends. How many {many} does each friend get?"
    )
    rest = total - kept
    steps = [
        _step(
            f"After keeping some, {name} has {w.calc(total, '-', kept, rest)} {many} left to share.",
            f"{total} - {kept}",
            rest,
        ),
        _step(
            f"Each friend gets {w.calc(rest, '/', friends, each)} {_pl(each, one, many)}.", f"{rest} / {friends}", each
        ),
    ]
    return dict(total=total, kept=kept, friends=friends), q, steps, each, _pl(each, one, many)


def _stock(rng: random.Random, d: int, w: _Writer):
    """A running total over 1 + difficulty changes: the chained template."""
    place = rng.choice(PLACES)
    one, many = rng.choice(BAKES)
    top = SCALE[d]
    level = start = rng.randint(top, 3 * top)
    numbers: dict[str, int] = {"start": start}
    clauses, steps = [], []
    for i in range(1 + d):
        if rng.random() < 0.5 and level > 1:
            amount = rng.randint(1, level)
            clauses.append(f"sells {w.n(amount)}")
            new, op, verb = level - amount, "-", "selling"
        else:
            amount = rng.randint(1, top)
            clauses.append(f"bakes {w.n(amount)} more")
            new, op, verb = level + amount, "+", "baking"
        numbers[f"change{i}"] = amount if op == "+" else -amount
        steps.append(
            _step(
                f"After {verb} {w.n(amount)}, the {place} has {w.calc(level, op, amount, new)} {_pl(new, one, many)}.",
                f"{level} {op} {amount}",
                new,
            )
        )
        level = new
    story = ", then ".join(clauses)
    q = f"A {place} starts the day with {w.n(start)} {many}. It {story}. How many {many} does it have at the end?"
    return numbers, q, steps, level, _pl(level, one, many)


def _distance(rng: random.Random, d: int, w: _Writer):
    name = rng.choice(NAMES)
    v1, t1 = rng.randint(2, 4 + SCALE[d] // 2), rng.randint(1, 2 + d)
    v2, t2 = rng.randint(2, 4 + SCALE[d] // 2), rng.randint(1, 2 + d)
    a, b = v1 * t1, v2 * t2
    q = (
        f"{name} cycles at {w.n(v1)} kilometres per hour for {w.n(t1)} {_pl(t1, 'hour', 'hours')}, then at {w.n(v2)} kilometres "
        f"per hour for {w.n(t2)} {_pl(t2, 'hour', 'hours')}. How many kilometres does {name} cycle in total?"
    )
    steps = [
        _step(f"The first part is {w.calc(v1, '*', t1, a)} kilometres.", f"{v1} * {t1}", a),
        _step(f"The second part is {w.calc(v2, '*', t2, b)} kilometres.", f"{v2} * {t2}", b),
        _step(f"Together that is {w.calc(a, '+', b, a + b)} kilometres.", f"{a} + {b}", a + b),
    ]
    return dict(v1=v1, t1=t1, v2=v2, t2=t2), q, steps, a + b, "kilometres"


def _savings(rng: random.Random, d: int, w: _Writer):
    name = rng.choice(NAMES)
    item = rng.choice(("bicycle", "guitar", "telescope", "tent", "camera", "keyboard"))
    per_week, weeks, has = rng.randint(2, SCALE[d]), rng.randint(2, 4 + 2 * d), rng.randint(0, SCALE[d])
    price = has + per_week * weeks
    q = (
        f"{name} wants a {item} that costs {w.money(price)}. {name} already has {w.money(has)} and saves "
        f"{w.money(per_week)} every week. How many weeks does {name} need to save?"
    )
    need = price - has
    steps = [
        _step(f"{name} still needs {w.calc(price, '-', has, need, '$$$')}.", f"{price} - {has}", need),
        _step(
            f"At that rate it takes {w.calc(need, '/', per_week, weeks, '$$n')} {_pl(weeks, 'week', 'weeks')}.",
            f"{need} / {per_week}",
            weeks,
        ),
    ]
    return dict(price=price, has=has, per_week=per_week), q, steps, weeks, "weeks"


def _fence(rng: random.Random, d: int, w: _Writer):
    name = rng.choice(NAMES)
    length, width, price = rng.randint(2, SCALE[d]), rng.randint(2, SCALE[d]), rng.randint(1, 5 + d * 3)
    half = length + width
    perimeter = 2 * half
    q = (
        f"{name} puts a fence around a garden that is {w.n(length)} metres long and {w.n(width)} metres wide. "
        f"Fencing costs {w.money(price)} per metre. How much does the fence cost?"
    )
    steps = [
        _step(f"One length and one width make {w.calc(length, '+', width, half)} metres.", f"{length} + {width}", half),
        _step(f"The whole fence is {w.calc(2, '*', half, perimeter)} metres long.", f"2 * {half}", perimeter),
        _step(
            f"It costs {w.calc(perimeter, '*', price, perimeter * price, 'n$$')}.",
            f"{perimeter} * {price}",
            perimeter * price,
        ),
    ]
    return dict(length=length, width=width, price=price), q, steps, perimeter * price, "dollars"


def _discount(rng: random.Random, d: int, w: _Writer):
    name = rng.choice(NAMES)
    item = rng.choice(("jacket", "lamp", "backpack", "board game", "pair of boots", "kettle"))
    percent = rng.choice((10, 20, 25, 50))
    unit = 100 // {10: 10, 20: 20, 25: 25, 50: 50}[percent]  # price multiple that keeps the discount whole
    price = unit * rng.randint(1, max(1, SCALE[d] * 2 // unit))
    off = price * percent // 100
    q = f"A {item} costs {w.money(price)}. {name} buys it in a sale with {w.n(percent)} percent off. How much does {name} pay?"
    steps = [
        _step(
            f"The discount is {w.n(percent)} percent of {w.money(price)}, which is {w.money(off)}.",
            f"{price} * {percent} / 100",
            off,
        ),
        _step(f"{name} pays {w.calc(price, '-', off, price - off, '$$$')}.", f"{price} - {off}", price - off),
    ]
    return dict(price=price, percent=percent), q, steps, price - off, "dollars"


def _ages(rng: random.Random, d: int, w: _Writer):
    name, other = rng.sample(NAMES, 2)
    young, extra, later = rng.randint(2, 6 + 3 * d), rng.randint(1, 5 + 2 * d), rng.randint(1, 5 + 3 * d)
    twice = 2 * young
    now = twice + extra
    q = (
        f"{name} is {w.n(extra)} years older than twice the age of {other}. {other} is {w.n(young)} years old. "
        f"How old will {name} be in {w.n(later)} years?"
    )
    steps = [
        _step(f"Twice the age of {other} is {w.calc(2, '*', young, twice)}.", f"2 * {young}", twice),
        _step(f"So {name} is {w.calc(twice, '+', extra, now)} years old now.", f"{twice} + {extra}", now),
        _step(
            f"In {w.n(later)} years {name} will be {w.calc(now, '+', later, now + later)}.",
            f"{now} + {later}",
            now + later,
        ),
    ]
    return dict(young=young, extra=extra, later=later), q, steps, now + later, "years"


def _boxes(rng: random.Random, d: int, w: _Writer):
    one, many = rng.choice(BAKES)
    boxes, rows, per_row = rng.randint(2, 2 + SCALE[d] // 3), rng.randint(2, 2 + d), rng.randint(2, 3 + d)
    per_box = rows * per_row
    q = (
        f"A box holds {w.n(rows)} rows of {many} with {w.n(per_row)} {many} in each row. "
        f"How many {many} are there in {w.n(boxes)} boxes?"
    )
    steps = [
        _step(f"One box holds {w.calc(rows, '*', per_row, per_box)} {many}.", f"{rows} * {per_row}", per_box),
        _step(
            f"So the boxes hold {w.calc(boxes, '*', per_box, boxes * per_box)} {many}.",
            f"{boxes} * {per_box}",
            boxes * per_box,
        ),
    ]
    return dict(boxes=boxes, rows=rows, per_row=per_row), q, steps, boxes * per_box, many


TEMPLATES: dict[str, Template] = {
    "unit_price": _unit_price,
    "change": _change,
    "share": _share,
    "stock": _stock,
    "distance": _distance,
    "savings": _savings,
    "fence": _fence,
    "discount": _discount,
    "ages": _ages,
    "boxes": _boxes,
}


def make_problem(seed: int | str, difficulty: int = 1, template: str | None = None, words: bool = False) -> Problem:
    """One problem, a pure function of (seed, difficulty, template, words)."""
    if not 1 <= difficulty <= MAX_DIFFICULTY:
        raise ValueError(f"difficulty must be 1..{MAX_DIFFICULTY}, got {difficulty}")
    name = template or random.Random(f"math:{seed}:{difficulty}").choice(sorted(TEMPLATES))
    if name not in TEMPLATES:
        raise ValueError(f"unknown template {name!r}; known: {sorted(TEMPLATES)}")
    rng = random.Random(f"math:{seed}:{difficulty}:{name}")
    numbers, question, steps, answer, unit = TEMPLATES[name](rng, difficulty, _Writer(words))
    return Problem(name, difficulty, question, tuple(steps), answer, unit, numbers)


def problems(seed: int, count: int, difficulty: int = 1, words: bool = False) -> list[Problem]:
    """`count` problems cycling through every template, so a batch is varied."""
    order = sorted(TEMPLATES)
    random.Random(f"order:{seed}").shuffle(order)
    return [make_problem(f"{seed}:{i}", difficulty, order[i % len(order)], words) for i in range(count)]
