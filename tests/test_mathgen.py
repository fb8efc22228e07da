"""Math word problems: exact integer answers, recomputed independently of the generator;
grammars that vary the wording; held-out families disjoint from the training ones and absent
from every training set."""

from __future__ import annotations

import ast
import operator
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks import mathgen

# The answer of each family from the quantities its question states, written again here.
RECOMPUTE = {
    "combine": lambda n: sum(n.values()),
    "compare": lambda n: n["big"] - n["small"],
    "total_cost": lambda n: n["a"] * n["p"] + n["b"] * n["q"],
    "area": lambda n: n["length"] * n["width"] * n["price"],
    "groups_change": lambda n: n["groups"] * n["size"] + n["change"],
    "rate_time": lambda n: n["rate"] * n["time"],
    "pack": lambda n: n["total"] // n["size"],
    "split_bill": lambda n: n["count"] * n["price"] // n["people"],
    "unit_price": lambda n: (n["total"] - n["b"] * n["price_y"]) // n["a"],
    "change": lambda n: n["paid"] - n["count"] * n["price"],
    "share": lambda n: (n["total"] - n["kept"]) // n["friends"],
    "stock": lambda n: n["start"] + sum(v for k, v in n.items() if k.startswith("change")),
    "distance": lambda n: n["v1"] * n["t1"] + n["v2"] * n["t2"],
    "savings": lambda n: (n["price"] - n["has"]) // n["per_week"],
    "fence": lambda n: 2 * (n["length"] + n["width"]) * n["price"],
    "discount": lambda n: n["price"] - n["price"] * n["percent"] // 100,
    "ages": lambda n: 2 * n["young"] + n["extra"] + n["later"],
    "boxes": lambda n: n["boxes"] * n["rows"] * n["per_row"],
}
OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


def evaluate(expression: str) -> float:
    def walk(node):
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in OPS:
            return OPS[type(node.op)](walk(node.left), walk(node.right))
        raise ValueError(f"not arithmetic: {expression}")

    return walk(ast.parse(expression, mode="eval"))


def test_every_family_has_an_independent_recomputation():
    assert set(RECOMPUTE) == set(mathgen.FAMILIES)
    assert set(mathgen.TRAIN_FAMILIES) | set(mathgen.HELDOUT_FAMILIES) == set(mathgen.FAMILIES)
    assert not set(mathgen.TRAIN_FAMILIES) & set(mathgen.HELDOUT_FAMILIES)


def shown(value: int, question: str, words: bool | None) -> bool:
    """The question states `value`: in digits, in words, or (a user's mix) either."""
    forms = {True: [mathgen.spell(value).replace("-", " ")], False: [str(value)]}.get(
        words, [str(value), mathgen.spell(value).replace("-", " ")]
    )
    return any(re.search(rf"(?<![\w-]){re.escape(f)}(?![\w-])", question, re.IGNORECASE) for f in forms)


@settings(max_examples=300, deadline=None)
@given(
    seed=st.integers(0, 10**9),
    difficulty=st.integers(1, mathgen.MAX_DIFFICULTY),
    family=st.sampled_from(sorted(mathgen.FAMILIES)),
    words=st.sampled_from([True, False, None]),
)
def test_answers_are_exact(seed, difficulty, family, words):
    p = mathgen.make_problem(seed, difficulty, family, words)
    assert isinstance(p.answer, int) and p.answer >= 0
    assert RECOMPUTE[family](p.numbers) == p.answer
    # Each step states an expression that evaluates exactly to its value; the last is the answer.
    for step in p.steps:
        assert evaluate(step.expression) == step.value
    assert p.steps[-1].value == p.answer
    # The question states every quantity (digits, or words in worksheet style).
    for name, value in p.numbers.items():
        assert shown(abs(value), p.question, words), (name, value, p.question)
    if words:
        assert not re.search(r"\d", p.question)


def test_same_seed_same_problem_and_seeds_vary():
    assert mathgen.make_problem(5, 2) == mathgen.make_problem(5, 2)
    batch = mathgen.problems(seed=1, count=40, difficulty=2)
    assert len({p.question for p in batch}) == 40
    assert {p.family for p in batch} == set(mathgen.TRAIN_FAMILIES)
    # Without a family, make_problem draws only training families.
    assert {mathgen.make_problem(s, 1).family for s in range(300)} == set(mathgen.TRAIN_FAMILIES)


def test_difficulty_grows_numbers_and_steps():
    def biggest(d):
        return max(max(p.numbers.values()) for p in mathgen.problems(seed=3, count=60, difficulty=d))

    assert biggest(1) < biggest(3) < biggest(5)
    steps = [len(mathgen.make_problem(s, d, "stock").steps) for d in (1, 5) for s in range(3)]
    assert steps[:3] == [2, 2, 2] and steps[3:] == [6, 6, 6]


