"""Continuous batching: many requests share one model, one forward per step for all their rows.

    batcher = Batcher(engine, capacity=32)
    job = batcher.submit(prompt_ids, Sampling(max_tokens=64, temperature=0.7), emit=queue.put, n=2)
    ...                                  # emit gets each step's [Step] of the job's rows, then None
    scores = batcher.score([ids_a, ids_b], top=1).result()   # every prompt token's log-probability
    batcher.close()

One thread owns the model (the engine's). Each turn of its loop:
1. scoring requests (log-probabilities of whole prompts: `echo` in the completions API) run as
   right-padded batches, one forward for many prompts (causal attention: the padding after a
   prompt cannot change it);
2. waiting jobs join while the batch has room: a job's prompt is prefilled once, at batch 1,
   and its cache copied into one `RowCache` row per sample, as `Engine.stream` does;
3. every live row gets its next token, sampled with its own job's settings and its own
   generator (`sample_seed(seed, i)` for sample i, as in the engine), or the next token a tool
   forced; tools, stop tokens and lengths advance exactly as in the engine (`Engine._take`);
   rows that finished, or whose client went away (`Job.cancel`), leave the batch;
4. one forward feeds every live row its token at the row's own position.

So a row decodes as `Engine.stream` would decode it alone (same seed, same tokens, to float
rounding), while a step over 16 rows costs little more than a step over one: decoding a small
model is bound by the number of kernel calls, not by arithmetic. A request that arrives while
others decode joins at the next step instead of waiting for them to finish.

Bounds: at most `capacity` rows decode at once; more wait in line, at most `max_waiting` rows;
beyond that `submit` raises `Busy` (the server answers 429). A tool call runs on this thread
(bounded by the tools' own deadlines), so it briefly holds up the other rows.
"""

from __future__ import annotations

import random
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import torch

from models.engine import DEFAULT_STOPS, Engine, Sample, TokenEvent, ToolCall, _Row, draw, filter_logits, sample_seed
from models.gpt import KVCache, RowCache

# Prompt tokens per scoring forward (padding included): bounds the logits it holds at once.
SCORE_TOKENS = 4096


class Busy(RuntimeError):
    """The batch and the line behind it are full: try again later."""


@dataclass(frozen=True)
class Sampling:
    max_tokens: int
    temperature: float = 1.0  # 0: greedy
    top_k: int | None = None
    top_p: float | None = None
    seed: int | None = None  # None: a random one
    logprobs: int | None = None  # report each token's log-probability and this many alternatives
    stop: frozenset[int] | None = None  # token ids that end a row (None: <|assistant_end|> and <|bos|>)


@dataclass
class Step:
    """One row's token, as the batcher reports it."""

    event: TokenEvent  # event.row is the sample's index within its job
    logprob: float | None = None  # log-probability of the token under the model (temperature 1)
    top: list[tuple[int, float]] | None = None  # the most likely tokens there, best first
    call: ToolCall | None = None  # the tool call this token closed (its result is forced next)


@dataclass
class PromptScores:
    """Log-probabilities of a prompt's tokens, each given the ones before it."""

    tokens: list[int]
    logprobs: list[float | None]  # None for the first token (nothing predicts it)
    top: list[list[tuple[int, float]] | None]  # the most likely tokens at each position


@dataclass
class Job:
    prompt: list[int]
    n: int
    sampling: Sampling
    emit: Callable[[list[Step] | BaseException | None], None]
    seed: int
    budget: int
    stops: frozenset[int]
    rows: list[_Row] = field(default_factory=list)
    cancelled: bool = False
    dropped: set[int] = field(default_factory=set)  # rows the client stopped (a stop string)
    remaining: int = 0

    def cancel(self) -> None:
        """The client went away: its rows leave the batch at the next step."""
        self.cancelled = True

    def drop_row(self, row: int) -> None:
        """Stop one row (its client matched a stop string); it leaves at the next step."""
        self.dropped.add(row)

    def send(self, item: list[Step] | BaseException | None) -> None:
        """Hand `item` to the client's callback; a callback that fails (its client is gone)
        cancels the job rather than disturbing the batch."""
        try:
            self.emit(item)
        except Exception:
            self.cancelled = True

    def samples(self) -> list[Sample]:
        return [Sample(r.tokens, r.mask, "".join(r.text), r.finished or "stop", r.tool_calls) for r in self.rows]


