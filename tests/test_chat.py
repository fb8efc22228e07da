"""models/chat.py: conversations to ids and loss masks, pinned token by token."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.chat import render_conversation, render_for_completion, show_mask
from models.tokenizer import SPECIALS, Tokenizer
from tests.support import sft_world


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return sft_world.tokenizer(sft_world.world())


def spans(tok: Tokenizer, *parts: tuple[object, int]) -> tuple[list[int], list[int]]:
    """Expected (ids, mask) from parts: a special's name or a text, with its mask bit."""
    ids: list[int] = []
    mask: list[int] = []
    for part, bit in parts:
        piece = [tok.special(part)] if part in SPECIALS else tok.encode(part)
        ids += piece
        mask += [bit] * len(piece)
    return ids, mask


def test_a_plain_turn_trains_the_reply_and_its_end_only(tok):
    messages = [{"role": "user", "content": "Hello there"}, {"role": "assistant", "content": "Hi! How can I help?"}]
    assert render_conversation(tok, messages) == spans(
        tok,
        ("<|bos|>", 0),
        ("<|user_start|>", 0),
        ("Hello there", 0),
        ("<|user_end|>", 0),
        ("<|assistant_start|>", 0),
        ("Hi! How can I help?", 1),
        ("<|assistant_end|>", 1),
    )


def test_a_search_call_is_trained_and_its_results_are_not(tok):
    messages = [
        {"role": "user", "content": "Where was Berit Fischer born?"},
        {"role": "assistant", "content": "", "tool_calls": [{"name": "search", "arguments": "Berit Fischer"}]},
        {"role": "tool", "content": "Berit Fischer: born 1987 in Ashby."},
        {"role": "assistant", "content": "Berit Fischer comes from Ashby."},
    ]
    assert render_conversation(tok, messages) == spans(
        tok,
        ("<|bos|>", 0),
        ("<|user_start|>", 0),
        ("Where was Berit Fischer born?", 0),
        ("<|user_end|>", 0),
        ("<|assistant_start|>", 0),
        ("<|search_start|>", 1),
        ("Berit Fischer", 1),
        ("<|search_end|>", 1),
        ("<|result_start|>", 0),
        ("Berit Fischer: born 1987 in Ashby.", 0),
        ("<|result_end|>", 0),
        ("Berit Fischer comes from Ashby.", 1),
        ("<|assistant_end|>", 1),
    )


def test_calculator_steps_with_text_between_them_stay_in_one_turn(tok):
    messages = [
        {"role": "user", "content": "What is 3 * 4 + 5?"},
        {"role": "assistant", "content": "First", "tool_calls": [{"name": "calculator", "arguments": "3 * 4"}]},
        {"role": "tool", "content": "12"},
        {"role": "assistant", "content": " then", "tool_calls": [{"name": "calculator", "arguments": "12 + 5"}]},
        {"role": "tool", "content": "17"},
        {"role": "assistant", "content": "Answer: 17"},
    ]
    assert render_conversation(tok, messages) == spans(
        tok,
        ("<|bos|>", 0),
        ("<|user_start|>", 0),
        ("What is 3 * 4 + 5?", 0),
        ("<|user_end|>", 0),
        ("<|assistant_start|>", 0),
        ("First", 1),
        ("<|calc_start|>", 1),
        ("3 * 4", 1),
        ("<|calc_end|>", 1),
        ("<|output_start|>", 0),
        ("12", 0),
        ("<|output_end|>", 0),
        (" then", 1),
        ("<|calc_start|>", 1),
        ("12 + 5", 1),
        ("<|calc_end|>", 1),
        ("<|output_start|>", 0),
        ("17", 0),
        ("<|output_end|>", 0),
        ("Answer: 17", 1),
        ("<|assistant_end|>", 1),
    )


def test_two_calls_in_one_message_each_get_their_result_in_order(tok):
    messages = [
        {"role": "user", "content": "Sum?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"name": "calculator", "arguments": "1 + 1"}, {"name": "search", "arguments": "Ashby"}],
        },
        {"role": "tool", "content": "2"},
        {"role": "tool", "content": "no results"},
        {"role": "assistant", "content": "2"},
    ]
    assert render_conversation(tok, messages) == spans(
        tok,
        ("<|bos|>", 0),
        ("<|user_start|>", 0),
        ("Sum?", 0),
        ("<|user_end|>", 0),
        ("<|assistant_start|>", 0),
        ("<|calc_start|>", 1),
        ("1 + 1", 1),
        ("<|calc_end|>", 1),
        ("<|output_start|>", 0),
        ("2", 0),
        ("<|output_end|>", 0),
        ("<|search_start|>", 1),
        ("Ashby", 1),
        ("<|search_end|>", 1),
        ("<|result_start|>", 0),
        ("no results", 0),
        ("<|result_end|>", 0),
        ("2", 1),
        ("<|assistant_end|>", 1),
    )


