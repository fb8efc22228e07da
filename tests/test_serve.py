"""crawl2chat serve: the OpenAI API through the official client, exact against the engine;
logprobs as lm-eval reads them; bad input; 32 concurrent streams; a client that leaves; the
chat page in chromium; the command itself."""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import json
import os
import subprocess
import sys
import threading
import time

import httpx
import pytest
import torch
import torch.nn as nn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flows.serve import StopText, chat_prompt, create_app
from models import checkpoint
from models.engine import Engine
from models.gpt import GPT, GPTConfig
from models.tokenizer import Tokenizer, train
from tests.conftest import free_port

SEQ_LEN = 128


@pytest.fixture(scope="module")
def tok(shared_data) -> Tokenizer:
    truth = json.loads((shared_data / "extraction-benchmark" / "ground-truth.json").read_text())
    return train([truth[k]["articleBody"] for k in sorted(truth)][:100], 1024)


def random_model(tok: Tokenizer) -> GPT:
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, seq_len=SEQ_LEN, n_layer=2, n_head=4, n_kv_head=2, n_embd=64))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3)
    return model.eval()


class Script(nn.Module):
    """A model whose next token follows a table of the last token (anything unlisted is
    followed by `default`), optionally slowed down; it still runs the real GPT through the
    server's cache, so the cache path is exercised, but the table decides."""

    def __init__(self, model: GPT, table: dict[int, int], default: int, delay: float = 0.0):
        super().__init__()
        self.inner, self.config, self.table, self.default, self.delay = model, model.config, table, default, delay

    def stacked_weights(self):
        return self.inner.stacked_weights()

    def forward(self, idx: torch.Tensor, kv_cache=None, stacked=None, written=None) -> torch.Tensor:
        logits = self.inner(idx, kv_cache=kv_cache, stacked=stacked, written=written)
        scripted = torch.full_like(logits, -1e9)
        for b in range(idx.size(0)):
            for t in range(idx.size(1)):
                scripted[b, t, self.table.get(int(idx[b, t]), self.default)] = 0.0
        time.sleep(self.delay)
        return scripted


def chain(table: dict[int, int], *tokens: int) -> None:
    for a, b in zip(tokens, tokens[1:]):
        assert table.setdefault(a, b) == b, "the script would be ambiguous"


@contextlib.contextmanager
def running(engine: Engine, name: str = "tiny", **options):
    import uvicorn

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(engine, name, **options), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture(scope="module")
def model(tok) -> GPT:
    return random_model(tok)


@pytest.fixture(scope="module")
def engine(model, tok) -> Engine:
    return Engine(model, tok)


@pytest.fixture(scope="module")
def url(engine):
    with running(engine, capacity=32) as url:
        yield url


@pytest.fixture(scope="module")
def client(url):
    from openai import OpenAI

    return OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=60)


# The chat model of the scripted server: any question gets a calculator call, then an answer.
ANSWER = " The answer is five."


@pytest.fixture(scope="module")
def scripted(tok):
    sp = tok.special
    table: dict[int, int] = {}
    chain(table, sp("<|assistant_start|>"), sp("<|calc_start|>"), *tok.encode("2+3"), sp("<|calc_end|>"))
    chain(table, sp("<|output_end|>"), *tok.encode(ANSWER), sp("<|assistant_end|>"))
    chain(table, LOOP(tok), LOOP(tok))  # a completion that never ends by itself
    return table, sp("<|assistant_end|>")


def LOOP(tok: Tokenizer) -> int:
    return tok.encode(" loop")[-1]


@pytest.fixture(scope="module")
def tool_url(tok, scripted):
    table, end = scripted
    with running(Engine(Script(random_model(tok), table, end, delay=0.02), tok)) as url:
        yield url


def messages(text: str = "What is the weather like?") -> list[dict]:
    return [{"role": "user", "content": text}]


# -- the openai client ------------------------------------------------------------------------