@dataclass
class _Live:
    job: Job
    index: int  # the sample's index within its job
    generator: torch.Generator

    @property
    def row(self) -> _Row:
        return self.job.rows[self.index]


@dataclass
class _ScoreRequest:
    prompts: list[list[int]]
    top: int
    future: Future = field(default_factory=Future)


class Batcher:
    """Serves one engine's model to many concurrent requests (see the module docstring)."""

    def __init__(self, engine: Engine, capacity: int = 32, max_waiting: int = 256):
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.engine, self.model, self.config = engine, engine.model, engine.config
        self.capacity, self.max_waiting = capacity, max_waiting
        param = next(self.model.parameters())
        self.device, self.dtype = param.device, param.dtype
        self.cache = RowCache(self.config, capacity, self.device, self.dtype)
        self.default_stops = frozenset(engine.tokenizer.special(s) for s in DEFAULT_STOPS)
        self._stacked = self.model.stacked_weights()  # the weights do not change while serving
        self._cond = threading.Condition()
        self._waiting: deque[Job] = deque()
        self._waiting_rows = 0
        self._scoring: deque[_ScoreRequest] = deque()
        self._live: list[_Live] = []  # in cache-slot order
        self._logits: torch.Tensor | None = None  # next-token logits of the live rows
        self._closed = False
        self.peak_rows = 0  # the most rows ever decoded in one step
        self._thread = threading.Thread(target=self._run, name="batcher", daemon=True)
        self._thread.start()

    # -- the requests' side (any thread) -------------------------------------------------

    def check_prompt(self, prompt: Sequence[int]) -> list[int]:
        """The prompt as ints, or ValueError when it is empty, holds an id outside the
        vocabulary, or is longer than the context (a prompt that fills it can still be
        scored, and given one more token: the last token is never fed back)."""
        ids = [int(t) for t in prompt]
        if not ids:
            raise ValueError("the prompt is empty")
        bad = [t for t in ids if not 0 <= t < self.config.vocab_size]
        if bad:
            raise ValueError(f"token id {bad[0]} is outside the vocabulary (0..{self.config.vocab_size - 1})")
        if len(ids) > self.config.seq_len:
            raise ValueError(f"the prompt has {len(ids)} tokens; the model's context is {self.config.seq_len}")
        return ids

    def submit(self, prompt: Sequence[int], sampling: Sampling, emit: Callable[[Any], None], n: int = 1) -> Job:
        """Queue `n` samples of `prompt`. `emit` is called from the batcher's thread with each
        step's list of `Step`s for this job's rows, then with None when all have finished (or
        with the exception that stopped them)."""
        ids = self.check_prompt(prompt)
        if not 1 <= n <= self.capacity:
            raise ValueError(f"n must be between 1 and {self.capacity}")
        if sampling.max_tokens < 1:
            raise ValueError("max_tokens must be at least 1")
        if (
            sampling.top_k is not None
            and sampling.top_k < 1
            or sampling.top_p is not None
            and not 0 < sampling.top_p <= 1
        ):
            raise ValueError("top_k must be at least 1 and top_p in (0, 1]")
        seed = sampling.seed if sampling.seed is not None else random.getrandbits(63)
        # A row's last token is not fed back, so it may sit one past the context.
        budget = min(sampling.max_tokens, self.config.seq_len - len(ids) + 1)
        stops = self.default_stops if sampling.stop is None else sampling.stop
        job = Job(ids, n, sampling, emit, seed, budget, stops, remaining=n)
        job.rows = [self.engine.new_row(ids) for _ in range(n)]
        with self._cond:
            if self._closed:
                raise Busy("the server is shutting down")
            if self._waiting_rows + n > self.max_waiting:
                raise Busy(f"{self._waiting_rows} rows are already waiting for the batch of {self.capacity}")
            self._waiting.append(job)
            self._waiting_rows += n
            self._cond.notify()
        return job

    def score(self, prompts: Sequence[Sequence[int]], top: int = 0) -> Future:
        """A future of one `PromptScores` per prompt; `top` alternatives at each position."""
        request = _ScoreRequest([self.check_prompt(p) for p in prompts], max(0, int(top)))
        with self._cond:
            if self._closed:
                raise Busy("the server is shutting down")
            self._scoring.append(request)
            self._cond.notify()
        return request.future

    def stats(self) -> dict[str, int]:
        with self._cond:
            return {
                "rows": len(self._live),
                "waiting_rows": self._waiting_rows,
                "capacity": self.capacity,
                "peak_rows": self.peak_rows,
            }

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout=30)

    # -- the model's side (the batcher's thread) -------------------------------------------

    def _run(self) -> None:
        with torch.inference_mode():
            while True:
                with self._cond:
                    while not (self._closed or self._waiting or self._scoring or self._live):
                        self._cond.wait()
                    if self._closed:
                        break
                    scoring, joining = list(self._scoring), []
                    self._scoring.clear()
                    free = self.capacity - len(self._live)
                    while self._waiting and (self._waiting[0].n <= free or self._waiting[0].cancelled):
                        job = self._waiting.popleft()
                        self._waiting_rows -= job.n
                        if not job.cancelled:
                            joining.append(job)
                            free -= job.n
                for request in scoring:
                    self._score(request)
                for job in joining:
                    self._admit(job)
                if self._live:
                    self._step()
        failure = Busy("the server shut down")
        for job in {id(live.job): live.job for live in self._live}.values():
            job.send(failure)
        for job in self._waiting:
            job.send(failure)

    def _score(self, request: _ScoreRequest) -> None:
        try:
            prompts = request.prompts
            results: list[PromptScores | None] = [None] * len(prompts)
            order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
            while order:
                chunk = [order.pop(0)]  # shortest first: each chunk pads to its longest prompt
                while order and (len(chunk) + 1) * len(prompts[order[0]]) <= max(SCORE_TOKENS, self.config.seq_len):
                    chunk.append(order.pop(0))
                width = len(prompts[chunk[-1]])
                ids = torch.zeros((len(chunk), width), dtype=torch.long, device=self.device)
                for b, i in enumerate(chunk):
                    ids[b, : len(prompts[i])] = torch.tensor(prompts[i])
                logits = self.model(ids, stacked=self._stacked)
                for b, i in enumerate(chunk):
                    tokens = prompts[i]
                    lp = torch.log_softmax(logits[b, : len(tokens) - 1].float(), dim=-1)
                    nexts = torch.tensor(tokens[1:], device=self.device)
                    chosen = lp.gather(1, nexts[:, None])[:, 0].tolist()
                    top = _top(lp, request.top)
                    results[i] = PromptScores(tokens, [None, *chosen], [None, *top])
            request.future.set_result(results)
        except Exception as exc:  # a bad request must not stop the server
            request.future.set_exception(exc)

    def _admit(self, job: Job) -> None:
        try:
            one = KVCache(self.config, 1, len(job.prompt), self.device, self.dtype)
            logits = self.model(torch.tensor([job.prompt], device=self.device), kv_cache=one, stacked=self._stacked)[
                :, -1
            ]
            self.cache.add(one, job.n)
        except Exception as exc:
            job.send(exc)
            return
        for i in range(job.n):
            self._live.append(_Live(job, i, torch.Generator().manual_seed(sample_seed(job.seed, i))))
        rows = logits.expand(job.n, -1)
        self._logits = rows if self._logits is None else torch.cat([self._logits, rows])

    def _step(self) -> None:
        try:
            self._advance()
        except Exception as exc:  # fail the jobs in the batch, keep serving
            for job in {id(live.job): live.job for live in self._live}.values():
                job.send(exc)
            self._live, self._logits = [], None
            self.cache.lengths.clear()

    def _advance(self) -> None:
        live, logits = self._live, self._logits
        self.peak_rows = max(self.peak_rows, len(live))
        picked = self._sample(live, logits)
        want = [
            j for j, entry in enumerate(live) if entry.job.sampling.logprobs is not None and not entry.job.cancelled
        ]
        scored: dict[int, tuple[torch.Tensor, list[tuple[int, float]]]] = {}
        if want:
            lp = torch.log_softmax(logits[want].float(), dim=-1)
            for k, j in enumerate(want):
                scored[j] = (lp[k], _top(lp[k : k + 1], live[j].job.sampling.logprobs or 0)[0])

        steps: dict[int, tuple[Job, list[Step]]] = {}
        for j, entry in enumerate(live):
            job, row = entry.job, entry.row
            if job.cancelled or entry.index in job.dropped:
                continue
            calls = len(row.tool_calls)
            event = self.engine._take(row, entry.index, picked.get(j), job.stops, job.budget)
            step = Step(event, call=row.tool_calls[-1] if len(row.tool_calls) > calls else None)
            if j in scored:
                step.logprob, step.top = float(scored[j][0][event.token]), scored[j][1]
            steps.setdefault(id(job), (job, []))[1].append(step)
        for job, job_steps in steps.values():
            job.send(job_steps)

        # Drop the rows that are done, moving the last row into each freed slot.
        for j in reversed(range(len(live))):
            entry = live[j]
            if entry.row.finished or entry.job.cancelled or entry.index in entry.job.dropped:
                moved = self.cache.remove(j)
                live[j] = live[moved]
                live.pop()
                entry.job.remaining -= 1
                if entry.job.remaining == 0 and not entry.job.cancelled:
                    entry.job.send(None)
        if not live:
            self._logits = None
            return
        step = torch.tensor([[entry.row.tokens[-1]] for entry in live], device=self.device)
        written = (  # what was sampled, which recall never proposes
            torch.tensor([[entry.row.mask[-1] == 1] for entry in live], device=self.device)
            if self.config.recall
            else None
        )
        self._logits = self.model(step, kv_cache=self.cache, stacked=self._stacked, written=written)[:, -1]

    def _sample(self, live: list[_Live], logits: torch.Tensor) -> dict[int, int]:
        """The sampled token of every row that samples this step, by its index in `live`;
        rows that share settings are drawn together (each from its own generator)."""
        groups: dict[tuple, list[int]] = {}
        for j, entry in enumerate(live):
            if entry.row.forced or entry.job.cancelled or entry.index in entry.job.dropped:
                continue
            s = entry.job.sampling
            key = ("greedy",) if s.temperature <= 0 else (s.temperature, s.top_k, s.top_p)
            groups.setdefault(key, []).append(j)
        picked: dict[int, int] = {}
        for key, rows in groups.items():
            chosen = logits[rows] if len(rows) < len(live) else logits
            if key[0] == "greedy":
                ids = chosen.argmax(dim=-1)
            else:
                probs = filter_logits(chosen, *key)
                ids = draw(probs, torch.cat([torch.rand(1, generator=live[j].generator) for j in rows]))
            picked.update(zip(rows, ids.tolist()))
        return picked


def _top(logprobs: torch.Tensor, k: int) -> list[list[tuple[int, float]]]:
    """The k most likely (id, log-probability) at each row of `logprobs`, best first; the
    values are the same floats as the rows' own entries (lm-eval compares them exactly)."""
    if k <= 0:
        return [[] for _ in range(logprobs.size(0))]
    values, ids = logprobs.topk(min(k, logprobs.size(-1)), dim=-1)
    return [list(zip(i, v)) for i, v in zip(ids.tolist(), values.tolist())]
