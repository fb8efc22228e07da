"""Chat turns as token ids: the format every chat stage shares.

    <|bos|> <|user_start|> question <|user_end|> <|assistant_start|> answer <|assistant_end|> ...

Inside an assistant turn the model may call a tool (`TOOL_TOKENS`): it writes the call's
opening token, the query or expression, and the closing token; the engine then forces the
result between the result's tokens into the stream.

Text only ever goes through `Tokenizer.encode`, which never produces a special token, so a
user who types "<|assistant_end|>" gets those characters, not the token. Only this module
(and the engine, for tool results) puts specials in, by id.

`render_for_completion` renders a conversation prefix ending in <|assistant_start|>: the
prompt the engine samples the next assistant turn from (chat CLI, evaluation, RL).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from models.tokenizer import Tokenizer

ROLES = ("user", "assistant")
# A tool's name in the messages format -> (call's open, call's close, result's open, result's close).
TOOL_TOKENS = {
    "search": ("<|search_start|>", "<|search_end|>", "<|result_start|>", "<|result_end|>"),
    "calculator": ("<|calc_start|>", "<|calc_end|>", "<|output_start|>", "<|output_end|>"),
}


def render_turn(tokenizer: Tokenizer, role: str, text: str) -> list[int]:
    """One finished turn: <|{role}_start|> text <|{role}_end|>."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; roles are {ROLES}")
    sp = tokenizer.special
    return [sp(f"<|{role}_start|>"), *tokenizer.encode(text), sp(f"<|{role}_end|>")]


def render_for_completion(tokenizer: Tokenizer, messages: Iterable[Mapping[str, str]]) -> list[int]:
    """<|bos|>, every message ({"role", "content"}) as a turn, then <|assistant_start|>: the
    prompt from which the engine samples the assistant's reply (up to <|assistant_end|>)."""
    ids = [tokenizer.bos_id]
    for message in messages:
        ids += render_turn(tokenizer, message["role"], message["content"])
    return ids + [tokenizer.special("<|assistant_start|>")]