@pytest.mark.parametrize(
    "n, words",
    [
        (0, "zero"),
        (13, "thirteen"),
        (42, "forty-two"),
        (100, "one hundred"),
        (1305, "one thousand three hundred five"),
        (2000000, "two million"),
    ],
)
def test_spell(n, words):
    assert mathgen.spell(n) == words


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="difficulty"):
        mathgen.make_problem(0, 0)
    with pytest.raises(ValueError, match="unknown family"):
        mathgen.make_problem(0, 1, "calculus")


def test_each_problems_program_prints_its_answer_in_the_real_sandbox():
    """The code tool's SFT conversations force str(answer) after each program without running
    it (tasks/sft/generate.py); here every family at every difficulty, with many seeds, is
    run in the sandbox the engine uses, and what it shows must be exactly that."""
    from models.sandbox import Sandbox

    problems = [
        mathgen.make_problem(seed, d, f)
        for seed in range(12)
        for d in range(1, mathgen.MAX_DIFFICULTY + 1)
        for f in sorted(mathgen.FAMILIES)
    ]
    with Sandbox(size=1) as box:
        for p in problems:
            program = p.program()
            assert "/" not in program.replace("//", "") and len(program.splitlines()) == len(p.steps) + 1
            result = box.run(program)
            assert result.ok and result.text() == str(p.answer), (p.question, program, result)


def draws(families, n=500, words=None):
    return [mathgen.make_problem(f"g:{i}", 1 + i % 3, families[i % len(families)], words) for i in range(n)]


@pytest.mark.parametrize("families", [mathgen.TRAIN_FAMILIES, mathgen.HELDOUT_FAMILIES], ids=["train", "heldout"])
def test_grammars_write_many_sentence_structures(families):
    """Grammars, not a few sentences: >= 50 distinct question skeletons (quantities, names
    and nouns blanked) over 500 draws, in every family at least 8, with the question first
    and last, distractors and numbers in words."""
    problems = draws(families)
    assert len({mathgen.skeleton(p.question) for p in problems}) >= 50
    for family in families:
        assert len({mathgen.skeleton(p.question) for p in problems if p.family == family}) >= 8, family
    questions = [p.question for p in problems]
    assert sum(bool(re.search(r"\b(two|three|four|five|six|seven|eight|nine|ten)\b", q)) for q in questions) >= 50
    assert sum(q.rstrip().endswith(("?", "Thanks!")) for q in questions) < len(questions)  # some ask first
    distractors = [d.split("{k}")[1] for d in mathgen._DISTRACTORS]
    assert sum(any(d in q for d in distractors) for q in questions) >= 50


def step_shape(p: mathgen.Problem) -> tuple[str, ...]:
    """A solution's structure: each step's operations, its operands named by where they come
    from (q: a quantity the question states, s0, s1, ...: an earlier step, c: a constant)."""
    stated = {abs(v) for v in p.numbers.values()}
    out, earlier = [], {}
    for i, step in enumerate(p.steps):

        def name(m):
            n = int(m.group())
            return earlier.get(n) or ("q" if n in stated else "c")

        out.append(re.sub(r"\d+", name, step.expression))
        earlier.setdefault(step.value, f"s{i}")
    return tuple(out)


def test_heldout_families_are_new_structures_and_new_sentences():
    """No held-out problem shares its chain of operations or its sentence structure with a
    training problem: the held-out families are new problems, not new numbers."""
    train, heldout = draws(mathgen.TRAIN_FAMILIES, 2000), draws(mathgen.HELDOUT_FAMILIES, 1000)
    assert not {step_shape(p) for p in train} & {step_shape(p) for p in heldout}
    assert not {mathgen.skeleton(p.question) for p in train} & {mathgen.skeleton(p.question) for p in heldout}
    # ... but they use only the operations training teaches.
    ops = lambda ps: {op for p in ps for s in p.steps for op in re.findall(r"[-+*/]", s.expression)}  # noqa: E731
    assert ops(heldout) <= ops(train)


def test_worksheets_print_only_training_families():
    """The sample crawl (pretraining data) never prints a held-out family."""
    import random

    from tasks.sample_crawl.worksheets import worksheet

    heldout = {mathgen.skeleton(p.question) for p in draws(mathgen.HELDOUT_FAMILIES, 1000, words=True)}
    for index in range(200):
        title, blocks, problems = worksheet(index, 0, random.Random(index))
        assert {p.family for p in problems} <= set(mathgen.TRAIN_FAMILIES)
        assert not {mathgen.skeleton(p.question) for p in problems} & heldout, title
        assert all(any(p.question == b.text for b in blocks) for p in problems)  # what the page prints
