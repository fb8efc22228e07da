"""Terminal front-ends for the engine: `crawl2chat chat` and `crawl2chat generate`.

No flow here: these talk to a person, token by token. The model's own text prints plainly as
it streams; a tool call prints as a coloured `search>`, `calculator>` or `python>` line with the query the
model wrote, and what the tool forced into the stream prints dimmed beneath it, so a reader
always sees which words are the model's and which a tool's.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console

from models.chat import render_for_completion, render_turn, tools_of
from models.engine import Engine, TokenEvent

CALL_STYLE = "bold cyan"
RESULT_STYLE = "dim"
MIN_REPLY_TOKENS = 32  # room kept for the reply when the conversation is trimmed


class StreamPrinter:
    """Prints one row's TokenEvents to a console, styled by who wrote them."""

    def __init__(self, console: Console, engine: Engine):
        self.console = console
        sp = engine.tokenizer.special
        marks = tools_of(engine.tokenizer)
        self.labels = {sp(open_): f"{name}> " for name, (open_, *_) in marks.items()}
        self.closes = {sp(close) for _, close, *_ in marks.values()}
        self.results = {sp(start) for *_, start, _ in marks.values()}
        self.result_ends = {sp(end) for *_, end in marks.values()}
        self.style: str | None = None  # the style of the text being printed

    def _print(self, text: str, style: str | None = None) -> None:
        self.console.print(text, style=style, end="", markup=False, highlight=False, soft_wrap=True)

    def feed(self, event: TokenEvent) -> None:
        token = event.token
        if token in self.labels and not event.forced:
            self._print("\n" + self.labels[token], CALL_STYLE)
            self.style = CALL_STYLE
        elif token in self.closes and not event.forced:
            self._print("\n")
            self.style = None
        elif token in self.results and event.forced:
            self.style = RESULT_STYLE
        elif token in self.result_ends and event.forced:
            self._print("\n")
            self.style = None
        elif event.text:
            self._print(event.text, self.style)
        if event.finished:
            self._print("\n")
            if event.finished == "length":
                self.console.print("[stopped: length limit]", style="yellow", markup=False)


def chat_loop(engine: Engine, console: Console, sampling: dict[str, Any]) -> None:
    """Read a line, stream the reply, repeat; `/reset` starts over, `/quit` or EOF ends.

    The conversation is kept as token ids (the replies exactly as sampled, tool calls and
    results included), so each turn continues what the model actually saw. When it outgrows
    the context, earlier turns are dropped."""
    tok = engine.tokenizer
    limit = engine.config.seq_len - MIN_REPLY_TOKENS
    assistant_end = tok.special("<|assistant_end|>")
    history: list[int] = []
    console.print(
        f"A {engine.config.n_layer}-layer model with a context of {engine.config.seq_len} tokens. "
        "/reset starts over, /quit ends.",
        style="dim",
        markup=False,
    )
    while True:
        try:
            line = console.input("[bold green]you> [/]")
        except EOFError:
            break
        command = line.strip()
        if command in ("/quit", "/exit"):
            break
        if command == "/reset":
            history = []
            console.print("(new conversation)", style="dim")
            continue
        if not command:
            continue
        prompt = (history or [tok.bos_id]) + render_turn(tok, "user", line) + [tok.special("<|assistant_start|>")]
        if len(prompt) > limit:
            console.print("(context full: earlier turns dropped)", style="yellow")
            prompt = render_for_completion(tok, [{"role": "user", "content": line}])
            prompt = prompt if len(prompt) <= limit else [tok.bos_id, *prompt[-(limit - 1) :]]
        console.print("[bold magenta]bot> [/]", end="")
        printer = StreamPrinter(console, engine)
        sample = engine.generate(prompt, 1, on_step=lambda events: printer.feed(events[0]), **sampling)[0]  # noqa: B023 (this reply's printer)
        history = prompt + sample.tokens
        if sample.tokens[-1] != assistant_end:
            history.append(assistant_end)  # close the turn the model left open


def generate_text(
    engine: Engine, console: Console, prompt: str, num_samples: int, sampling: dict[str, Any]
) -> list[dict[str, Any]]:
    """Continue `prompt` (a document: <|bos|> then its text) `num_samples` times; one sample
    streams as it is sampled, several print one after another. Returns the samples."""
    tok = engine.tokenizer
    ids = [tok.bos_id, *tok.encode(prompt)]
    if num_samples == 1:
        console.print(prompt, style="bold", end="", markup=False, highlight=False)
        printer = StreamPrinter(console, engine)
        samples = engine.generate(ids, 1, on_step=lambda events: printer.feed(events[0]), **sampling)
    else:
        samples = engine.generate(ids, num_samples, **sampling)
        for i, sample in enumerate(samples):
            console.print(f"--- sample {i}: {len(sample.tokens)} tokens ({sample.finished})", style="dim", markup=False)
            console.print(prompt, style="bold", end="", markup=False, highlight=False)
            printer, decoder = StreamPrinter(console, engine), tok.stream()
            for n, (token, sampled) in enumerate(zip(sample.tokens, sample.mask), 1):
                last = n == len(sample.tokens)
                text = decoder.push(token) + (decoder.flush() if last else "")
                printer.feed(TokenEvent(i, token, not sampled, text, sample.finished if last else None))
    return [
        {
            "tokens": s.tokens,
            "mask": s.mask,
            "text": s.text,
            "finished": s.finished,
            "tool_calls": [vars(c) for c in s.tool_calls],
        }
        for s in samples
    ]
