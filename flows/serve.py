"""`crawl2chat serve`: an OpenAI-compatible server for a checkpoint, and a chat page.

No flow here: a long-running process that talks HTTP. Endpoints:

    POST /v1/chat/completions   messages in, the assistant's reply out (stream: true as SSE chunks)
    POST /v1/completions        text or token ids in, a continuation out; `echo` + `logprobs`
                                give every prompt token's log-probability (lm-eval's
                                `local-completions` scores loglikelihood tasks this way)
    GET  /v1/models, GET /health, GET / (the chat page: chat.html beside this file)

Every request shares one model through `models.batcher.Batcher`: rows of all requests decode
in one forward per step. Errors come back in OpenAI's shape, {"error": {"message", "type",
"param", "code"}}: 400 for a bad body (invalid JSON, a negative max_tokens, a prompt past the
context), 404 for an unknown model, 429 when the batch and its line are full.

The search and calculator tools run on the server, inside generation, as the engine runs
them. A chat reply reports them in OpenAI's `tool_calls` shape (type "function", name
"search" or "calculator", arguments {"query": ...} or {"expression": ...}) with two fields of
our own on each call: `output`, what the tool returned into the model's context, and
`content_offset`, how many characters of `content` the model wrote before the call. The
reply's finish_reason stays "stop" or "length": the calls have already run, the client has
nothing to execute. Sent back in a later request's history, such a message is rendered as the
model saw it (text, call, result, text); standard tool_calls followed by "tool" messages work
too.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from models.batcher import Batcher, Busy, PromptScores, Sampling, Step
from models.chat import TOOL_TOKENS, render_conversation
from models.engine import Engine
from models.tokenizer import Tokenizer

PAGE = Path(__file__).with_name("chat.html")
ARGUMENT = {"search": "query", "calculator": "expression", "python": "code"}  # a tool's one argument, by name
MAX_STOPS = 8
MAX_LOGPROBS = 20


class APIError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        code: str | None = None,
        kind: str = "invalid_request_error",
    ):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


# -- request bodies ----------------------------------------------------------------------------


class _Common(BaseModel):
    # Fields we do not know are ignored (as vLLM does); the ones that would change the result
    # and that we cannot honour are refused in `_refuse`.
    model_config = ConfigDict(extra="allow")

    model: str | None = None
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    top_k: int | None = Field(None, ge=1)  # not OpenAI's; vLLM's and ours
    n: int = Field(1, ge=1)
    seed: int | None = None
    stop: str | list[str] | None = None
    ignore_eos: bool = False  # vLLM's: stop tokens do not end the reply (benchmarks)


class ChatRequest(_Common):
    messages: list[dict[str, Any]] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)


class CompletionRequest(_Common):
    prompt: str | list[str] | list[int] | list[list[int]]
    max_tokens: int = Field(16, ge=0)
    echo: bool = False
    logprobs: int | None = Field(None, ge=0, le=MAX_LOGPROBS)


def _refuse(body: BaseModel, extras: dict[str, Any]) -> None:
    unsupported = {
        "suffix": None,
        "logit_bias": None,
        "presence_penalty": 0,
        "frequency_penalty": 0,
        "tools": None,
        "functions": None,
        "response_format": None,
    }
    for name, default in unsupported.items():
        value = extras.get(name)
        if value not in (None, default, [], {}) and not (name == "response_format" and value == {"type": "text"}):
            raise APIError(400, f"{name} is not supported by this server", param=name, code="unsupported_parameter")
    if extras.get("logprobs") and isinstance(body, ChatRequest):
        raise APIError(
            400,
            "chat logprobs are not supported; /v1/completions has logprobs",
            param="logprobs",
            code="unsupported_parameter",
        )
    best_of = extras.get("best_of")
    if best_of not in (None, body.n):
        raise APIError(400, "best_of is not supported (it must equal n)", param="best_of", code="unsupported_parameter")


def _stops(stop: str | list[str] | None) -> list[str]:
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    if len(stops) > MAX_STOPS:
        raise APIError(400, f"at most {MAX_STOPS} stop sequences", param="stop")
    return [s for s in stops if s]


# -- chat messages -> the model's prompt ----------------------------------------------------------


def _text(content: Any, where: str) -> str:
    """A message's content: a string, or OpenAI's list of parts of which only text is allowed."""
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise APIError(400, f"{where}: only text content parts are supported", param=where)
            parts.append(part["text"])
        return "".join(parts)
    raise APIError(400, f"{where}: content must be a string or a list of text parts", param=where)


def _call_argument(call: Any, where: str) -> tuple[str, str]:
    """(tool name, its argument text) of an OpenAI tool call in a request's history."""
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict) or function.get("name") not in ARGUMENT:
        raise APIError(400, f"{where}: tool calls must be functions named {sorted(ARGUMENT)}", param=where)
    name, arguments = function["name"], function.get("arguments", "")
    try:
        parsed = json.loads(arguments) if isinstance(arguments, str) else arguments
    except json.JSONDecodeError:
        parsed = arguments  # the text itself
    if isinstance(parsed, dict):
        parsed = parsed.get(ARGUMENT[name], "")
    return name, parsed if isinstance(parsed, str) else json.dumps(parsed)