def test_chat_reply_is_the_engines_sample_for_the_seed(client, engine, tok):
    reply = client.chat.completions.create(
        model="tiny", messages=messages(), max_tokens=24, temperature=0.9, top_p=0.95, seed=5
    )
    prompt = chat_prompt(tok, messages())
    (ours,) = engine.generate(prompt, 1, max_new_tokens=24, temperature=0.9, top_p=0.95, seed=5)
    choice = reply.choices[0]
    assert choice.message.role == "assistant" and choice.message.content == ours.text
    assert choice.finish_reason == ours.finished
    assert reply.usage.prompt_tokens == len(prompt) and reply.usage.completion_tokens == len(ours.tokens)
    assert reply.model == "tiny" and reply.object == "chat.completion"


def test_streamed_chat_equals_the_whole_reply_and_n_samples_are_the_engines(client, engine, tok):
    kwargs = dict(model="tiny", messages=messages("Tell me a story"), max_tokens=20, temperature=1.0, seed=9, n=3)
    whole = client.chat.completions.create(**kwargs)
    parts, finish, usage = {0: [], 1: [], 2: []}, {}, None
    for chunk in client.chat.completions.create(**kwargs, stream=True, stream_options={"include_usage": True}):
        assert chunk.object == "chat.completion.chunk"
        for choice in chunk.choices:
            parts[choice.index].append(choice.delta.content or "")
            if choice.finish_reason:
                finish[choice.index] = choice.finish_reason
        usage = chunk.usage or usage
    samples = engine.generate(
        chat_prompt(tok, messages("Tell me a story")), 3, max_new_tokens=20, temperature=1.0, seed=9
    )
    for i, sample in enumerate(samples):
        assert "".join(parts[i]) == whole.choices[i].message.content == sample.text
        assert finish[i] == whole.choices[i].finish_reason == sample.finished
    assert usage.completion_tokens == sum(len(s.tokens) for s in samples)
    assert len({s.text for s in samples}) > 1


def test_a_stop_string_cuts_the_reply_before_it(client):
    kwargs = dict(model="tiny", messages=messages(), max_tokens=40, temperature=0.0)
    full = client.chat.completions.create(**kwargs).choices[0].message.content
    stop = full[10:13]
    assert len(stop) == 3 and full.find(stop) == 10
    cut = client.chat.completions.create(**kwargs, stop=[stop, "never appears"]).choices[0]
    assert cut.message.content == full[:10] and cut.finish_reason == "stop"
    streamed = "".join(
        c.choices[0].delta.content or ""
        for c in client.chat.completions.create(**kwargs, stop=stop, stream=True)
        if c.choices
    )
    assert streamed == full[:10]


@given(
    text=st.text(alphabet="ab\n", max_size=30),
    stops=st.lists(st.text(alphabet="ab\n", min_size=1, max_size=3), max_size=3),
    cuts=st.lists(st.integers(0, 30), max_size=6),
)
def test_stop_text_cuts_at_the_first_stop_however_the_text_is_split(text, stops, cuts):
    # The first stop to complete (generation ends there); of those ending together, the longest.
    found = [(i + len(s), i) for s in stops if (i := text.find(s)) >= 0]
    expected = text[: min(found)[1]] if found else text
    stop, out, last = StopText(stops), [], 0
    for cut in sorted(cuts) + [len(text)]:
        out.append(stop.push(text[last:cut]))
        last = max(last, cut)
    out.append(stop.flush())
    assert "".join(out) == expected and stop.hit == bool(found)


# -- tools -------------------------------------------------------------------------------------


