"""The inference engine: sampling from a GPT with a KV cache, many samples at once, and tools.

    engine = Engine(model, tokenizer, search=SearchIndex.open(uri))
    for step in engine.stream(prompt_ids, num_samples=4, temperature=0.8, top_p=0.95, seed=1):
        ...                                   # one TokenEvent per row that advanced
    samples = engine.generate(prompt_ids, num_samples=16, seed=s)   # tokens, mask, text per row

How it runs:
- **Prefill once, decode from the cache.** The prompt goes through the model once, at batch
  size 1; its keys and values are copied into every row of a cache of `num_samples` rows, and
  from then on each step feeds one token per row and attends to the cache. Rows that finish
  are dropped from the batch (and the cache), so the step cost follows the live rows.
- **Many prompts in one batch** (`stream_batch`, `generate_batch`: RL rollouts, evaluation):
  the prompts are prefilled together, left-padded to the longest; each fills as many cache
  rows as it wants samples, and every step decodes all rows of all prompts at once. Padding
  slots are masked and rotary positions are per row (models/gpt.py KVCache), so a row
  computes what it would alone: on a GPU the step costs about the same for 256 rows as for 8.
- **Sampling**: temperature (0 = greedy), top-k, then top-p (nucleus: the smallest set of
  tokens whose probability reaches p), then one uniform draw per row against the cumulative
  distribution.
- **Seeds**: every row has its own generator, seeded by `sample_seed(seed, sample_index)`, and
  draws from it only when it samples. So sample i of a prompt is the same whether it is drawn
  alone, in a batch of 16, or in a retried chunk holding samples 8..15 (`first_sample=8`) —
  what RL needs for reproducible rollouts. (Up to float rounding: a batched matmul may round
  differently from an unbatched one, which can flip a draw that falls on a boundary.)
- **Tools**, a state machine per row: when a row samples `<|search_start|>`, the tokens it
  samples up to `<|search_end|>` are the query; the engine runs the search and queues
  `<|result_start|>` passages `<|result_end|>`, which are fed to that row on the next steps
  instead of samples. `<|calc_start|>` expr `<|calc_end|>` gets `<|output_start|>` value
  `<|output_end|>` the same way, and `<|python_start|>` program `<|python_end|>` gets what
  the program printed, run in the sandbox (models/sandbox.py), between
  `<|python_output_start|>` and `<|python_output_end|>`. Forced tokens have mask 0 (SFT and RL must not train on what
  a tool wrote); a refused call gets "error: why" as its result, so the model sees it failed.
- **Stopping**: a row finishes on a stop token (kept, with mask 1: RL learns to stop) or when
  it reaches `max_new_tokens` or the model's context.
- **Streaming text**: each row decodes its growing sequence incrementally (the tokenizer's
  StreamDecoder), so spaces and multi-byte characters split across tokens come out right.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Collection, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn

from models import checkpoint
from models import sandbox as sandboxes
from models.chat import tools_of
from models.decode import StaticDecoder, bucket_rows, bucket_slots, compiled
from models.device import resolve
from models.gpt import KVCache, StackedLayer
from models.hashing import seed63
from models.sandbox import Sandbox, SandboxUnavailable
from models.tokenizer import StreamDecoder, Tokenizer
from models.tools import SearchIndex, ToolError, calculate, format_passages

DEFAULT_STOPS = ("<|assistant_end|>", "<|bos|>")
# eager: the cache grows and finished rows leave (no compilation; the CPU default);
# static: models/decode.py's fixed-shape step, uncompiled (what `compiled` runs, checkable on a CPU);
# compiled: that step through torch.compile, CUDA graphs on a GPU (the GPU default).
DECODE_MODES = ("auto", "eager", "static", "compiled")
# Passages per search and the characters of them the model reads; SFT trains with the same
# (tasks/sft SFTConfig), and a model should be run as it was trained.
SEARCH_RESULTS = 3
RESULT_CHARS = 600
CODE_OUTPUT_CHARS = 400  # of a program's output: the end is kept (its last line, an error's, matters most)
TOOLS = ("search", "calculator", "python")


def sample_seed(*keys: int) -> int:
    """A 63-bit seed from integers (e.g. run seed, prompt index, sample index): independent
    streams for different keys, the same stream for the same keys on any machine."""
    return seed63("/".join(str(int(k)) for k in keys))


def filter_logits(logits: torch.Tensor, temperature: float, top_k: int | None, top_p: float | None) -> torch.Tensor:
    """Probabilities (rows, vocab) after temperature, top-k and top-p; float32."""
    logits = logits.float() / temperature
    vocab = logits.size(-1)
    if top_k and top_k < vocab:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if top_p is not None and top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        before = sorted_probs.cumsum(dim=-1) - sorted_probs  # mass of the more likely tokens
        sorted_probs = sorted_probs.masked_fill(before >= top_p, 0.0)  # the first always stays
        probs = torch.zeros_like(probs).scatter_(-1, order, sorted_probs)
        probs = probs / probs.sum(dim=-1, keepdim=True)
    return probs


def draw(probs: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """Inverse-CDF sampling: for row j, the first token whose cumulative probability exceeds
    uniforms[j] (in [0, 1)) times the row's total. Zero-probability tokens are never chosen."""
    cdf = probs.double().cumsum(dim=-1)
    target = (uniforms.to(cdf) * cdf[:, -1]).unsqueeze(1)
    picked = torch.searchsorted(cdf, target, right=True).squeeze(1).clamp_(max=probs.size(-1) - 1)
    # Rounding can land past the last nonzero token; take the last nonzero one instead.
    bad = probs.gather(1, picked[:, None]).squeeze(1) == 0
    if bad.any():
        last = probs.size(-1) - 1 - (probs[bad].flip(-1) > 0).int().argmax(-1)
        picked[bad] = last
    return picked