def conversation(messages: Sequence[Any]) -> list[dict[str, Any]]:
    """OpenAI messages -> the project's format (models/chat.py). An assistant message whose
    tool calls carry our `output` is split at each call's `content_offset` into the turn the
    model wrote: text, call, result, text."""
    out: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise APIError(400, f"{where} is not an object", param=where)
        role, content = message.get("role"), _text(message.get("content"), where)
        if role in ("system", "developer"):
            out.append({"role": "system", "content": content})
        elif role in ("user", "tool"):
            out.append({"role": role, "content": content})
        elif role == "assistant":
            calls = message.get("tool_calls") or []
            if not isinstance(calls, list):
                raise APIError(400, f"{where}.tool_calls must be a list", param=where)
            parsed = [_call_argument(c, f"{where}.tool_calls[{k}]") for k, c in enumerate(calls)]
            if calls and all(isinstance(c, dict) and "output" in c for c in calls):
                start = 0
                for call, (name, argument) in zip(calls, parsed):
                    offset = call.get("content_offset", start)
                    offset = min(max(int(offset) if isinstance(offset, int) else start, start), len(content))
                    out.append(
                        {
                            "role": "assistant",
                            "content": content[start:offset],
                            "tool_calls": [{"name": name, "arguments": argument}],
                        }
                    )
                    out.append({"role": "tool", "content": _text(call.get("output"), where)})
                    start = offset
                out.append({"role": "assistant", "content": content[start:]})
            else:
                out.append(
                    {
                        "role": "assistant",
                        "content": content,
                        "tool_calls": [{"name": n, "arguments": a} for n, a in parsed],
                    }
                )
        else:
            raise APIError(400, f"{where}: unknown role {role!r}", param=where)
    if out[-1]["role"] != "user":
        raise APIError(400, "the last message must be the user's", param="messages")
    return out


def chat_prompt(tok: Tokenizer, messages: Sequence[Any]) -> list[int]:
    try:
        ids, _ = render_conversation(tok, conversation(messages))
    except ValueError as exc:
        raise APIError(400, str(exc), param="messages") from None
    return ids + [tok.special("<|assistant_start|>")]


# -- the reply, token by token --------------------------------------------------------------------


class StopText:
    """Cuts a stream of text at the first stop string to complete, holding back any tail that
    could be the start of one (so a stop string split across tokens is still caught)."""

    def __init__(self, stops: Sequence[str]):
        self.stops, self.held, self.hit = list(stops), "", False

    def push(self, text: str) -> str:
        if self.hit:
            return ""
        text = self.held + text
        # The stop that completes first (as if the text came a character at a time: however it
        # is split, generation ends there), and of those ending together the one starting first.
        found = [(i + len(s), i) for s in self.stops if (i := text.find(s)) >= 0]
        if found:
            self.hit, self.held = True, ""
            return text[: min(found)[1]]
        keep = max(
            (k for s in self.stops for k in range(min(len(s) - 1, len(text)), 0, -1) if text.endswith(s[:k])), default=0
        )
        self.held = text[len(text) - keep :]
        return text[: len(text) - keep]

    def flush(self) -> str:
        held, self.held = self.held, ""
        return held


