"""Chat turns as token ids: the format every chat stage shares.

    <|bos|> <|user_start|> question <|user_end|>
    <|assistant_start|> text <|search_start|> query <|search_end|>
                             <|result_start|> passages <|result_end|>
                        more text <|assistant_end|> ...

Text only ever goes through `Tokenizer.encode`, which never produces a special token, so a
user who types "<|assistant_end|>" gets those characters, not the token. Only this module
(and the engine, for tool results) puts specials in, by id.

Two renderers share these rules:
- `render_for_completion`: a conversation prefix ending in <|assistant_start|>, the prompt
  the engine samples the next assistant turn from (chat CLI, evaluation, RL).
- `render_conversation`: a whole conversation as ids plus a loss mask, for SFT. The mask is 1
  where the model must learn to write the token: the assistant's text, the tool calls it
  writes (the <|search_start|>/<|calc_start|>/<|python_start|> token, the query, expression
  or program, the closing token) and its <|assistant_end|> (so it learns to stop). It is 0 on <|bos|>, system and
  user turns, <|assistant_start|> (the prompt gives it) and on whole tool results
  (<|result_start|>...<|result_end|>, <|output_start|>...<|output_end|>,
  <|python_output_start|>...<|python_output_end|>), which the engine
  forces into the stream at inference: a model trained on them would learn to invent them.

Messages follow the common `messages` format: {"role": "system"|"user"|"assistant"|"tool",
"content": str, "tool_calls": [{"name": "search"|"calculator"|"python", "arguments": str}]}
(python: the program's source; its tool message is what the sandbox printed). An
assistant message with tool calls is followed by one tool message per call (its result);
the assistant's turn goes on in the next assistant message, inside the same
<|assistant_start|>...<|assistant_end|> span, exactly as the engine writes it. A leading
system message is merged into the first user turn (the model has no system role).
tasks/sft/schema.py validates conversations from users before they get here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from models.tokenizer import Tokenizer

ROLES = ("user", "assistant")
# A tool's name in the messages format -> (call's open, call's close, result's open, result's close).
TOOL_TOKENS = {
    "search": ("<|search_start|>", "<|search_end|>", "<|result_start|>", "<|result_end|>"),
    "calculator": ("<|calc_start|>", "<|calc_end|>", "<|output_start|>", "<|output_end|>"),
    "python": ("<|python_start|>", "<|python_end|>", "<|python_output_start|>", "<|python_output_end|>"),
}


def tools_of(tokenizer: Tokenizer) -> dict[str, tuple[str, str, str, str]]:
    """The tools whose tokens this tokenizer has (one trained before the code tool lacks
    "python"), as TOOL_TOKENS entries."""
    return {name: marks for name, marks in TOOL_TOKENS.items() if all(tokenizer.has_special(m) for m in marks)}


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


class _Rendering:
    """The conversation as parts (a special's id, or a text to encode) with their mask bit;
    `done` encodes every text in one call (one trip into sentencepiece, not one per part)."""

    def __init__(self, tokenizer: Tokenizer):
        self.tok = tokenizer
        self.parts: list[tuple[int | str, int]] = [(tokenizer.bos_id, 0)]

    def special(self, name: str, trained: bool) -> None:
        self.parts.append((self.tok.special(name), int(trained)))

    def text(self, text: str, trained: bool) -> None:
        if text:
            self.parts.append((text, int(trained)))

    def done(self) -> tuple[list[int], list[int]]:
        encoded = iter(self.tok.encode_batch([p for p, _ in self.parts if isinstance(p, str)]))
        ids: list[int] = []
        mask: list[int] = []
        for part, bit in self.parts:
            piece = next(encoded) if isinstance(part, str) else [part]
            ids.extend(piece)
            mask.extend([bit] * len(piece))
        return ids, mask


def _content(message: Mapping[str, Any]) -> str:
    content = message.get("content")
    if content is None:
        return ""
    if not isinstance(content, str):
        raise ValueError(f"{message.get('role')} content must be text, got {type(content).__name__}")
    return content


def render_conversation(tokenizer: Tokenizer, messages: Sequence[Mapping[str, Any]]) -> tuple[list[int], list[int]]:
    """(ids, mask) of a whole conversation; see the module docstring for what is trained.

    Raises ValueError on a conversation that breaks the format (tasks/sft/schema.py turns
    user data into valid conversations, or skips a row with the reason)."""
    out = _Rendering(tokenizer)
    messages = list(messages)
    system = ""
    if messages and messages[0].get("role") == "system":
        system = _content(messages[0])
        messages = messages[1:]
    in_turn = False  # inside <|assistant_start|> ... <|assistant_end|>
    i = 0
    while i < len(messages):
        message = messages[i]
        role = message.get("role")
        if role == "user":
            if in_turn:
                raise ValueError(f"message {i}: a user message inside an unfinished assistant turn")
            text = _content(message)
            if system:
                text, system = f"{system}\n\n{text}", ""
            out.special("<|user_start|>", False)
            out.text(text, False)
            out.special("<|user_end|>", False)
        elif role == "assistant":
            if not in_turn:
                if i == 0 or messages[i - 1].get("role") != "user":
                    raise ValueError(f"message {i}: an assistant reply must follow a user message")
                out.special("<|assistant_start|>", False)
                in_turn = True
            out.text(_content(message), True)
            calls = message.get("tool_calls") or []
            for call in calls:
                i += 1
                result = messages[i] if i < len(messages) else None
                if result is None or result.get("role") != "tool":
                    raise ValueError(f"tool call {call.get('name')!r} has no tool message with its result")
                name = call.get("name")
                if name not in TOOL_TOKENS:
                    raise ValueError(f"unknown tool {name!r}; tools are {sorted(TOOL_TOKENS)}")
                if not tokenizer.has_special(TOOL_TOKENS[name][0]):
                    raise ValueError(
                        f"this tokenizer has no tokens for the {name} tool (it was trained before the tool existed)"
                    )
                open_, close, result_open, result_close = TOOL_TOKENS[name]
                out.special(open_, True)
                out.text(str(call.get("arguments", "")), True)
                out.special(close, True)
                out.special(result_open, False)
                out.text(_content(result), False)
                out.special(result_close, False)
            if not calls:
                out.special("<|assistant_end|>", True)
                in_turn = False
        elif role == "tool":
            raise ValueError(f"message {i}: a tool message without the assistant's call before it")
        else:
            raise ValueError(f"message {i}: unknown role {role!r}")
        i += 1
    if in_turn:
        raise ValueError("the conversation ends inside an assistant turn (a tool result with no reply after it)")
    return out.done()


def show_mask(tokenizer: Tokenizer, ids: Sequence[int], mask: Sequence[int]) -> str:
    """The conversation as text with the trained spans in [[...]] and specials by name: how
    a person checks by eye what SFT trains on."""
    parts: list[str] = []
    run: list[int] = []  # ordinary tokens waiting to be decoded together (a character may span two)
    trained = False
    for token, bit in zip([*ids, None], [*mask, 0]):
        special = token is not None and tokenizer.is_special(token)
        if token is None or special or bool(bit) != trained:
            parts.append(tokenizer.decode(run))
            run = []
        if bool(bit) != trained:
            parts.append("[[" if bit else "]]")
            trained = bool(bit)
        if special:
            parts.append(tokenizer.id_to_piece(token))
        elif token is not None:
            run.append(token)
    return "".join(parts)
