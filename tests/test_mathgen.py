"""Math word problems: exact integer answers, recomputed independently of the generator."""

from __future__ import annotations

import ast
import operator
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks import mathgen

# The answer of each template from the quantities its question states, written again here.
RECOMPUTE = {
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


def test_every_template_has_an_independent_recomputation():
    assert set(RECOMPUTE) == set(mathgen.TEMPLATES)


@settings(max_examples=300, deadline=None)
@given(
    seed=st.integers(0, 10**9),
    difficulty=st.integers(1, mathgen.MAX_DIFFICULTY),
    template=st.sampled_from(sorted(mathgen.TEMPLATES)),
    words=st.booleans(),
)
def test_answers_are_exact(seed, difficulty, template, words):
    p = mathgen.make_problem(seed, difficulty, template, words)
    assert isinstance(p.answer, int) and p.answer >= 0
    assert RECOMPUTE[template](p.numbers) == p.answer
    # Each step states an expression that evaluates exactly to its value; the last is the answer.
    for step in p.steps:
        assert evaluate(step.expression) == step.value
    assert p.steps[-1].value == p.answer
    # The question states every quantity (digits, or words in worksheet style).
    for name, value in p.numbers.items():
        shown = mathgen.spell(abs(value)).replace("-", " ") if words else str(abs(value))
        assert re.search(rf"(?<![\w-]){re.escape(shown)}(?![\w-])", p.question), (name, shown, p.question)
    if words:
        assert not re.search(r"\d", p.question)


def test_same_seed_same_problem_and_seeds_vary():
    assert mathgen.make_problem(5, 2) == mathgen.make_problem(5, 2)
    batch = mathgen.problems(seed=1, count=40, difficulty=2)
    assert len({p.question for p in batch}) == 40
    assert {p.template for p in batch} == set(mathgen.TEMPLATES)


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
    with pytest.raises(ValueError, match="unknown template"):
        mathgen.make_problem(0, 1, "calculus")


def test_each_problems_program_prints_its_answer_in_the_real_sandbox():
    """The code tool's SFT conversations force str(answer) after each program without running
    it (tasks/sft/generate.py); here every template at every difficulty, with many seeds, is
    run in the sandbox the engine uses, and what it shows must be exactly that."""
    from models.sandbox import Sandbox

    problems = [
        mathgen.make_problem(seed, d, t)
        for seed in range(12)
        for d in range(1, mathgen.MAX_DIFFICULTY + 1)
        for t in sorted(mathgen.TEMPLATES)
    ]
    with Sandbox(size=1) as box:
        for p in problems:
            program = p.program()
            assert "/" not in program.replace("//", "") and len(program.splitlines()) == len(p.steps) + 1
            result = box.run(program)
            assert result.ok and result.text() == str(p.answer), (p.question, program, result)