def test_a_tool_call_is_reported_in_openai_shape_and_round_trips_as_history(tool_url, tok, scripted):
    from openai import OpenAI

    client = OpenAI(base_url=tool_url + "/v1", api_key="unused", max_retries=0)
    reply = client.chat.completions.create(model="tiny", messages=messages("What is 2+3?"), temperature=0)
    message = reply.choices[0].message
    assert message.content == ANSWER and reply.choices[0].finish_reason == "stop"
    (call,) = message.tool_calls
    assert call.type == "function" and call.function.name == "calculator"
    assert json.loads(call.function.arguments) == {"expression": "2+3"}
    assert call.output == "5" and call.content_offset == 0  # our extension: what the tool returned

    # Streamed, the same call assembles from its deltas.
    arguments, output = "", None
    for chunk in client.chat.completions.create(
        model="tiny", messages=messages("What is 2+3?"), temperature=0, stream=True
    ):
        for delta_call in chunk.choices[0].delta.tool_calls or []:
            arguments += delta_call.function.arguments or "" if delta_call.function else ""
            output = getattr(delta_call, "output", None) or output
    assert json.loads(arguments) == {"expression": "2+3"} and output == "5"

    # Sent back as history, the turn renders exactly as the model wrote and read it.
    first = chat_prompt(tok, messages("What is 2+3?"))
    sp = tok.special
    turn = [
        sp("<|calc_start|>"),
        *tok.encode("2+3"),
        sp("<|calc_end|>"),
        sp("<|output_start|>"),
        *tok.encode("5"),
        sp("<|output_end|>"),
        *tok.encode(ANSWER),
        sp("<|assistant_end|>"),
    ]
    history = [*messages("What is 2+3?"), message.model_dump(exclude_none=True), {"role": "user", "content": "Thanks"}]
    assert chat_prompt(tok, history)[: len(first) + len(turn)] == first + turn


# -- completions and logprobs ----------------------------------------------------------------------


def test_echo_logprobs_are_the_models_and_lm_eval_reads_them(client, model, tok):
    from lm_eval.models.openai_completions import LocalCompletionsAPI

    prompts = [[tok.bos_id, *tok.encode(t)] for t in ("The council met on Tuesday", "Rain", "A café in 東京 🙂 opened")]
    # What lm-eval's local-completions sends for loglikelihood requests.
    out = client.completions.create(
        model="tiny", prompt=prompts, temperature=0, max_tokens=1, logprobs=1, echo=True, seed=1234
    )
    assert len(out.choices) == 3
    for prompt, choice in zip(prompts, sorted(out.choices, key=lambda c: c.index)):
        lp = choice.logprobs
        with torch.no_grad():
            ref = torch.log_softmax(model(torch.tensor([prompt]))[0].float(), dim=-1)
        assert len(lp.tokens) == len(prompt) + 1 and lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
        for t in range(1, len(prompt)):
            assert lp.token_logprobs[t] == pytest.approx(ref[t - 1, prompt[t]].item(), abs=1e-5)
            (best,) = lp.top_logprobs[t].values()
            assert best == pytest.approx(ref[t - 1].max().item(), abs=1e-5)
            assert (lp.token_logprobs[t] == best) == (int(ref[t - 1].argmax()) == prompt[t])  # exact floats
        # The greedy token after the prompt, and offsets into the echoed text.
        assert lp.token_logprobs[-1] == pytest.approx(ref[-1].max().item(), abs=1e-5)
        text = tok.decode(prompt)
        assert choice.text.startswith(text) and lp.text_offset[-1] == len(text)
        assert lp.text_offset == sorted(lp.text_offset) and lp.tokens[0] == "<|bos|>"
    # lm-eval's own parser: the continuation's summed logprob and whether it is greedy.
    ctxlens = [2, 1, 3]
    parsed = LocalCompletionsAPI.parse_logprobs(out.model_dump(), ctxlens=ctxlens)
    for (total, greedy), prompt, n in zip(parsed, prompts, ctxlens):
        with torch.no_grad():
            ref = torch.log_softmax(model(torch.tensor([prompt]))[0].float(), dim=-1)
        expected = sum(ref[t - 1, prompt[t]].item() for t in range(n, len(prompt)))
        assert total == pytest.approx(expected, abs=1e-4)
        assert greedy == all(int(ref[t - 1].argmax()) == prompt[t] for t in range(n, len(prompt)))


def test_completions_text_prompts_echo_without_generation_and_streaming(client, url, engine, tok):
    out = client.completions.create(model="tiny", prompt="The city", max_tokens=0, echo=True, logprobs=2)
    (choice,) = out.choices
    assert choice.text == "The city" and choice.finish_reason == "length"
    assert choice.logprobs.tokens[0] == "<|bos|>" and "".join(choice.logprobs.tokens[1:]) == "The city"
    assert all(len(top) <= 2 for top in choice.logprobs.top_logprobs[1:])

    ids = [tok.bos_id, *tok.encode("The city")]
    (ours,) = engine.generate(ids, 1, max_new_tokens=12, temperature=0.7, seed=4)
    whole = client.completions.create(model="tiny", prompt="The city", max_tokens=12, temperature=0.7, seed=4)
    streamed = "".join(
        c.choices[0].text
        for c in client.completions.create(
            model="tiny", prompt="The city", max_tokens=12, temperature=0.7, seed=4, stream=True
        )
        if c.choices
    )
    assert whole.choices[0].text == streamed == ours.text