@dataclass
class ToolCall:
    tool: str  # "search", "calculator" or "python" (models.chat.TOOL_TOKENS)
    query: str  # what the model wrote between the markers
    result: str  # what was forced into its stream (an "error: ..." for a refused call)
    ok: bool


def run_tool(
    tool: str,
    query: str,
    index: SearchIndex | None,
    search_results: int = SEARCH_RESULTS,
    result_chars: int = RESULT_CHARS,
    code: Sandbox | None = None,
    code_chars: int = CODE_OUTPUT_CHARS,
) -> ToolCall:
    """Run one tool call: the calculator's value, the best passages as `format_passages`
    writes them, or what the program printed (`Result.text`: output, then the last
    expression's value or the error's last line) in `code`, the sandbox (default: the
    process's shared one). A refusal becomes an "error: ..." result, never an exception.
    (Code that writes SFT data can call this, so training reads exactly what inference
    will force.)"""
    try:
        if tool == "calculator":
            result = calculate(query)
        elif tool == "python":
            try:
                box = code or sandboxes.shared()
            except SandboxUnavailable as exc:
                raise ToolError(f"the code tool is unavailable: {exc}") from None
            ran = box.run(query)
            return ToolCall(tool, query, ran.text(code_chars), ran.ok)
        elif index is None:
            raise ToolError("no search index is loaded")
        else:
            result = format_passages(index.search(query, k=search_results, max_chars=result_chars), result_chars)
        return ToolCall(tool, query, result, True)
    except ToolError as exc:
        return ToolCall(tool, query, f"error: {exc}", False)


def result_tokens(tokenizer: Tokenizer, tool: str, result: str) -> list[int]:
    """A tool's result in the token stream: <|result_start|> text <|result_end|> for search,
    <|output_start|> text <|output_end|> for the calculator, <|python_output_start|> text
    <|python_output_end|> for code (the span models/chat.py renders from a tool message for
    SFT). The text is encoded as text: a program that prints "<|assistant_end|>" puts those
    characters in the stream, never the token."""
    *_, start, end = tools_of(tokenizer)[tool]
    return [tokenizer.special(start), *tokenizer.encode(result), tokenizer.special(end)]


@dataclass
class Request:
    """A prompt and how many samples of it to draw (`stream_batch` serves many at once).
    Sample i is seeded by `sample_seed(seed, first_sample + i)`."""

    prompt: Sequence[int]
    num_samples: int = 1
    seed: int = 0
    first_sample: int = 0


@dataclass
class TokenEvent:
    """One token of one row, as it is decided."""

    row: int
    token: int
    forced: bool  # written by a tool, not sampled
    text: str  # the text this token completes ("" for a special, or a partial character)
    finished: str | None = None  # "stop" or "length" when this was the row's last token