class ChatChoice:
    """One row's Steps as chat deltas: the model's own text is `content`; what it writes
    between a tool's markers is that call's arguments; what the tool forced into the stream
    is reported once, as the call's `output`, and is not content."""

    def __init__(self, index: int, tok: Tokenizer, stops: Sequence[str]):
        self.index, self.stop = index, StopText(stops)
        sp = tok.special
        self.opens = {sp(open_): name for name, (open_, *_) in TOOL_TOKENS.items()}
        self.closes = {sp(close) for _, close, *_ in TOOL_TOKENS.values()}
        self.content: list[str] = []
        self.length = 0  # characters of content so far
        self.calls: list[dict[str, Any]] = []
        self.in_call = False
        self.finish: str | None = None
        self.tokens = 0

    def _content(self, text: str) -> list[dict[str, Any]]:
        if not text:
            return []
        self.content.append(text)
        self.length += len(text)
        return [{"content": text}]

    def _arguments(self, fragment: str, **extra: Any) -> dict[str, Any]:
        call = self.calls[-1]
        call["function"]["arguments"] += fragment
        call.update(extra)
        return {"tool_calls": [{"index": len(self.calls) - 1, "function": {"arguments": fragment}, **extra}]}

    def feed(self, step: Step) -> list[dict[str, Any]]:
        """The deltas this step adds (empty once the choice has finished)."""
        if self.finish:
            return []
        event, deltas = step.event, []
        self.tokens += 1
        if event.forced:
            pass  # a tool's result: reported with its call
        elif event.token in self.opens:
            deltas += self._content(self.stop.flush())
            name = self.opens[event.token]
            call = {
                "id": f"call_{uuid.uuid4().hex[:24]}",
                "type": "function",
                "function": {"name": name, "arguments": ""},
            }
            self.calls.append(call)
            self.in_call = True
            deltas.append({"tool_calls": [{"index": len(self.calls) - 1, **json.loads(json.dumps(call))}]})
            deltas.append(self._arguments('{"' + ARGUMENT[name] + '": "'))
        elif self.in_call and event.token in self.closes:
            self.in_call = False
            output = step.call.result if step.call else ""
            deltas.append(self._arguments('"}', output=output, content_offset=self.length))
        elif self.in_call:
            if event.text:
                deltas.append(self._arguments(json.dumps(event.text)[1:-1]))
        else:
            deltas += self._content(self.stop.push(event.text))
            if self.stop.hit:
                self.finish = "stop"
        if event.finished and not self.finish:
            if self.in_call:  # cut off inside a call: close its arguments
                self.in_call = False
                deltas.append(self._arguments('"}'))
            deltas += self._content(self.stop.flush())
            self.finish = event.finished
        return deltas

    def message(self) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": "".join(self.content)}
        if self.calls:
            message["tool_calls"] = self.calls
        return message


def token_string(tok: Tokenizer, token: int) -> str:
    """A token as the logprobs object names it: its text; a special by its name; bytes that
    are not text on their own as "bytes:\\xNN..." (OpenAI's convention)."""
    if tok.is_special(token):
        return tok.id_to_piece(token)
    data = tok.decode_bytes([token])
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return "bytes:" + "".join(f"\\x{b:02x}" for b in data)


class Logprobs:
    """The legacy completions `logprobs` object, built token by token: tokens, token_logprobs,
    top_logprobs and text_offset (each token's first character in the returned text)."""

    def __init__(self, tok: Tokenizer, offset: int = 0):
        self.tok, self.offset = tok, offset
        self.decoder = tok.stream()
        self.tokens: list[str] = []
        self.token_logprobs: list[float | None] = []
        self.top_logprobs: list[dict[str, float] | None] = []
        self.text_offset: list[int] = []

    def add(self, token: int, logprob: float | None, top: list[tuple[int, float]] | None) -> None:
        self.tokens.append(token_string(self.tok, token))
        self.token_logprobs.append(logprob)
        if top is None:
            self.top_logprobs.append(None)
        else:
            alternatives: dict[str, float] = {}
            for t, lp in top:  # two ids with the same text keep the likelier
                alternatives.setdefault(token_string(self.tok, t), lp)
            self.top_logprobs.append(alternatives)
        self.text_offset.append(self.offset)
        self.offset += len(self.decoder.push(token))

    def add_prompt(self, scores: PromptScores) -> None:
        for token, lp, top in zip(scores.tokens, scores.logprobs, scores.top):
            self.add(token, lp, top)

    def since(self, start: int) -> dict[str, list[Any]]:
        return {
            "tokens": self.tokens[start:],
            "token_logprobs": self.token_logprobs[start:],
            "top_logprobs": self.top_logprobs[start:],
            "text_offset": self.text_offset[start:],
        }

    def cut(self, text_length: int) -> None:
        """Forget the tokens that start at or after `text_length` (cut by a stop string)."""
        keep = sum(1 for o in self.text_offset if o < text_length)
        for name in ("tokens", "token_logprobs", "top_logprobs", "text_offset"):
            del getattr(self, name)[keep:]