# -- bad input -----------------------------------------------------------------------------------


BAD = [
    ("/v1/chat/completions", b"{not json", 400, None),
    ("/v1/chat/completions", b"[1, 2]", 400, None),
    ("/v1/chat/completions", {"model": "gpt-4", "messages": messages()}, 404, "model_not_found"),
    ("/v1/chat/completions", {"messages": messages(), "max_tokens": -1}, 400, None),
    ("/v1/chat/completions", {"messages": []}, 400, None),
    ("/v1/chat/completions", {"messages": [{"role": "wizard", "content": "x"}]}, 400, None),
    (
        "/v1/chat/completions",
        {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
        400,
        None,
    ),
    (
        "/v1/chat/completions",
        {"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]},
        400,
        None,
    ),
    (
        "/v1/chat/completions",
        {"messages": [{"role": "user", "content": "word " * 400}]},
        400,
        "context_length_exceeded",
    ),
    ("/v1/chat/completions", {"messages": messages(), "temperature": 7}, 400, None),
    ("/v1/chat/completions", {"messages": messages(), "n": 0}, 400, None),
    ("/v1/chat/completions", {"messages": messages(), "n": 1000}, 400, None),
    (
        "/v1/chat/completions",
        {"messages": messages(), "tools": [{"type": "function", "function": {"name": "f"}}]},
        400,
        "unsupported_parameter",
    ),
    ("/v1/chat/completions", {"messages": messages(), "stream": True, "max_tokens": -5}, 400, None),
    ("/v1/completions", {"prompt": [[1, 5, 10**9]]}, 400, None),
    ("/v1/completions", {"prompt": []}, 400, None),
    ("/v1/completions", {"prompt": [1] * (SEQ_LEN + 1), "max_tokens": 0, "echo": True}, 400, "context_length_exceeded"),
    ("/v1/completions", {"prompt": "x", "max_tokens": -1}, 400, None),
    ("/v1/completions", {"prompt": "x", "logprobs": 500}, 400, None),
    ("/v1/completions", {"prompt": "x", "suffix": "y"}, 400, "unsupported_parameter"),
    ("/v1/nothing-here", {}, 404, None),
]


def test_bad_input_gets_an_openai_error_and_the_server_goes_on(url, client):
    with httpx.Client(base_url=url, timeout=30) as http:
        for path, body, status, code in BAD:
            content = body if isinstance(body, bytes) else json.dumps(body).encode()
            response = http.post(path, content=content, headers={"Content-Type": "application/json"})
            assert response.status_code == status, (path, body, response.text)
            error = response.json()["error"]
            assert error["message"] and error["type"] and set(error) == {"message", "type", "param", "code"}, error
            assert code is None or error["code"] == code, (body, error)
        assert http.get("/health").json()["status"] == "ok"
    from openai import BadRequestError, NotFoundError

    with pytest.raises(NotFoundError):
        client.chat.completions.create(model="other", messages=messages())
    with pytest.raises(BadRequestError, match="context"):
        client.chat.completions.create(model="tiny", messages=messages("word " * 400))
    assert (
        client.chat.completions.create(model="tiny", messages=messages(), max_tokens=3).choices[0].message is not None
    )


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
MESSAGE = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "assistant", "system", "tool", "developer", "x"])},
    optional={"content": JSON | st.text(max_size=30), "tool_calls": JSON},
)
CHAT_BODY = st.fixed_dictionaries(
    {"messages": st.lists(MESSAGE, max_size=4) | JSON},
    optional={"n": JSON, "stop": JSON, "temperature": JSON, "top_p": JSON, "seed": JSON, "stream": st.booleans()},
)
COMPLETION_BODY = st.fixed_dictionaries(
    {"prompt": JSON | st.lists(st.integers(-5, 2000), max_size=5)},
    optional={"echo": JSON, "logprobs": JSON, "n": JSON, "stop": JSON, "stream": st.booleans()},
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    path_body=st.one_of(
        st.tuples(st.just("/v1/chat/completions"), CHAT_BODY | JSON),
        st.tuples(st.just("/v1/completions"), COMPLETION_BODY | JSON),
    )
)
def test_any_json_body_gets_a_reply_or_a_4xx_never_a_5xx(url, path_body):
    path, body = path_body
    if isinstance(body, dict):
        body = {**body, "max_tokens": 2}  # keep what does generate short
    response = httpx.post(url + path, json=body, timeout=60)
    assert response.status_code in (200, 400, 404), (body, response.text)
    if response.status_code != 200:
        error = response.json()["error"]
        assert isinstance(error["message"], str) and error["type"] == "invalid_request_error"
    elif "data: " in response.text[:6]:
        assert response.text.rstrip().endswith("data: [DONE]") and '"error"' not in response.text


