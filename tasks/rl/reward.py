"""The reward: is the final answer the known one?

The answer is read with the project's one extractor (tasks/sft/answers.py, which the
evaluation uses too) from the model's own last words: the text after its last tool result
(tasks/evaluate.py `reply_of`), so a number the calculator printed is never mistaken for
the model's answer.

- strict: the last line is exactly "Answer: N" (the format SFT taught) and N is right;
- lenient: the last integer of the reply is right, whatever the format.

Both are recorded for every sample, and one of them (the config's `reward`) is trained on:
a policy can gain strict accuracy by learning the format alone, so both are reported.

Length shaping: within a group, among the samples that are right, the shortest keeps its
reward of 1 and the longest loses `penalty` (linearly between), so GRPO prefers concise
correct solutions while a correct sample always beats a wrong one (penalty < 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tasks.sft.answers import extract_answer


def score(reply: str, answer: int) -> dict[str, Any]:
    """The extracted answers and both rewards of one reply."""
    strict, lenient = extract_answer(reply, strict=True), extract_answer(reply, strict=False)
    return {
        "strict": strict,
        "lenient": lenient,
        "reward_strict": float(strict is not None and strict == answer),
        "reward_lenient": float(lenient is not None and lenient == answer),
    }


def shape_lengths(rewards: Sequence[float], lengths: Sequence[int], penalty: float) -> list[float]:
    """Rewards of one group after the length shaping (see the module docstring): a correct
    sample (reward 1) loses penalty * (length - shortest) / (longest - shortest) among
    the correct ones; the others are unchanged."""
    if not 0 <= penalty < 1:
        raise ValueError(f"the length penalty must be in [0, 1), got {penalty}")
    right = [n for r, n in zip(rewards, lengths) if r >= 1]
    if penalty == 0 or len(right) < 2 or max(right) == min(right):
        return [float(r) for r in rewards]
    low, span = min(right), max(right) - min(right)
    return [float(r) - penalty * (n - low) / span if r >= 1 else float(r) for r, n in zip(rewards, lengths)]