# -- the app --------------------------------------------------------------------------------------


def create_app(engine: Engine, model_name: str, *, capacity: int = 32, max_waiting: int = 256) -> FastAPI:
    """The FastAPI app serving `engine` as `model_name`; its batcher starts and stops with it."""
    tok, seq_len = engine.tokenizer, engine.config.seq_len
    created = int(time.time())
    page = PAGE.read_text(encoding="utf-8")
    state: dict[str, Batcher] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state["batcher"] = Batcher(engine, capacity=capacity, max_waiting=max_waiting)
        try:
            yield
        finally:
            state.pop("batcher").close()

    app = FastAPI(title="crawl2chat", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(APIError)
    async def api_error(request: Request, exc: APIError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        if first.get("type") == "json_invalid":
            return JSONResponse(APIError(400, "the body is not valid JSON").body(), status_code=400)
        param = ".".join(str(p) for p in first.get("loc", []) if p != "body") or None
        message = first.get("msg", "invalid request")
        return JSONResponse(
            APIError(400, f"{param}: {message}" if param else message, param=param).body(), status_code=400
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(APIError(exc.status_code, str(exc.detail)).body(), status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def crash(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(APIError(500, f"internal error: {exc}", kind="server_error").body(), status_code=500)

    def check_model(name: str | None) -> None:
        if name not in (None, model_name):
            raise APIError(
                404,
                f"the model {name!r} does not exist; this server has {model_name!r}",
                param="model",
                code="model_not_found",
            )

    def submit(prompt: list[int], sampling: Sampling, n: int) -> tuple[Any, asyncio.Queue]:
        loop, queue = asyncio.get_running_loop(), asyncio.Queue()
        try:
            job = state["batcher"].submit(
                prompt, sampling, lambda item: loop.call_soon_threadsafe(queue.put_nowait, item), n
            )
        except Busy as exc:
            raise APIError(429, str(exc), code="server_busy", kind="rate_limit_error") from None
        except ValueError as exc:
            raise APIError(400, str(exc), code="context_length_exceeded" if "context" in str(exc) else None) from None
        return job, queue

    async def steps(job: Any, queue: asyncio.Queue) -> AsyncIterator[list[Step]]:
        """The job's steps as they come; a client that leaves cancels its rows."""
        try:
            while (item := await queue.get()) is not None:
                if isinstance(item, BaseException):
                    raise APIError(500, f"generation failed: {item}", kind="server_error")
                yield item
        finally:
            job.cancel()  # a no-op once finished; frees the rows of a client that left

    def sse(payload: dict[str, Any]) -> str:
        return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"

    def streaming(chunks: AsyncIterator[str]) -> StreamingResponse:
        async def guarded() -> AsyncIterator[str]:
            try:
                async for chunk in chunks:
                    yield chunk
            except APIError as exc:  # the status line is gone: the error travels as an event
                yield sse(exc.body())
            yield "data: [DONE]\n\n"

        return StreamingResponse(guarded(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
        return {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }

    # -- routes --

    @app.get("/", response_class=HTMLResponse)
    async def chat_page() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": model_name, **state["batcher"].stats()}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [
                {
                    "id": model_name,
                    "object": "model",
                    "created": created,
                    "owned_by": "crawl2chat",
                    "max_model_len": seq_len,
                }
            ],
        }

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatRequest) -> Any:
        check_model(body.model)
        _refuse(body, body.model_extra or {})
        stops = _stops(body.stop)
        prompt = chat_prompt(tok, body.messages)
        max_tokens = body.max_completion_tokens or body.max_tokens or seq_len
        sampling = Sampling(
            max_tokens,
            body.temperature,
            body.top_k,
            body.top_p if body.top_p < 1 else None,
            body.seed,
            stop=frozenset() if body.ignore_eos else None,
        )
        job, queue = submit(prompt, sampling, body.n)
        choices = [ChatChoice(i, tok, stops) for i in range(body.n)]
        rid, model = f"chatcmpl-{uuid.uuid4().hex}", body.model or model_name

        def chunk(choice_list: list[dict[str, Any]], **extra: Any) -> str:
            return sse(
                {
                    "id": rid,
                    "object": "chat.completion.chunk",
                    "created": int(time.time()),
                    "model": model,
                    "choices": choice_list,
                    **extra,
                }
            )

        def feed(batch: list[Step]) -> list[tuple[ChatChoice, list[dict[str, Any]], bool]]:
            out = []
            for step in batch:
                choice = choices[step.event.row]
                done = choice.finish is not None
                deltas = choice.feed(step)
                if choice.finish and not done and not step.event.finished:
                    job.drop_row(choice.index)  # a stop string: the row may stop decoding
                out.append((choice, deltas, choice.finish is not None and not done))
            return out

        if body.stream:

            async def events() -> AsyncIterator[str]:
                yield chunk(
                    [
                        {
                            "index": c.index,
                            "delta": {"role": "assistant", "content": ""},
                            "logprobs": None,
                            "finish_reason": None,
                        }
                        for c in choices
                    ]
                )
                async for batch in steps(job, queue):
                    for choice, deltas, finished in feed(batch):
                        for delta in deltas:
                            yield chunk(
                                [{"index": choice.index, "delta": delta, "logprobs": None, "finish_reason": None}]
                            )
                        if finished:
                            yield chunk(
                                [{"index": choice.index, "delta": {}, "logprobs": None, "finish_reason": choice.finish}]
                            )
                    if all(c.finish for c in choices):
                        break
                if (body.stream_options or {}).get("include_usage"):
                    yield chunk([], usage=usage(len(prompt), sum(c.tokens for c in choices)))

            return streaming(events())

        async for batch in steps(job, queue):
            feed(batch)
            if all(c.finish for c in choices):
                break
        return {
            "id": rid,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {"index": c.index, "message": c.message(), "logprobs": None, "finish_reason": c.finish or "stop"}
                for c in choices
            ],
            "usage": usage(len(prompt), sum(c.tokens for c in choices)),
        }

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest) -> Any:
        check_model(body.model)
        _refuse(body, body.model_extra or {})
        stops = _stops(body.stop)
        prompts = completion_prompts(tok, body.prompt)
        batcher = state["batcher"]
        try:
            for p in prompts:
                batcher.check_prompt(p)
        except ValueError as exc:
            raise APIError(
                400, str(exc), param="prompt", code="context_length_exceeded" if "context" in str(exc) else None
            ) from None
        scores: list[PromptScores | None] = [None] * len(prompts)
        if body.echo and body.logprobs is not None:
            scores = await asyncio.wrap_future(batcher.score(prompts, top=body.logprobs))
        rid, model = f"cmpl-{uuid.uuid4().hex}", body.model or model_name
        sampling = Sampling(
            max(body.max_tokens, 1),
            body.temperature,
            body.top_k,
            body.top_p if body.top_p < 1 else None,
            body.seed,
            logprobs=body.logprobs,
            stop=frozenset() if body.ignore_eos else None,
        )

        # One state per choice: index = prompt * n + sample, as OpenAI numbers them.
        texts: list[list[str]] = []
        logs: list[Logprobs | None] = []
        finish: list[str | None] = []
        cutters: list[StopText] = []
        for p, score in zip(prompts, scores):
            prompt_text = tok.decode(p) if body.echo else ""
            for _ in range(body.n):
                log = None
                if body.logprobs is not None:
                    log = Logprobs(tok)
                    if score is not None:
                        log.add_prompt(score)
                    else:
                        log.offset = len(prompt_text)
                texts.append([prompt_text])
                logs.append(log)
                finish.append("length" if body.max_tokens == 0 else None)
                cutters.append(StopText(stops))
        jobs = [submit(p, sampling, body.n) for p in prompts] if body.max_tokens else []
        completion_tokens = [0] * len(texts)

        def take(prompt_index: int, batch: list[Step]) -> list[tuple[int, str, int]]:
            """(choice, new text, index of its first new logprobs entry) for each step."""
            out = []
            for step in batch:
                c = prompt_index * body.n + step.event.row
                if finish[c]:
                    continue
                completion_tokens[c] += 1
                start = len(logs[c].tokens) if logs[c] else 0
                if logs[c] is not None:
                    logs[c].add(step.event.token, step.logprob, step.top)
                text = cutters[c].push(step.event.text)
                if cutters[c].hit:
                    finish[c] = "stop"
                    jobs[prompt_index][0].drop_row(step.event.row)
                elif step.event.finished:
                    text += cutters[c].flush()
                    finish[c] = step.event.finished
                texts[c].append(text)
                if finish[c] and logs[c] is not None:
                    logs[c].cut(sum(map(len, texts[c])))
                out.append((c, text, start))
            return out

        def final_logprobs(c: int) -> dict[str, Any] | None:
            return None if logs[c] is None else logs[c].since(0)

        if body.stream:

            async def events() -> AsyncIterator[str]:
                def chunk(c: int, text: str, logprobs: dict | None, reason: str | None) -> str:
                    return sse(
                        {
                            "id": rid,
                            "object": "text_completion",
                            "created": int(time.time()),
                            "model": model,
                            "choices": [{"index": c, "text": text, "logprobs": logprobs, "finish_reason": reason}],
                        }
                    )

                for c in range(len(texts)):
                    if texts[c][0] or body.max_tokens == 0:
                        yield chunk(c, texts[c][0], final_logprobs(c) if logs[c] else None, finish[c])
                merged: asyncio.Queue = asyncio.Queue()

                async def pump(k: int) -> None:
                    async for batch in steps(*jobs[k]):
                        await merged.put((k, batch))
                    await merged.put((k, None))

                tasks = [asyncio.create_task(pump(k)) for k in range(len(jobs))]
                try:
                    done: set[int] = set()
                    while len(done) < len(jobs):
                        k, batch = await merged.get()
                        for c, text, start in take(k, batch or []):
                            yield chunk(c, text, logs[c].since(start) if logs[c] else None, finish[c])
                        if batch is None or all(finish[k * body.n : (k + 1) * body.n]):
                            done.add(k)
                finally:
                    for task in tasks:
                        task.cancel()
                if (body.stream_options or {}).get("include_usage"):
                    yield sse(
                        {
                            "id": rid,
                            "object": "text_completion",
                            "created": int(time.time()),
                            "model": model,
                            "choices": [],
                            "usage": usage(sum(map(len, prompts)), sum(completion_tokens)),
                        }
                    )

            return streaming(events())

        async def run(k: int) -> None:
            async for batch in steps(*jobs[k]):
                take(k, batch)
                if all(finish[k * body.n : (k + 1) * body.n]):
                    break

        await asyncio.gather(*(run(k) for k in range(len(jobs))))
        return {
            "id": rid,
            "object": "text_completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": c,
                    "text": "".join(texts[c]),
                    "logprobs": final_logprobs(c),
                    "finish_reason": finish[c] or "stop",
                }
                for c in range(len(texts))
            ],
            "usage": usage(sum(map(len, prompts)), sum(completion_tokens)),
        }

    return app