def test_system_joins_the_first_user_turn_and_later_turns_mask_the_same_way(tok):
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Bye"},
        {"role": "assistant", "content": "Goodbye."},
    ]
    assert render_conversation(tok, messages) == spans(
        tok,
        ("<|bos|>", 0),
        ("<|user_start|>", 0),
        ("Be brief.\n\nHi", 0),
        ("<|user_end|>", 0),
        ("<|assistant_start|>", 0),
        ("Hello.", 1),
        ("<|assistant_end|>", 1),
        ("<|user_start|>", 0),
        ("Bye", 0),
        ("<|user_end|>", 0),
        ("<|assistant_start|>", 0),
        ("Goodbye.", 1),
        ("<|assistant_end|>", 1),
    )


def test_the_generation_prompt_is_the_conversation_up_to_the_reply(tok):
    history = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Who are you?"},
    ]
    ids, mask = render_conversation(tok, [*history, {"role": "assistant", "content": "A model."}])
    prompt = render_for_completion(tok, history)
    assert ids[: len(prompt)] == prompt and prompt[-1] == tok.special("<|assistant_start|>")
    last_user = len(prompt) - 1 - prompt[::-1].index(tok.special("<|user_start|>"))
    assert not any(mask[last_user : len(prompt)]) and all(
        mask[len(prompt) :]
    )  # the question is context, the reply trained


@pytest.mark.parametrize(
    "messages, error",
    [
        ([{"role": "tool", "content": "x"}], "without the assistant's call"),
        ([{"role": "assistant", "content": "x"}], "must follow a user"),
        (
            [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": "", "tool_calls": [{"name": "search", "arguments": "a"}]},
            ],
            "no tool message",
        ),
        (
            [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": "", "tool_calls": [{"name": "search", "arguments": "a"}]},
                {"role": "tool", "content": "r"},
            ],
            "ends inside an assistant turn",
        ),
        (
            [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": "", "tool_calls": [{"name": "javascript", "arguments": "a"}]},
                {"role": "tool", "content": "r"},
                {"role": "assistant", "content": "x"},
            ],
            "unknown tool",
        ),
        ([{"role": "narrator", "content": "x"}], "unknown role"),
        ([{"role": "user", "content": 5}, {"role": "assistant", "content": "x"}], "must be text"),
    ],
)
def test_broken_conversations_are_refused_with_the_reason(tok, messages, error):
    with pytest.raises(ValueError, match=error):
        render_conversation(tok, messages)


TEXT = st.text(alphabet=st.sampled_from(list("ab <|>_user_startassistant_end\n")), max_size=40)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(question=TEXT, answer=TEXT, query=TEXT)
def test_typed_text_never_becomes_a_special_and_only_assistant_tokens_train(tok, question, answer, query):
    messages = [
        {"role": "user", "content": question},
        {"role": "assistant", "content": "", "tool_calls": [{"name": "search", "arguments": query}]},
        {"role": "tool", "content": question},
        {"role": "assistant", "content": answer},
    ]
    ids, mask = render_conversation(tok, messages)
    specials = [t for t in ids if tok.is_special(t)]
    assert specials == [
        tok.special(s)
        for s in (
            "<|bos|>",
            "<|user_start|>",
            "<|user_end|>",
            "<|assistant_start|>",
            "<|search_start|>",
            "<|search_end|>",
            "<|result_start|>",
            "<|result_end|>",
            "<|assistant_end|>",
        )
    ]
    assert sum(mask) == len(tok.encode(query)) + 2 + len(tok.encode(answer)) + 1
    assert tok.decode([t for t, m in zip(ids, mask) if m]) == query + answer


def test_show_mask_brackets_exactly_the_trained_text(tok):
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]
    assert (
        show_mask(tok, *render_conversation(tok, messages))
        == "<|bos|><|user_start|>Hi<|user_end|><|assistant_start|>[[Hello.<|assistant_end|>]]"
    )