def test_a_full_line_gets_429_not_a_crash(engine):
    with running(engine, capacity=1, max_waiting=1) as url, httpx.Client(base_url=url, timeout=60) as http:
        body = {"messages": messages(), "max_tokens": 5, "n": 2}
        response = http.post("/v1/chat/completions", json=body)
        assert response.status_code == 400  # n beyond the batch
        codes = []
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            for r in pool.map(
                lambda _: http.post("/v1/chat/completions", json={**body, "n": 1, "max_tokens": 60}), range(8)
            ):
                codes.append(r.status_code)
                assert r.status_code == 200 or r.json()["error"]["code"] == "server_busy"
        assert 429 in codes and 200 in codes


# -- many clients at once ------------------------------------------------------------------------


def test_32_concurrent_streaming_clients_each_get_their_whole_reply(url, engine, tok):
    from openai import OpenAI

    def ask(i: int) -> tuple[str, str | None]:
        client = OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=120)
        parts, finish = [], None
        for chunk in client.chat.completions.create(
            model="tiny",
            messages=messages(f"Question number {i}?"),
            max_tokens=24,
            temperature=0.8,
            seed=i,
            stream=True,
        ):
            for choice in chunk.choices:
                parts.append(choice.delta.content or "")
                finish = choice.finish_reason or finish
        return "".join(parts), finish

    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        replies = list(pool.map(ask, range(32)))
    for i, (text, finish) in enumerate(replies):
        (ours,) = engine.generate(
            chat_prompt(tok, messages(f"Question number {i}?")), 1, max_new_tokens=24, temperature=0.8, seed=i
        )
        assert (text, finish) == (ours.text, ours.finished), i
    stats = httpx.get(url + "/health").json()
    assert stats["peak_rows"] > 4 and stats["rows"] == 0  # they shared forwards, and all left