def completion_prompts(tok: Tokenizer, prompt: str | list[str] | list[int] | list[list[int]]) -> list[list[int]]:
    """The prompts of a completions request as ids: a text is a document, <|bos|> then its
    tokens; token ids are taken as they are (the client chose them)."""
    if isinstance(prompt, str):
        prompt = [prompt]
    if not prompt:
        raise APIError(400, "prompt is empty", param="prompt")
    if all(isinstance(p, int) for p in prompt):
        return [list(prompt)]  # one prompt of token ids
    out = []
    for p in prompt:
        if isinstance(p, str):
            out.append([tok.bos_id, *tok.encode(p)])
        elif isinstance(p, list) and p and all(isinstance(t, int) for t in p):
            out.append(list(p))
        else:
            raise APIError(
                400,
                "prompt must be text, a list of texts, token ids or lists of token ids (none empty)",
                param="prompt",
            )
    return out


def serve(
    engine: Engine,
    model_name: str,
    host: str = "127.0.0.1",
    port: int = 8000,
    capacity: int = 32,
    max_waiting: int = 256,
) -> None:
    """Run the server until interrupted (uvicorn, one process: the model is loaded once)."""
    import uvicorn

    uvicorn.run(
        create_app(engine, model_name, capacity=capacity, max_waiting=max_waiting),
        host=host,
        port=port,
        log_level="info",
    )
