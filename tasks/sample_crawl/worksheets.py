"""Math worksheet pages: word problems from tasks/mathgen.py with worked solutions.

Numbers are written in words, as many worksheets for young readers do. That is also what
lets these pages survive curation: Gopher's quality rule drops a page when fewer than 80% of
its tokens contain a letter, and a solution full of digits, `$` and `=` signs falls far below
that (FineWeb loses most math pages this way). Each problem on a page uses a different
family, so a page never repeats one sentence pattern. Only the training families are printed
(mathgen.TRAIN_FAMILIES): the held-out ones must stay unseen by pretraining too.
"""

from __future__ import annotations

import random

from tasks import mathgen
from tasks.sample_crawl.site import Block

TOPICS = (
    ("shopping and money", "Money"),
    ("everyday arithmetic", "Mixed practice"),
    ("multi-step problems", "Multi-step"),
    ("problems with several steps", "Challenge set"),
)
_INTROS = (
    "Work through each problem on paper before you read the solution.",
    "Try each question yourself first, then compare your working with ours.",
    "Each problem below comes with a worked solution that shows every step.",
    "Read each question twice, note what you know, and then decide which operation to use.",
)


def worksheet(index: int, seed: int, rng: random.Random) -> tuple[str, list[Block], list[mathgen.Problem]]:
    """(title, blocks, problems) of worksheet number `index`."""
    topic, label = rng.choice(TOPICS)
    difficulty = rng.choice((1, 1, 2, 2, 3))
    count = rng.randint(4, 6)
    families = rng.sample(sorted(mathgen.TRAIN_FAMILIES), count)
    problems = [
        mathgen.make_problem(f"sheet:{seed}:{index}:{i}", difficulty, f, words=True) for i, f in enumerate(families)
    ]
    grade = 2 + difficulty + rng.randint(0, 1)
    title = f"{label} word problems for grade {grade}, sheet {index + 1}"
    # The second sentence names this sheet's own problems, so no two intros are the same
    # paragraph (trafilatura's in-page dedup also drops paragraphs it has seen on other pages).
    kinds = (
        ", ".join(p.family.replace("_", " ") for p in problems[:-1]) + f" and {problems[-1].family.replace('_', ' ')}"
    )
    intro = f"{rng.choice(_INTROS)} This sheet practises {topic} with {count} problems about {kinds}."
    blocks = [Block("h1", title), Block("p", intro)]
    for k, problem in enumerate(problems, 1):
        solution = " ".join(step.text for step in problem.steps)
        blocks += [
            Block("h2", f"Problem {k}"),
            Block("p", problem.question),
            Block("p", f"Solution: {solution} The answer is {problem.answer}."),
        ]
    return title, blocks, problems