@dataclass
class Sample:
    tokens: list[int]  # the new tokens (prompt excluded), stop token included
    mask: list[int]  # 1 sampled, 0 forced by a tool
    text: str  # the tokens' text (specials decode to nothing)
    finished: str  # "stop" or "length"
    tool_calls: list[ToolCall] = field(default_factory=list)


@dataclass
class _Row:
    decoder: StreamDecoder
    tokens: list[int] = field(default_factory=list)
    mask: list[int] = field(default_factory=list)
    text: list[str] = field(default_factory=list)
    forced: deque[int] = field(default_factory=deque)
    call: tuple[str, list[int]] | None = None  # the tool being called and its tokens so far
    tool_calls: list[ToolCall] = field(default_factory=list)
    finished: str | None = None


class Engine:
    """Sampling with a KV cache and tools, for one model and its tokenizer."""

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Tokenizer,
        *,
        search: SearchIndex | None = None,
        search_results: int = SEARCH_RESULTS,
        result_chars: int = RESULT_CHARS,
        code: Sandbox | None = None,
        code_chars: int = CODE_OUTPUT_CHARS,
        tools: Collection[str] = TOOLS,
        decode: str = "auto",
    ):
        """`code`: the sandbox for the code tool (None: the process's shared pool, started
        on the model's first call). `tools`: the tools that run; a call to another gets
        "error: the {tool} tool is off" (an evaluation with one tool, or none). `decode`: one
        of DECODE_MODES ("auto": the compiled fixed-shape step on a GPU, uncompiled for a model
        with recall in context; eager on a CPU)."""
        if unknown := set(tools) - set(TOOLS):
            raise ValueError(f"unknown tools {sorted(unknown)}; tools are {TOOLS}")
        if decode not in DECODE_MODES:
            raise ValueError(f"decode must be one of {DECODE_MODES}, not {decode!r}")
        if model.config.vocab_size != tokenizer.vocab_size:
            raise ValueError(f"the model has {model.config.vocab_size} token ids, the tokenizer {tokenizer.vocab_size}")
        self.model = model.eval()
        self.config = model.config
        self.tokenizer = tokenizer
        self.search_index = search
        self.search_results = search_results
        self.result_chars = result_chars
        self.code = code
        self.code_chars = code_chars
        self.tools = frozenset(tools)
        sp = tokenizer.special
        marks = tools_of(tokenizer)  # a tokenizer from before the code tool has no python tokens
        self._opens = {sp(open_): name for name, (open_, *_) in marks.items()}
        self._closes = {name: sp(close) for name, (_, close, *_) in marks.items()}
        # Recall in context reads each row's search call and result in Python (found_in_results):
        # the fixed-shape step runs it, a CUDA graph cannot capture it.
        in_context = model.config.recall and model.config.recall_scope == "context"
        if decode == "compiled" and in_context:
            raise ValueError("a model with recall in context cannot decode compiled: use static or eager")
        on_gpu = next(model.parameters()).is_cuda
        fast = "static" if in_context else "compiled"
        self.decode = (fast if on_gpu else "eager") if decode == "auto" else decode
        self._decoders: dict[tuple[int, int], list[StaticDecoder]] = {}  # idle decoders by shape
        self._decoders_lock = threading.Lock()

    @classmethod
    def from_checkpoint(
        cls,
        uri: str,
        *,
        search: str | None = None,
        tokenizer: str | None = None,
        device: str = "auto",
        dtype: str = "auto",
        **options: Any,
    ) -> Engine:
        """An engine for a checkpoint (a step folder, or a run: its latest) with the tokenizer
        it was trained with (or `tokenizer`) and, given `search` (a `search/{crawl}` URI),
        the search tool; on the device and in the dtype of models/device.py's rule (the GPU
        in bf16 when there is one)."""
        placement = resolve(device, dtype)  # type: ignore[arg-type]
        model, ckpt = checkpoint.load_model(uri, placement.device)
        model = placement.for_inference(model)
        tokenizer_uri = tokenizer or ckpt.config.get("tokenizer")
        if not tokenizer_uri:
            raise ValueError(f"{ckpt.uri} does not name its tokenizer: pass one")
        index = SearchIndex.open(search) if search else None
        return cls(model, Tokenizer.load(tokenizer_uri), search=index, **options)

    # -- tools ---------------------------------------------------------------------------

    def run_tool(self, tool: str, query: str) -> ToolCall:
        if tool not in self.tools:
            return ToolCall(tool, query, f"error: the {tool} tool is off", False)
        return run_tool(
            tool, query, self.search_index, self.search_results, self.result_chars, self.code, self.code_chars
        )

    def new_row(self, prompt: Sequence[int]) -> _Row:
        """A row's state for `prompt`: inside a tool call when the prompt opens one (asks for
        that tool). The engine and the server's batcher both start their rows here."""
        row = _Row(self.tokenizer.stream())
        if prompt and prompt[-1] in self._opens:
            row.call = (self._opens[prompt[-1]], [])
        return row

    def _after_sampled(self, row: _Row, token: int, stops: frozenset[int]) -> None:
        """Advance a row's state machine by a token it sampled (forced ones never call tools)."""
        if token in stops:
            row.finished = "stop"
        elif row.call is None:
            if token in self._opens:
                row.call = (self._opens[token], [])
        elif token == self._closes[row.call[0]]:
            tool, ids = row.call
            row.call = None
            call = self.run_tool(tool, self.tokenizer.decode(ids))
            row.tool_calls.append(call)
            row.forced.extend(result_tokens(self.tokenizer, tool, call.result))
        else:
            row.call[1].append(token)

    def _take(self, row: _Row, index: int, sampled: int | None, stops: frozenset[int], budget: int) -> TokenEvent:
        """Append the row's next token (`sampled`, or None: the next forced one), advance its
        tools and stopping, and return the event (models/batcher.py steps rows the same way)."""
        forced = sampled is None
        token = row.forced.popleft() if forced else sampled
        row.tokens.append(token)
        row.mask.append(0 if forced else 1)
        if not forced:
            self._after_sampled(row, token, stops)
        if row.finished is None and len(row.tokens) >= budget:
            row.finished = "length"
        text = row.decoder.push(token) + (row.decoder.flush() if row.finished else "")
        row.text.append(text)
        return TokenEvent(index, token, forced, text, row.finished)

    # -- generation ----------------------------------------------------------------------

    def stream(
        self,
        prompt: Sequence[int],
        num_samples: int = 1,
        *,
        seed: int = 0,
        first_sample: int = 0,
        **options: Any,
    ) -> Generator[list[TokenEvent], None, list[Sample]]:
        """Sample `num_samples` continuations of `prompt`, yielding each step's tokens; the
        generator's return value (what `generate` returns) is the finished samples.

        Row i is sample `first_sample + i`, seeded by `sample_seed(seed, first_sample + i)`.
        A prompt that ends with a tool's opening token (`<|python_start|>`: "answer with
        code") puts every row inside that call: what it samples up to the closing token runs.
        `options`: those of `stream_batch` (max_new_tokens, temperature, top_k, top_p, stop).
        """
        results = yield from self.stream_batch([Request(prompt, num_samples, seed, first_sample)], **options)
        return results[0]

    @torch.inference_mode()
    def stream_batch(
        self,
        requests: Sequence[Request],
        *,
        max_new_tokens: int = 256,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        stop: Sequence[int] | None = None,
    ) -> Generator[list[TokenEvent], None, list[list[Sample]]]:
        """Sample every request's continuations in one batch: one prefill of all the prompts
        (left-padded to the longest), then one decode step for all rows together, so a GPU
        sees hundreds of rows per kernel instead of a prompt's few. Events carry the row's
        index over the whole batch (request by request, sample by sample); the return value
        is each request's samples. A row's samples are those it would get alone, up to float
        rounding (see the module's docstring).

        `stop`: token ids that end a row (default <|assistant_end|> and <|bos|>).
        """
        if not requests:
            return []
        if top_k is not None and top_k < 1 or top_p is not None and not 0 < top_p <= 1:
            raise ValueError(f"top_k must be at least 1 and top_p in (0, 1]; got {top_k}, {top_p}")
        prompts = [[int(t) for t in r.prompt] for r in requests]
        budgets = []
        for prompt, request in zip(prompts, requests):
            if not prompt:
                raise ValueError("the prompt is empty (start it with <|bos|>)")
            if request.num_samples < 1:
                raise ValueError("num_samples must be at least 1")
            budget = min(max_new_tokens, self.config.seq_len - len(prompt))
            if budget <= 0:
                raise ValueError(
                    f"a prompt of {len(prompt)} tokens leaves no room in the context of {self.config.seq_len}"
                )
            budgets.append(budget)
        stops = frozenset(self.tokenizer.special(s) for s in DEFAULT_STOPS) if stop is None else frozenset(stop)
        greedy = temperature <= 0
        owner = [r for r, request in enumerate(requests) for _ in range(request.num_samples)]  # each row's request
        rows = [self.new_row(prompts[r]) for r in owner]
        generators = [
            torch.Generator().manual_seed(sample_seed(request.seed, request.first_sample + i))
            for request in requests
            for i in range(request.num_samples)
        ]

        # One snapshot of the stacked weights for this generation: a third fewer kernel calls
        # per step (the weights do not change while it runs).
        stacked = self.model.stacked_weights()
        cache, logits = self._prefill_batch(prompts, [r.num_samples for r in requests], max(budgets), stacked)
        decoder = None if self.decode == "eager" else self._take_decoder(len(rows), cache.max_len)
        if decoder is not None:
            decoder.load(cache)  # the eager cache is dropped: the decoder holds the prompts now
        live = list(range(len(rows)))  # the rows still generating, in cache order
        try:
            yield from self._decode(
                rows,
                live,
                logits,
                owner,
                budgets,
                generators,
                stops,
                greedy,
                top_k,
                top_p,
                temperature,
                decoder or cache,
                stacked,
            )
        finally:
            if decoder is not None:
                self._return_decoder(decoder)
        samples = [
            Sample(row.tokens, row.mask, "".join(row.text), row.finished or "length", row.tool_calls) for row in rows
        ]
        return [[samples[i] for i, r in enumerate(owner) if r == k] for k in range(len(requests))]

    def _decode(
        self,
        rows: list[_Row],
        live: list[int],
        logits: torch.Tensor,
        owner: list[int],
        budgets: list[int],
        generators: list[torch.Generator],
        stops: frozenset[int],
        greedy: bool,
        top_k: int | None,
        top_p: float | None,
        temperature: float,
        cache: KVCache | StaticDecoder,
        stacked: list[StackedLayer],
    ) -> Generator[list[TokenEvent], None, None]:
        """The decode loop: sample (or force) every live row's token, yield the step's events,
        feed the tokens back. With a KVCache the finished rows leave it; a StaticDecoder keeps
        its shape, and the finished rows' logits are just not read."""
        while True:
            samplers = [j for j, r in enumerate(live) if not rows[r].forced]
            picked: dict[int, int] = {}
            if samplers:
                chosen = logits if len(samplers) == len(live) else logits[samplers]
                if greedy:
                    ids = chosen.argmax(dim=-1)
                else:
                    probs = filter_logits(chosen, temperature, top_k, top_p)
                    uniforms = torch.cat([torch.rand(1, generator=generators[live[j]]) for j in samplers])
                    ids = draw(probs, uniforms)
                picked = dict(zip(samplers, ids.tolist()))

            yield [self._take(rows[r], r, picked.get(j), stops, budgets[owner[r]]) for j, r in enumerate(live)]

            keep = [j for j, r in enumerate(live) if rows[r].finished is None]
            if not keep:
                break
            if isinstance(cache, StaticDecoder):  # every row steps; the cache's row r is row r
                live = [live[j] for j in keep]
                tokens = torch.zeros(cache.rows, dtype=torch.long)
                tokens[: len(rows)] = torch.tensor([row.tokens[-1] for row in rows])
                written = None
                if self.config.recall:  # which tokens were sampled: recall never proposes those
                    written = torch.zeros(cache.rows, dtype=torch.bool)
                    written[: len(rows)] = torch.tensor([row.mask[-1] == 1 for row in rows])
                    written = written.to(cache.k.device)
                logits = cache.step(tokens.to(cache.k.device), written)[live]
                continue
            if len(keep) < len(live):
                cache.keep(keep)
                live = [live[j] for j in keep]
            step = torch.tensor([[rows[r].tokens[-1]] for r in live], device=cache.k.device)
            written = (
                torch.tensor([[rows[r].mask[-1] == 1] for r in live], device=cache.k.device)
                if self.config.recall
                else None
            )
            logits = self.model(step, kv_cache=cache, stacked=stacked, written=written)[:, -1]

    def _take_decoder(self, rows: int, slots: int) -> StaticDecoder:
        """An idle static decoder of this shape's bucket, or a new one (compiled when asked).
        Decoders are reused across calls (compiling is the slow part) but never shared by two
        generations at once: threads that sample from one engine each take their own."""
        key = (bucket_rows(rows), bucket_slots(slots))
        with self._decoders_lock:
            idle = self._decoders.setdefault(key, [])
            if idle:
                return idle.pop()
        decoder = StaticDecoder(self.model, *key)
        return compiled(decoder) if self.decode == "compiled" else decoder

    def _return_decoder(self, decoder: StaticDecoder) -> None:
        with self._decoders_lock:
            self._decoders.setdefault((decoder.rows, decoder.slots), []).append(decoder)

    def generate(
        self,
        prompt: Sequence[int],
        num_samples: int = 1,
        *,
        on_step: Callable[[list[TokenEvent]], None] | None = None,
        **options: Any,
    ) -> list[Sample]:
        """`stream` run to the end: each row's tokens, mask, text and tool calls. `on_step`
        sees every step's events as they happen (a terminal printing the stream)."""
        return _drain(self.stream(prompt, num_samples, **options), on_step)

    def generate_batch(self, requests: Sequence[Request], **options: Any) -> list[list[Sample]]:
        """`stream_batch` run to the end: each request's samples."""
        return _drain(self.stream_batch(requests, **options), None)

    def _prefill(
        self, prompt: list[int], rows: int, max_len: int, stacked: list[StackedLayer] | None = None
    ) -> tuple[KVCache, torch.Tensor]:
        """Run one prompt once (batch 1) and return a cache of `rows` rows that all hold it,
        and the logits of the next token, broadcast to every row."""
        return self._prefill_batch([prompt], [rows], max_len - len(prompt), stacked)

    def _prefill_batch(
        self, prompts: list[list[int]], rows: list[int], new_tokens: int, stacked: list[StackedLayer] | None = None
    ) -> tuple[KVCache, torch.Tensor]:
        """Run the prompts once, left-padded to the longest (one row each), and return a cache
        where prompt k fills `rows[k]` consecutive rows, with room for `new_tokens` more, and
        the logits of every row's next token."""
        param = next(self.model.parameters())
        width = max(len(p) for p in prompts)
        pads = [width - len(p) for p in prompts]
        row_pads = [pad for pad, n in zip(pads, rows) for _ in range(n)]
        cache = KVCache(self.config, sum(rows), width + new_tokens, param.device, param.dtype, pad=row_pads)
        if rows == [1]:  # one row: prefill straight into its cache
            return cache, self.model(torch.tensor(prompts, device=param.device), kv_cache=cache, stacked=stacked)[:, -1]
        ids = torch.tensor([[0] * pad + p for pad, p in zip(pads, prompts)], device=param.device)
        one = KVCache(self.config, len(prompts), width, param.device, param.dtype, pad=pads)
        logits = self.model(ids, kv_cache=one, stacked=stacked)[:, -1]
        if len(prompts) == 1:  # broadcast over the rows, no copies
            cache.k[:, :, :, :width] = one.k
            cache.v[:, :, :, :width] = one.v
            cache.tokens[:, :width] = one.tokens
            cache.read[:, :width] = one.read
            logits = logits.expand(rows[0], -1)
        else:
            repeats = torch.tensor(rows, device=param.device)
            cache.k[:, :, :, :width] = one.k.repeat_interleave(repeats, dim=1)
            cache.v[:, :, :, :width] = one.v.repeat_interleave(repeats, dim=1)
            cache.tokens[:, :width] = one.tokens.repeat_interleave(repeats, dim=0)
            cache.read[:, :width] = one.read.repeat_interleave(repeats, dim=0)
            logits = logits.repeat_interleave(repeats, dim=0)
        cache.pos = width
        return cache, logits


def _drain(steps: Generator[list[TokenEvent], None, Any], on_step: Callable[[list[TokenEvent]], None] | None) -> Any:
    while True:
        try:
            events = next(steps)
        except StopIteration as end:
            return end.value
        if on_step is not None:
            on_step(events)