def test_a_client_that_leaves_mid_stream_frees_its_row(tool_url, tok):
    # The scripted model repeats this token, slowly: the reply would take ~2.5 s to finish.
    loop = LOOP(tok)
    with httpx.Client(base_url=tool_url, timeout=30) as http:
        body = {"prompt": [tok.bos_id, loop], "max_tokens": SEQ_LEN, "stream": True}
        with http.stream("POST", "/v1/completions", json=body) as response:
            assert response.status_code == 200
            lines = response.iter_lines()
            got = [next(lines) for _ in range(6)]
            assert any(line.startswith("data: {") for line in got)
            assert http.get("/health").json()["rows"] == 1
        deadline = time.monotonic() + 1.0
        while http.get("/health").json()["rows"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert http.get("/health").json()["rows"] == 0


# -- the chat page ---------------------------------------------------------------------------------


def test_the_chat_page_streams_a_reply_with_the_tool_call_dimmed(tool_url):
    from playwright.sync_api import expect, sync_playwright

    from tests.e2e.ui import CHROMIUM, CHROMIUM_ARGS

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", *CHROMIUM_ARGS])
        page = browser.new_page()
        page.set_default_timeout(30_000)
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url))
        page.goto(tool_url + "/")
        expect(page.locator("#title")).to_contain_text("tiny")
        # Every text the reply shows on its way, recorded as the DOM changes.
        page.evaluate("""() => { window.seen = [];
            new MutationObserver(() => { const r = document.querySelector('.assistant');
                if (r) window.seen.push([r.dataset.state, r.textContent]); })
            .observe(document.getElementById('log'), {subtree: true, childList: true, characterData: true, attributes: true}); }""")
        page.fill("#input", "What is 2+3?")
        page.press("#input", "Enter")
        reply = page.locator(".assistant").first
        expect(reply).to_have_attribute("data-state", "done")
        # Streaming: the answer was seen part-written, growing, before the reply was done.
        partial = {text for state, text in page.evaluate("window.seen") if state == "streaming" and "The" in text}
        assert len(partial) >= 3
        expect(reply).to_contain_text(ANSWER.strip())
        tool = reply.locator(".tool")
        expect(tool).to_contain_text("calculator>")
        expect(tool.locator(".args")).to_have_text("2+3")
        expect(tool.locator(".output")).to_have_text("5")
        assert float(tool.evaluate("e => getComputedStyle(e).opacity")) < 1
        # A second turn sends the first back as history and gets its own reply.
        page.fill("#input", "And again?")
        page.press("#input", "Enter")
        expect(page.locator(".assistant").nth(1)).to_have_attribute("data-state", "done")
        expect(page.locator(".assistant").nth(1)).to_contain_text(ANSWER.strip())
        assert all(r.startswith(tool_url) for r in requests)  # nothing fetched from elsewhere
        browser.close()


# -- the command ----------------------------------------------------------------------------------


def test_serve_command_resolves_a_run_name_in_the_lake(tmp_path, tok, model):
    lake = tmp_path / "lake"
    tok.save(str(lake / "tokenizers" / "t"))
    checkpoint.save(
        str(lake / "checkpoints" / "mychat"),
        2,
        model=model.state_dict(),
        config={"model": dataclasses.asdict(model.config), "tokenizer": str(lake / "tokenizers" / "t")},
    )
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from flows.cli import app; app()",
            "serve",
            "--checkpoint",
            "mychat",
            "--lake",
            str(lake),
            "--no-search",
            "--port",
            str(port),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stdout.read()
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health").json()
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the server did not come up"
                time.sleep(0.2)
        assert health["model"] == "mychat"
        models = httpx.get(f"http://127.0.0.1:{port}/v1/models").json()
        assert models["data"][0]["id"] == "mychat" and models["data"][0]["max_model_len"] == SEQ_LEN
        assert "<textarea" in httpx.get(f"http://127.0.0.1:{port}/").text
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_prompt_that_opens_a_tool_call_runs_the_tool_in_the_server_as_in_the_engine(tok, scripted):
    """A prompt ending in <|calc_start|> asks for the calculator: the batcher's row starts
    inside the call, runs the tool when the model closes it, and matches the engine."""
    from models.batcher import Batcher, Sampling

    table, end = scripted
    engine = Engine(Script(random_model(tok), table, end), tok)
    prompt = [*chat_prompt(tok, messages("What is two and three?")), tok.special("<|calc_start|>")]
    (expected,) = engine.generate(prompt, 1, max_new_tokens=40, temperature=0)
    assert [c.result for c in expected.tool_calls] == ["5"]
    batcher, done = Batcher(engine, capacity=2), threading.Event()
    try:
        job = batcher.submit(prompt, Sampling(max_tokens=40, temperature=0), lambda item: item is None and done.set())
        assert done.wait(60)
    finally:
        batcher.close()
    (served,) = job.samples()
    assert served.tokens == expected.tokens and served.mask == expected.mask and served.text == expected.text
    assert [(c.tool, c.query, c.result) for c in served.tool_calls] == [("calculator", "2+3", "5")]


def test_every_engine_tool_has_its_argument_in_the_api():
    """A tool call streams as OpenAI's function arguments: every tool the engine runs (the code
    tool included) needs its argument's name, or a model that calls it fails the request."""
    from flows.serve import ARGUMENT
    from models.chat import TOOL_TOKENS

    assert set(ARGUMENT) == set(TOOL_TOKENS)
