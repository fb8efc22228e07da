"""The reward at its edges (strict and lenient extraction, with hypothesis), the length shaping,
pass@k, and the problems: users' rows parsed or skipped with a reason, generated ones held
out by seed and by template."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.tokenizer import train
from tasks import mathgen
from tasks.rl import ProblemConfig
from tasks.rl.evaluate import before_after, headline, ks, metrics, pass_at_k
from tasks.rl.problems import BadProblem, check_room, generated, parse_answer, parse_problem, user_problems
from tasks.rl.reward import score, shape_lengths

# -- the reward -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reply, strict, lenient",
    [
        ("Each apple costs 3 dollars.\nAnswer: 3", 3, 3),
        ("Answer: 3\n\n  \n", 3, 3),  # trailing blank lines do not count
        ("Answer: -12", -12, -12),
        ("Answer: 1,234", 1234, 1234),
        ("Answer: 3.", None, 3),  # the strict line is exactly "Answer: N"
        ("Answer: 3 apples", None, 3),
        ("answer: 3", None, 3),
        ("Answer:3", None, 3),
        ("Answer: 3\nI hope that helps", None, 3),  # the answer line must be the last
        ("The answer is 7", None, 7),
        ("no number here", None, None),
        ("", None, None),
    ],
)
def test_extraction_edges(reply, strict, lenient):
    found = score(reply, 3)
    assert (found["strict"], found["lenient"]) == (strict, lenient)
    assert found["reward_strict"] == float(strict == 3)
    assert found["reward_lenient"] == float(lenient == 3)


lines = st.text(
    alphabet=st.characters(
        blacklist_categories=("Cs",), blacklist_characters="\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
    ),
    max_size=40,
)


@given(st.lists(lines, max_size=4), st.integers(-(10**9), 10**9))
def test_a_final_answer_line_is_always_read(before, n):
    reply = "\n".join([*before, f"Answer: {n}"])
    found = score(reply, n)
    assert found["strict"] == n and found["reward_strict"] == 1.0
    assert found["lenient"] == n and found["reward_lenient"] == 1.0
    assert score(reply, n + 1)["reward_strict"] == 0.0  # exactly the known answer, nothing near it


@given(
    st.lists(lines, max_size=4), st.integers(0, 10**6), lines.filter(lambda s: s.strip() and not re.search(r"\d", s))
)
def test_text_after_the_answer_breaks_strict_but_not_lenient(before, n, after):
    reply = "\n".join([*before, f"Answer: {n}", after])
    assert score(reply, n)["strict"] is None
    assert score(reply, n)["lenient"] == n


@given(st.text(max_size=80))
def test_lenient_is_the_last_integer(text):
    found = score(text, 0)
    numbers = re.findall(r"-?\d[\d,]*", text)
    digits = numbers[-1].replace(",", "") if numbers else None
    expected = int(digits) if digits and digits.lstrip("-").isdigit() else None
    assert found["lenient"] == expected


def test_length_shaping_prefers_concise_right_answers():
    # right answers of 10, 20 and 30 tokens; a wrong one of 5
    assert shape_lengths([1, 1, 0, 1], [10, 20, 5, 30], 0.5) == [1.0, 0.75, 0.0, 0.5]
    assert shape_lengths([1, 1, 0], [10, 20, 5], 0.0) == [1.0, 1.0, 0.0]  # off
    assert shape_lengths([1, 0, 0], [40, 5, 6], 0.9) == [1.0, 0.0, 0.0]  # one right answer: nothing to compare
    assert shape_lengths([1, 1], [7, 7], 0.9) == [1.0, 1.0]
    with pytest.raises(ValueError):
        shape_lengths([1], [1], 1.0)


@given(st.lists(st.tuples(st.booleans(), st.integers(1, 200)), min_size=1, max_size=12), st.floats(0, 0.99))
def test_a_right_answer_always_beats_a_wrong_one(group, penalty):
    rewards = [float(ok) for ok, _ in group]
    shaped = shape_lengths(rewards, [n for _, n in group], penalty)
    right = [s for s, (ok, _) in zip(shaped, group) if ok]
    wrong = [s for s, (ok, _) in zip(shaped, group) if not ok]
    assert all(r > 0 for r in right) and all(w == 0 for w in wrong)
    pairs = [(s, n) for s, (ok, n) in zip(shaped, group) if ok]
    assert all(s1 >= s2 for s1, n1 in pairs for s2, n2 in pairs if n1 <= n2)  # shorter never loses


# -- pass@k -----------------------------------------------------------------------------------


def test_pass_at_k_by_hand():
    assert pass_at_k(4, 1, 1) == 0.25
    assert pass_at_k(4, 1, 2) == pytest.approx(1 - 3 / 6)
    assert pass_at_k(4, 2, 3) == 1.0  # fewer than 3 wrong: any 3 hold a right one
    assert pass_at_k(8, 0, 8) == 0.0 and pass_at_k(8, 8, 1) == 1.0
    assert ks(8) == [1, 2, 4, 8] and ks(6) == [1, 2, 4, 6] and ks(1) == [1]
    with pytest.raises(ValueError):
        pass_at_k(4, 5, 1)


@given(st.integers(1, 16).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n))))
def test_pass_at_k_is_a_probability_rising_with_k(nc):
    n, c = nc
    values = [pass_at_k(n, c, k) for k in range(1, n + 1)]
    assert values[0] == pytest.approx(c / n)
    assert all(0 <= v <= 1 for v in values) and values == sorted(values)


def test_metrics_group_by_hold_out():
    def r(pid, sample, ok, holdout, length=10):
        return {
            "prompt_id": pid,
            "sample": sample,
            "reward_strict": float(ok),
            "reward_lenient": float(ok),
            "length": length,
            "holdout": holdout,
        }

    rows = [
        r("a", -1, 1, "seed"),
        r("a", 0, 1, "seed"),
        r("a", 1, 0, "seed"),
        r("b", -1, 0, "family"),
        r("b", 0, 0, "family"),
        r("b", 1, 1, "family", 30),
    ]
    m = metrics(rows)
    assert m["all"]["pass1_greedy"] == 0.5 and m["seed"]["pass1_greedy"] == 1.0 and m["family"]["pass1_greedy"] == 0.0
    assert m["all"]["pass@1"] == 0.5 and m["all"]["pass@2"] == 1.0
    assert m["all"]["length"] == 15.0 and m["family"]["problems"] == 1
    # A run is judged on the held-out families where it has them, else on all its held-out problems.
    assert headline(m) == ("family", m["family"])
    assert headline({"all": m["all"], "id": m["all"]}) == ("all", m["all"])
    assert m["all"]["solved_greedy"] == ["a"] and m["family"]["solved_greedy"] == []


def test_before_after_reads_the_change_problem_by_problem():
    def group(solved, problems=4):
        return {"all": {"problems": problems, "pass1_greedy": len(solved) / problems, "solved_greedy": solved}}

    rows = before_after(group(["a", "b"]), group(["a", "c"]))
    greedy = next(r for r in rows if r["metric"].startswith("pass@1, greedy (strict"))
    # the same rate before and after, yet one problem gained and one lost: not "no change"
    assert (greedy["before"], greedy["after"]) == ("50.0% (2/4, 15-85)", "50.0% (2/4, 15-85)")
    assert greedy["change"] == "+0.0 points (gained 1, lost 1)"
    gained = next(r for r in before_after(group([]), group(["c"])) if r["metric"].startswith("pass@1, greedy (strict"))
    assert gained["change"] == "+25.0 points (gained 1, lost 0)"
    older = {"all": {"problems": 4, "pass1_greedy": 0.5}}  # an evaluation from before the ids were kept
    plain = next(r for r in before_after(older, group(["a"])) if r["metric"].startswith("pass@1, greedy (strict"))
    assert (plain["before"], plain["change"]) == ("50.0%", "-25.0 points")
    # a metric one side has and the other lacks is shown as not measured, never dropped
    sampled = {"all": group(["a"])["all"] | {"reward": 0.5}}
    reward = next(
        r for r in before_after(group(["a"]), sampled) if r["metric"].startswith("mean reward of samples (strict")
    )
    assert (reward["before"], reward["after"]) == ("not measured: no samples drawn in this evaluation", "50.0%")
    assert reward["change"].startswith("not measured")
    assert not any(r["metric"].startswith("mean length") for r in before_after(group(["a"]), sampled))


# -- problems ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, expected",
    [
        (42, 42),
        (42.0, 42),
        ("42", 42),
        (" 42. ", 42),
        ("1,234", 1234),
        ("-7", -7),
        ("He has 3 left.\n#### 72", 72),
        ("#### 1,000", 1000),
    ],
)
def test_answers_that_parse(value, expected):
    assert parse_answer(value) == expected


@pytest.mark.parametrize(
    "value, reason",
    [
        (None, "no answer"),
        ("", "no answer"),
        ("####", "no answer"),
        (12.5, "answer is not an integer"),
        (True, "answer is not an integer"),
        ("twelve", "answer is not an integer"),
        ("1,23", "answer is not an integer"),
        ("3 apples", "answer is not an integer"),
        ([1], "answer is not an integer"),
        (2**63, "answer too large"),
        ("9" * 400, "answer too large"),
    ],
)
def test_answers_that_do_not(value, reason):
    with pytest.raises(BadProblem) as bad:
        parse_answer(value)
    assert bad.value.reason == reason


@given(st.integers(-(10**12), 10**12))
def test_any_integer_round_trips_through_its_spellings(n):
    assert parse_answer(n) == parse_answer(str(n)) == parse_answer(f"{n:,}") == parse_answer(f"Work.\n#### {n}") == n


def test_users_rows_parsed_or_skipped_with_their_reason(tmp_path):
    good = [{"id": f"g{i}", "question": f"What is {i} plus 1?", "answer": i + 1} for i in range(20)]
    lines = [json.dumps(r) for r in good] + [
        "{not json",
        json.dumps([1, 2]),
        json.dumps({"question": "What is 1 plus 1?"}),
        json.dumps({"prompt": "What is 1 plus 1?", "answer": "two"}),
        json.dumps({"prompt": "   ", "answer": 2}),
        json.dumps({"text": "no prompt", "answer": 2}),
        json.dumps({"prompt": 7, "answer": 2}),
        json.dumps({"prompt": "GSM8K style", "answer": "She sold 3.\n#### 1,234"}),
        "",
    ]
    path = tmp_path / "problems.jsonl"
    path.write_text("\n".join(lines) + "\n")
    stats: dict = {}
    rows = list(user_problems(str(path), seed=0, eval_fraction=0.25, stats=stats))
    assert stats["rows"] == 28
    assert stats["skipped"] == {
        "bad JSON": 1,
        "row is not an object": 1,
        "no answer": 1,
        "answer is not an integer": 1,
        "empty prompt": 1,
        "no prompt or question": 1,
        "prompt is not text": 1,
    }
    assert len(rows) == 21 and {r["answer"] for _, r in rows} >= {1234, 20}
    splits = [split for split, _ in rows]
    assert 0 < splits.count("eval") < 21
    assert splits == [split for split, _ in user_problems(str(path), 0, 0.25, {})]  # by id hash: stable
    assert all((r["holdout"] == "id") == (split == "eval") for split, r in rows)
    assert len(stats["examples"]) == 5


def test_prompts_without_room_to_answer_are_counted():
    tok = train(["What is 1 plus 1? " * 20, "Answer: 2"] * 5, 300)
    rows = [{"prompt": "What is 1 plus 1?"}, {"prompt": "What is 1 plus 1? " * 20}]
    stats: dict = {}
    kept = check_room(rows, tok, seq_len=64, min_new_tokens=32, stats=stats)
    assert kept == rows[:1] and stats["skipped"] == {"prompt too long for the context": 1}
    with pytest.raises(BadProblem):
        parse_problem({"prompt": "x" * 5000, "answer": 1})


def test_generated_problems_train_on_training_families_and_judge_on_heldout_ones():
    config = ProblemConfig(difficulty=[1, 2], train=60, eval=40)
    out = generated(config, seed=3)
    assert out == generated(config, seed=3)  # a pure function of the config and seed
    assert {r["template"] for r in out["train"]} == set(mathgen.TRAIN_FAMILIES)
    assert {r["holdout"] for r in out["eval"]} == {"seed", "family"}
    assert all((r["holdout"] == "family") == (r["template"] in mathgen.HELDOUT_FAMILIES) for r in out["eval"])
    assert {r["template"] for r in out["eval"] if r["holdout"] == "family"} == set(mathgen.HELDOUT_FAMILIES)
    assert sum(r["holdout"] == "family" for r in out["eval"]) == 20  # half the evaluation
    assert not {r["prompt"] for r in out["eval"]} & {r["prompt"] for r in out["train"]}
    assert {r["difficulty"] for r in out["train"]} == {1, 2}
    for r in out["train"][:10]:  # the answer is the generator's
        p = mathgen.make_problem(f"rl:3:train:{int(r['id'][-6:])}", r["difficulty"], r["template"], words=None)
        assert (p.question, p.answer) == (r["prompt"], r["answer"])
    # No held-out family, nor a training problem with a held-out structure, in RL's training set.
    heldout = {
        mathgen.skeleton(p.question)
        for p in (mathgen.make_problem(i, 1 + i % 2, f, None) for i in range(400) for f in mathgen.HELDOUT_FAMILIES)
    }
    assert (
        not {mathgen.skeleton(r["prompt"]) for r in generated(ProblemConfig(train=2000, eval=0), 0)["train"]} & heldout
    )
    off = generated(ProblemConfig(heldout_families=False, train=10, eval=20), 0)
    assert {r["holdout"] for r in off["eval"]} == {"seed"}
    with pytest.raises(ValueError, match="held-out families"):
        generated(ProblemConfig(families=["rate_time", "change"]), 0)
    with pytest.raises(ValueError, match="unknown"):
        generated(ProblemConfig(families=["nope"]), 0)


def test_a_tool_choice_ends_the_prompt_in_that_tools_opening_token():
    from tasks.rl.problems import prompt_tokens

    tok = train(["What is 1 plus 1? " * 20, "Answer: 2"] * 5, 300)
    plain = prompt_tokens(tok, "What is 1 plus 1?")
    assert plain[-1] == tok.special("<|assistant_start|>")
    assert prompt_tokens(tok, "What is 1 plus 1?", "python") == [*plain, tok.special("<|python_start|>")]
    assert prompt_tokens(tok, "What is 1 plus 1?", "calculator") == [*plain, tok.special("<|calc_start|>")]
