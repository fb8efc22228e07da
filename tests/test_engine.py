"""models/engine.py: cached decoding, sampling and seeds, tools inside generation, streaming
text, and the chat/generate commands on top of it."""

from __future__ import annotations

import dataclasses
import io
import json

import pytest
import torch
import torch.nn as nn
from rich.console import Console

from models import checkpoint
from models.chat import render_for_completion
from models.engine import Engine, Request, TokenEvent, draw, filter_logits, sample_seed
from models.gpt import GPT, GPTConfig, KVCache
from models.tokenizer import Tokenizer, train
from models.tools import SearchIndex, create_index, format_passages


@pytest.fixture(scope="module")
def tok(shared_data) -> Tokenizer:
    truth = json.loads((shared_data / "extraction-benchmark" / "ground-truth.json").read_text())
    return train([truth[k]["articleBody"] for k in sorted(truth)][:100], 1024)


def random_model(
    tok: Tokenizer, seq_len: int = 96, seed: int = 0, recall: bool = False, scope: str = "all", pointer: bool = False
) -> GPT:
    """Grouped-query attention (4 heads over 2) and weights large enough for peaked,
    varied next-token distributions. `recall`: with the token lookup (models/recall.py),
    whose per-row token history every cache path must carry; `pointer`: and the query pointer."""
    torch.manual_seed(seed)
    cfg = GPTConfig(vocab_size=tok.vocab_size, seq_len=seq_len, n_layer=2, n_head=4, n_kv_head=2, n_embd=64)
    model = GPT(dataclasses.replace(cfg, recall=recall, recall_cap=4, recall_scope=scope, query_pointer=pointer))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3)
    return model.eval()


@pytest.fixture(scope="module", params=[False, True], ids=["plain", "recall"])
def model(tok, request) -> GPT:
    return random_model(tok, recall=request.param)


class Scripted(nn.Module):
    """A model whose next token is chosen by a script: `table[t]` lists the tokens that may
    follow token t (equally likely; anything unlisted is followed by `default`), or, given
    `sequence`, the token at position p is followed by sequence[p + 1]. It still runs the
    real GPT with the engine's cache, so the cache path is exercised, but its own logits
    decide, which makes a tool call happen on cue."""

    def __init__(self, model: GPT, table: dict[int, list[int]], default: int, sequence: list[int] | None = None):
        super().__init__()
        self.inner, self.config, self.table, self.default, self.sequence = model, model.config, table, default, sequence

    def stacked_weights(self):
        return self.inner.stacked_weights()

    def forward(self, idx: torch.Tensor, kv_cache=None, stacked=None, written=None) -> torch.Tensor:
        start = kv_cache.pos if kv_cache is not None else 0
        logits = self.inner(idx, kv_cache=kv_cache, stacked=stacked, written=written)
        scripted = torch.full_like(logits, -1e9)
        for b in range(idx.size(0)):
            for t in range(idx.size(1)):
                if self.sequence is not None:
                    nexts = self.sequence[start + t + 1 : start + t + 2] or [self.default]
                else:
                    nexts = self.table.get(int(idx[b, t]), [self.default])
                scripted[b, t, nexts] = 0.0
        return scripted


def chain(*tokens: int) -> dict[int, list[int]]:
    table = {a: [b] for a, b in zip(tokens, tokens[1:])}
    assert len(table) == len(tokens) - 1, "a token repeats: the script would be ambiguous"
    return table


def prompt_of(tok: Tokenizer, text: str = "The city council said") -> list[int]:
    return [tok.bos_id, *tok.encode(text)]


# -- the cache ---------------------------------------------------------------------------


def test_cached_decoding_with_a_shared_prefill_equals_full_forward_passes(tok, model):
    engine = Engine(model, tok)
    prompt = prompt_of(tok)
    rows = 3
    gen = torch.Generator().manual_seed(0)
    continuations = torch.randint(0, tok.vocab_size, (rows, 6), generator=gen)
    with torch.inference_mode():
        cache, logits = engine._prefill(prompt, rows, len(prompt) + 6)
        full_prompt = model(torch.tensor([prompt]))[0, -1]
        assert logits.shape == (rows, tok.vocab_size)
        for r in range(rows):  # every row starts from the one prefill
            torch.testing.assert_close(logits[r], full_prompt, rtol=1e-5, atol=1e-5)
        steps = []
        for t in range(6):  # then each row decodes its own tokens from the shared cache
            steps.append(model(continuations[:, t : t + 1], kv_cache=cache)[:, -1])
        full = model(torch.cat([torch.tensor([prompt] * rows), continuations], dim=1))
    assert full_prompt.abs().max() > 1  # not a comparison of near-zero tensors
    torch.testing.assert_close(torch.stack(steps, 1), full[:, len(prompt) :], rtol=1e-5, atol=1e-5)
    # The rows really differ after the prefill (the cache is per row, not shared storage).
    assert not torch.allclose(steps[-1][0], steps[-1][1])


def test_recall_in_context_decodes_from_the_cache_what_a_full_pass_computes(tok):
    """A conversation where recall in context proposes (a query and a reply after a result,
    words repeated from the question and the passage): cached decoding computes what a full
    pass does, row by row, and the proposals really change the logits."""
    model = random_model(tok, recall=True, scope="context")
    s = tok.specials
    words = tok.encode("pg_dump backs up a database")
    prompt = [tok.bos_id, s["<|user_start|>"], *words, *words, s["<|user_end|>"], s["<|assistant_start|>"]]
    prompt += [
        s["<|search_start|>"],
        *words[:2],
        s["<|search_end|>"],
        s["<|result_start|>"],
        *words,
        s["<|result_end|>"],
    ]
    continuations = torch.tensor([words[:6], [*words[:3], s["<|assistant_end|>"], *words[:2]]])
    everywhere = GPT(dataclasses.replace(model.config, recall_scope="all")).eval()
    everywhere.load_state_dict({k: v for k, v in model.state_dict().items() if k != "recall_word"})
    with torch.inference_mode():
        cache, _ = Engine(model, tok)._prefill(prompt, 2, len(prompt) + 6)
        steps = torch.stack([model(continuations[:, t : t + 1], kv_cache=cache)[:, -1] for t in range(6)], 1)
        rows = torch.cat([torch.tensor([prompt] * 2), continuations], dim=1)
        full = model(rows)[:, len(prompt) :]
        turn = slice(2 + len(words), 2 + 2 * len(words))  # the user's words again: recall in context proposes nothing
        silent, loud = (m(rows[:, : len(prompt)])[0, turn] for m in (model, everywhere))
    torch.testing.assert_close(steps, full, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(full[0], full[1])  # the second row closed the turn: no proposals after it
    # inside the user's turn recall in context proposes nothing, where recall everywhere does
    assert not torch.allclose(silent, loud)


def test_dropping_finished_rows_keeps_the_others_cache(tok, model):
    engine = Engine(model, tok)
    prompt = prompt_of(tok)
    cont = torch.randint(0, tok.vocab_size, (3, 4), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        cache, _ = engine._prefill(prompt, 3, len(prompt) + 4)
        for t in range(2):
            model(cont[:, t : t + 1], kv_cache=cache)
        cache.keep([0, 2])  # row 1 finished
        last = [model(cont[[0, 2], t : t + 1], kv_cache=cache)[:, -1] for t in (2, 3)][-1]
        full = model(torch.cat([torch.tensor([prompt] * 2), cont[[0, 2]]], dim=1))[:, -1]
    torch.testing.assert_close(last, full, rtol=1e-5, atol=1e-5)


def test_greedy_generation_equals_argmax_of_full_passes_on_every_row(tok, model):
    engine = Engine(model, tok)
    prompt = prompt_of(tok)
    samples = engine.generate(prompt, 3, max_new_tokens=12, temperature=0, stop=[])
    seq = list(prompt)
    with torch.inference_mode():
        for _ in range(12):
            written = torch.tensor([[i >= len(prompt) for i in range(len(seq))]])  # what recall may not propose
            seq.append(int(model(torch.tensor([seq]), written=written)[0, -1].argmax()))
    assert all(s.tokens == seq[len(prompt) :] for s in samples)
    assert all(s.finished == "length" and s.mask == [1] * 12 for s in samples)


# -- sampling and seeds ------------------------------------------------------------------


def test_top_k_and_top_p_keep_exactly_the_tokens_they_should():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert (filter_logits(logits, 1.0, 1, None) > 0).tolist() == [[True, False, False, False]]
    assert (filter_logits(logits, 1.0, 3, None) > 0).tolist() == [[True, True, True, False]]
    # top-p keeps the smallest set holding p: 0.5 is reached by the first token alone...
    assert (filter_logits(logits, 1.0, None, 0.5) > 0).tolist() == [[True, False, False, False]]
    # ...just above 0.5 needs the second, just above 0.8 the third.
    assert (filter_logits(logits, 1.0, None, 0.51) > 0).tolist() == [[True, True, False, False]]
    assert (filter_logits(logits, 1.0, None, 0.81) > 0).tolist() == [[True, True, True, False]]
    kept = filter_logits(logits, 1.0, None, 0.81)
    torch.testing.assert_close(kept.sum(), torch.tensor(1.0))
    torch.testing.assert_close(kept[0, :3], torch.tensor([0.5, 0.3, 0.15]) / 0.95)
    # Temperature sharpens: at 0.5 the ratio of the first two is squared.
    sharp = filter_logits(logits, 0.5, None, None)
    torch.testing.assert_close(sharp[0, 0] / sharp[0, 1], torch.tensor((0.5 / 0.3) ** 2))


def test_draw_is_the_inverse_cdf_and_never_picks_a_zero():
    probs = torch.tensor([[0.0, 0.25, 0.0, 0.75, 0.0]] * 4)
    uniforms = torch.tensor([0.0, 0.2499, 0.2501, 0.999999])
    assert draw(probs, uniforms).tolist() == [1, 1, 3, 3]
    counts = torch.bincount(
        draw(probs[:1].expand(4000, -1), torch.rand(4000, generator=torch.Generator().manual_seed(0))), minlength=5
    )
    assert counts[0] == counts[2] == counts[4] == 0
    assert 850 < counts[1] < 1150  # 1000 expected


def test_the_same_seed_gives_the_same_samples_whatever_the_batch(tok, model):
    engine = Engine(model, tok)
    prompt = prompt_of(tok)
    options = dict(max_new_tokens=16, temperature=1.0, top_k=100, top_p=0.95, stop=[])
    four = engine.generate(prompt, 4, seed=7, **options)
    assert [s.tokens for s in engine.generate(prompt, 4, seed=7, **options)] == [s.tokens for s in four]
    # Sample i is sample i: alone, or in a retried chunk that holds samples 2..3.
    assert [s.tokens for s in engine.generate(prompt, 2, seed=7, first_sample=2, **options)] == [
        s.tokens for s in four[2:]
    ]
    assert engine.generate(prompt, 1, seed=7, first_sample=3, **options)[0].tokens == four[3].tokens
    # Different samples and different seeds differ.
    assert len({tuple(s.tokens) for s in four}) == 4
    other = engine.generate(prompt, 4, seed=8, **options)
    assert all(a.tokens != b.tokens for a, b in zip(four, other))


def test_padded_rows_of_different_prompts_compute_what_each_prompt_computes_alone(tok, model):
    """The cache of a batch of prompts of different lengths (left padding, per-row rotary
    positions, masked padding slots) gives each row the logits of its prompt alone."""
    prompts = [prompt_of(tok, t) for t in ("The city council said on Monday that", "A", "Officials")]
    assert len({len(p) for p in prompts}) == 3
    width = max(len(p) for p in prompts)
    pads = [width - len(p) for p in prompts]
    cont = torch.randint(0, tok.vocab_size, (3, 5), generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        cache = KVCache(model.config, 3, width + 6, pad=pads)
        ids = torch.tensor([[0] * pad + p for pad, p in zip(pads, prompts)])
        first = model(ids, kv_cache=cache)[:, -1]
        steps = [model(cont[:, t : t + 1], kv_cache=cache)[:, -1] for t in range(5)]
        cache.keep([2, 0])  # rows leave; the others' positions and masks follow them
        last = model(cont[[2, 0], 4:5] + 1, kv_cache=cache)[:, -1]
        for b, prompt in enumerate(prompts):
            alone = model(torch.cat([torch.tensor([prompt]), cont[b : b + 1]], dim=1))[0]
            torch.testing.assert_close(first[b], alone[len(prompt) - 1], rtol=1e-4, atol=1e-4)
            torch.testing.assert_close(torch.stack([s[b] for s in steps]), alone[len(prompt) :], rtol=1e-4, atol=1e-4)
        for j, b in enumerate((2, 0)):
            alone = model(
                torch.cat([torch.tensor([prompts[b]]), cont[b : b + 1, :5], cont[b : b + 1, 4:5] + 1], dim=1)
            )[0, -1]
            torch.testing.assert_close(last[j], alone, rtol=1e-4, atol=1e-4)
    assert torch.isfinite(first).all()  # padding queries see themselves: no NaN spreads


def test_a_batch_of_prompts_draws_the_samples_each_prompt_draws_alone(tok, model):
    engine = Engine(model, tok)
    options = dict(max_new_tokens=12, temperature=1.0, top_k=100, stop=[])
    requests = [
        Request(prompt_of(tok, t), n, seed=s)
        for t, n, s in (("The city council said on Monday", 3, 11), ("A", 2, 12), ("Officials in the town", 4, 13))
    ]
    batched = engine.generate_batch(requests, **options)
    assert [len(group) for group in batched] == [3, 2, 4]
    for request, group in zip(requests, batched):
        alone = engine.generate(request.prompt, request.num_samples, seed=request.seed, **options)
        assert [s.tokens for s in group] == [s.tokens for s in alone]
    greedy = engine.generate_batch(requests, max_new_tokens=8, temperature=0, stop=[])
    for request, group in zip(requests, greedy):
        assert all(
            s.tokens == engine.generate(request.prompt, 1, max_new_tokens=8, temperature=0, stop=[])[0].tokens
            for s in group
        )
    # Each row's length limit is its own prompt's room in the context.
    long = [tok.bos_id] + tok.encode("word " * 200)[: model.config.seq_len - 4]
    short, tight = engine.generate_batch(
        [Request(prompt_of(tok, "A"), 1), Request(long, 1)], max_new_tokens=20, temperature=0, stop=[]
    )
    assert len(short[0].tokens) == 20 and len(tight[0].tokens) == 3 and tight[0].finished == "length"


def test_sample_seeds_are_stable_and_distinct():
    assert sample_seed(7, 3) == sample_seed(7, 3) == 2820881036890788059  # fixed forever: rollouts depend on it
    assert len({sample_seed(s, i) for s in range(10) for i in range(100)}) == 1000
    assert all(0 <= sample_seed(s, 1) < 2**63 for s in range(100))


def test_rows_stop_independently_and_compacted_rows_reproduce(tok, model):
    """Rows choose between stopping and going on; the ones that go on must be the same
    tokens as when drawn alone (the batch shrinks under them)."""
    end = tok.special("<|assistant_end|>")
    prompt = prompt_of(tok)
    words = [i for i in range(300, 400) if tok.piece_kind(i) == "piece" and i not in prompt][:7]
    table = chain(prompt[-1], *words)
    for w in words:
        table[w] = table.get(w, []) + [end]  # after each word: stop or go on, even odds
    engine = Engine(Scripted(random_model(tok), table, end), tok)
    batch = engine.generate(prompt, 8, max_new_tokens=len(words) + 1, temperature=1.0, seed=3)
    lengths = [len(s.tokens) for s in batch]
    assert len(set(lengths)) > 2  # rows finished at different steps
    for i, s in enumerate(batch):
        assert s.finished == ("stop" if s.tokens[-1] == end else "length")
        assert s.tokens[-1] != end or s.mask[-1] == 1  # the stop token is the model's: mask 1
        alone = engine.generate(prompt, 1, max_new_tokens=len(words) + 1, temperature=1.0, seed=3, first_sample=i)[0]
        assert alone.tokens == s.tokens


def test_context_and_token_limits(tok, model):
    engine = Engine(model, tok)
    long_prompt = [tok.bos_id] + tok.encode("word " * 200)[: model.config.seq_len - 5]
    (sample,) = engine.generate(long_prompt, 1, max_new_tokens=50, temperature=0, stop=[])
    assert len(sample.tokens) == 4 and sample.finished == "length"  # the context ran out first
    with pytest.raises(ValueError, match="no room"):
        engine.generate(long_prompt + [5] * 4, 1)
    with pytest.raises(ValueError, match="empty"):
        engine.generate([], 1)


# -- streaming text ----------------------------------------------------------------------


def test_streamed_text_decodes_across_token_boundaries(tok):
    text = " Café — naïve 東京 🙂 done"
    ids = tok.encode(text)
    assert any(tok.piece_kind(i) == "byte" for i in ids)  # characters split over byte tokens
    end = tok.special("<|assistant_end|>")
    prompt = [tok.bos_id, tok.special("<|assistant_start|>")]
    engine = Engine(Scripted(random_model(tok), {}, end, sequence=prompt + ids), tok)
    streamed: list[str] = []
    (sample,) = engine.generate(
        prompt, 1, max_new_tokens=len(ids) + 5, temperature=0, on_step=lambda events: streamed.append(events[0].text)
    )
    assert sample.tokens == ids + [end] and sample.finished == "stop"
    assert "".join(streamed) == sample.text == text
    # Decoding token by token would be wrong here (partial characters become U+FFFD).
    assert "".join(tok.decode([i]) for i in ids) != text


# -- tools -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def index(tmp_path_factory) -> SearchIndex:
    path = tmp_path_factory.mktemp("search") / "index.sqlite"
    create_index(
        path,
        [
            (
                "Lake Varn",
                "Lake Varn is the deepest lake in the valley, 212 metres at its centre.",
                "https://example.org/varn",
                "d1",
            ),
            (
                "Old Mill",
                "The old mill on the river was rebuilt in 1911 after a fire.",
                "https://example.org/mill",
                "d2",
            ),
        ],
    )
    return SearchIndex(path)


def test_a_search_call_runs_the_real_search_and_forces_its_result_into_that_row_only(tok, index):
    sp = tok.special
    end = sp("<|assistant_end|>")
    prompt = prompt_of(tok, "How deep is it?")
    query = tok.encode("Varn lake")
    other = tok.encode(" No")[0]
    # After the prompt: call the search, or answer "No"; both equally likely.
    table = chain(sp("<|search_start|>"), *query, sp("<|search_end|>"))
    table[prompt[-1]] = [sp("<|search_start|>"), other]
    table[sp("<|result_end|>")] = [end]
    engine = Engine(Scripted(random_model(tok), table, end), tok, search=index, search_results=2, result_chars=400)
    samples = engine.generate(prompt, 8, max_new_tokens=80, temperature=1.0, seed=1)

    expected_result = format_passages(index.search("Varn lake", k=2, max_chars=400), 400)
    assert "212 metres" in expected_result
    forced = [sp("<|result_start|>"), *tok.encode(expected_result), sp("<|result_end|>")]
    callers = [s for s in samples if s.tokens[0] == sp("<|search_start|>")]
    answerers = [s for s in samples if s.tokens[0] == other]
    assert callers and answerers and len(callers) + len(answerers) == 8
    for s in callers:
        call = [sp("<|search_start|>"), *query, sp("<|search_end|>")]
        assert s.tokens == call + forced + [end]
        assert s.mask == [1] * len(call) + [0] * len(forced) + [1]  # the tool's tokens are masked
        assert s.tool_calls[0].tool == "search" and s.tool_calls[0].query == "Varn lake" and s.tool_calls[0].ok
        assert "212 metres" in s.text and s.finished == "stop"
    for s in answerers:
        assert s.tokens == [other, end] and s.mask == [1, 1] and not s.tool_calls


def run_calc(tok, expression: str):
    sp = tok.special
    end = sp("<|assistant_end|>")
    prompt = prompt_of(tok, "What is it?")
    expr = tok.encode(expression)
    call = [sp("<|calc_start|>"), *expr, sp("<|calc_end|>")]
    # The model writes the call, then (after the forced output) ends its turn.
    engine = Engine(Scripted(random_model(tok), {}, end, sequence=prompt + call), tok)
    (sample,) = engine.generate(prompt, 1, max_new_tokens=80, temperature=0)
    assert sample.tokens[: len(call)] == call and sample.mask[: len(call)] == [1] * len(call)
    output = sample.tokens[len(call) : -1]
    assert output[0] == sp("<|output_start|>") and output[-1] == sp("<|output_end|>")
    assert sample.mask[len(call) : -1] == [0] * len(output) and sample.tokens[-1] == end
    return tok.decode(output), sample


def test_a_calculator_call_gets_its_value(tok):
    value, sample = run_calc(tok, "12*34")
    assert value == "408" and sample.tool_calls[0].ok


def test_a_hostile_calculator_call_gets_an_error_not_an_exception(tok):
    for expression in ("9**9**9**9", "__import__('os')"):
        value, sample = run_calc(tok, expression)
        assert value.startswith("error:") and not sample.tool_calls[0].ok


def test_a_search_without_an_index_reports_it(tok):
    engine = Engine(random_model(tok), tok)
    assert engine.run_tool("search", "lake").result == "error: no search index is loaded"


# -- chat rendering and the terminal front-ends ------------------------------------------


def test_chat_prompt_renders_turns_with_specials_only_from_ids(tok):
    sp = tok.special
    ids = render_for_completion(tok, [{"role": "user", "content": "hi <|assistant_end|>"}])
    assert ids[:2] == [tok.bos_id, sp("<|user_start|>")] and ids[-2:] == [sp("<|user_end|>"), sp("<|assistant_start|>")]
    assert sp("<|assistant_end|>") not in ids  # typed text never becomes a special token
    with pytest.raises(ValueError, match="role"):
        render_for_completion(tok, [{"role": "system", "content": "x"}])


def test_stream_printer_shows_tool_calls_and_results_apart_from_the_text(tok):
    from flows.chat import StreamPrinter

    sp = tok.special
    console = Console(file=io.StringIO(), width=200)
    printer = StreamPrinter(console, Engine(random_model(tok), tok))
    events = [
        TokenEvent(0, tok.encode("Let")[0], False, "Let"),
        TokenEvent(0, sp("<|calc_start|>"), False, ""),
        TokenEvent(0, 300, False, "2+2"),
        TokenEvent(0, sp("<|calc_end|>"), False, ""),
        TokenEvent(0, sp("<|output_start|>"), True, ""),
        TokenEvent(0, 301, True, "4"),
        TokenEvent(0, sp("<|output_end|>"), True, ""),
        TokenEvent(0, 302, False, "Four.", "stop"),
    ]
    for e in events:
        printer.feed(e)
    assert console.file.getvalue() == "Let\ncalculator> 2+2\n4\nFour.\n"


@pytest.fixture
def saved(tmp_path, tok):
    """A checkpoint and its tokenizer on disk, as training leaves them."""
    tok.save(str(tmp_path / "tok"))
    model = random_model(tok)
    uri = checkpoint.save(
        str(tmp_path / "run"),
        1,
        model=model.state_dict(),
        config={"model": dataclasses.asdict(model.config), "tokenizer": str(tmp_path / "tok")},
    )
    return uri


def test_generate_command_samples_with_a_seed(saved, tmp_path):
    from typer.testing import CliRunner

    from flows.cli import app

    args = [
        "generate",
        "--checkpoint",
        saved,
        "--prompt",
        "The city",
        "--lake",
        str(tmp_path / "lake"),
        "--num-samples",
        "3",
        "--max-new-tokens",
        "8",
        "--seed",
        "5",
        "--json",
    ]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    samples = json.loads(first.stdout)
    assert len(samples) == 3 and all(len(s["tokens"]) <= 8 and s["mask"] == [1] * len(s["tokens"]) for s in samples)
    assert json.loads(CliRunner().invoke(app, args).stdout) == samples
    engine = Engine.from_checkpoint(saved)
    direct = engine.generate(
        [engine.tokenizer.bos_id, *engine.tokenizer.encode("The city")],
        3,
        max_new_tokens=8,
        temperature=0.8,
        top_k=50,
        seed=5,
    )
    assert [s.tokens for s in direct] == [s["tokens"] for s in samples]


def test_chat_command_streams_replies_and_keeps_the_conversation(saved, tmp_path):
    from typer.testing import CliRunner

    from flows.cli import app

    result = CliRunner().invoke(
        app,
        ["chat", "--checkpoint", saved, "--lake", str(tmp_path / "lake"), "--max-new-tokens", "6"],
        input="hello there\nand again\n/reset\n/quit\n",
    )
    assert result.exit_code == 0, result.output
    assert result.output.count("bot> ") == 2 and "(new conversation)" in result.output
    assert "no search index" in result.output  # told why search calls would fail


# -- the fixed-shape decode step (what a GPU compiles into CUDA graphs) -----------------------


def test_the_static_decoder_samples_what_the_eager_engine_samples(tok, model):
    """models/decode.py's step (every shape fixed: masked slots, rows in a power-of-two batch,
    finished rows kept) draws the eager engine's tokens, for a batch of prompts of different
    lengths, greedy and sampled; the compiled mode runs this very step."""
    eager, static = Engine(model, tok, decode="eager"), Engine(model, tok, decode="static")
    requests = [
        Request(prompt_of(tok, t), n, seed=s) for t, n, s in (("The city council said on Monday", 3, 1), ("A", 2, 2))
    ]
    for options in (dict(temperature=0.0), dict(temperature=1.0, top_k=50)):
        a = eager.generate_batch(requests, max_new_tokens=10, stop=[], **options)
        b = static.generate_batch(requests, max_new_tokens=10, stop=[], **options)
        assert [[s.tokens for s in g] for g in a] == [[s.tokens for s in g] for g in b]
    assert list(static._decoders) == [(8, 64)]  # 5 rows -> a batch of 8; slots rounded up to 64
    again = static.generate(
        prompt_of(tok), 1, max_new_tokens=6, temperature=0, stop=[]
    )  # another shape, its own decoder
    assert again[0].tokens == eager.generate(prompt_of(tok), 1, max_new_tokens=6, temperature=0, stop=[])[0].tokens
    assert set(static._decoders) == {(8, 64), (1, 64)}
    with pytest.raises(ValueError, match="decode"):
        Engine(model, tok, decode="fast")
    assert Engine(model, tok).decode == "eager"  # auto on a CPU


def test_the_static_decoder_recalls_in_context_as_the_eager_engine_does(tok):
    """With recall in context (a search call, its result and a reply that restates the
    query), the fixed-shape step draws the eager engine's tokens; compiling it is refused."""
    model = random_model(tok, recall=True, scope="context")
    s = tok.specials
    words = tok.encode("pg_dump backs up a database")
    prompt = [tok.bos_id, s["<|user_start|>"], *words, s["<|user_end|>"], s["<|assistant_start|>"]]
    prompt += [s["<|search_start|>"], *words[:2], s["<|search_end|>"], s["<|result_start|>"], *words[1:]]
    prompt += [s["<|result_end|>"]]
    eager, static = Engine(model, tok, decode="eager"), Engine(model, tok, decode="static")
    requests = [Request(prompt, 2, seed=3), Request(prompt + words[:1], 1, seed=4)]
    for options in (dict(temperature=0.0), dict(temperature=1.0, top_k=50)):
        a = eager.generate_batch(requests, max_new_tokens=8, stop=[], **options)
        b = static.generate_batch(requests, max_new_tokens=8, stop=[], **options)
        assert [[s.tokens for s in g] for g in a] == [[s.tokens for s in g] for g in b]
    with torch.inference_mode():  # one step from a loaded cache: a full pass's logits
        decoder = static._take_decoder(1, 64)
        cache, _ = Engine(model, tok)._prefill(prompt + words[:1], 1, len(prompt) + 2)
        decoder.load(cache)
        step = decoder.step(torch.tensor([words[1]]))
        full = model(torch.tensor([prompt + words[:2]]))[:, -1]
    torch.testing.assert_close(step, full, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="recall in context"):
        Engine(model, tok, decode="compiled")


def test_the_query_pointer_opens_a_query_alike_in_every_decoder_and_votes_for_the_users_words(tok):
    """Where a query opens, the pointer's vote is mixed in the same way by a full pass, cached
    steps (batched with another row) and the static decoder; the mixture is a distribution
    that gives the user's tokens at least the gate's share, however the model's own votes."""
    model = random_model(tok, recall=True, scope="context", pointer=True)
    s = tok.specials
    words = tok.encode("Tell me about pg_dump and backups")
    prompt = [tok.bos_id, s["<|user_start|>"], *words, s["<|user_end|>"], s["<|assistant_start|>"]]
    opened = [s["<|search_start|>"], *words[3:5], s["<|search_end|>"]]
    continuations = torch.tensor([opened, words[:4]])  # the second row never opens a query
    with torch.inference_mode():
        cache, _ = Engine(model, tok)._prefill(prompt, 2, len(prompt) + 4)
        steps = torch.stack([model(continuations[:, t : t + 1], kv_cache=cache)[:, -1] for t in range(4)], 1)
        full = model(torch.cat([torch.tensor([prompt] * 2), continuations], dim=1))[:, len(prompt) :]
        plain = GPT(dataclasses.replace(model.config, query_pointer=False)).eval()
        plain.load_state_dict({k: v for k, v in model.state_dict().items() if "point" not in k and "opener" not in k})
        unpointed = plain(torch.tensor([prompt + opened]))[0, len(prompt)]
        gate = torch.sigmoid(model.recall_point_gate(model.norm(last_hidden(model, prompt + opened[:1]))))
        no_query = plain(torch.cat([torch.tensor([prompt]), continuations[1:]], 1))[0, len(prompt) :]
    torch.testing.assert_close(steps, full, rtol=1e-5, atol=1e-5)
    mixed = full[0, 0]
    assert torch.logsumexp(mixed, -1).item() == pytest.approx(0.0, abs=1e-4)  # log-probabilities
    assert not torch.allclose(mixed.log_softmax(-1), unpointed.log_softmax(-1), atol=1e-3)
    assert mixed.exp()[sorted(set(words))].sum() >= gate.item() - 1e-5
    torch.testing.assert_close(full[1], no_query)  # no query opened: the pointer adds nothing
    with torch.inference_mode():  # the static decoder's step that opens the query
        decoder = Engine(model, tok, decode="static")._take_decoder(1, 64)
        decoder.load(Engine(model, tok)._prefill(prompt, 1, len(prompt) + 1)[0])
        step = decoder.step(torch.tensor([s["<|search_start|>"]]))
    torch.testing.assert_close(step[0], mixed, rtol=1e-5, atol=1e-5)


def last_hidden(model: GPT, row: list[int]) -> torch.Tensor:
    """The last layer's output at the row's last slot (before the final norm)."""
    captured = {}
    hook = model.blocks[-1].register_forward_hook(lambda _m, _i, out: captured.setdefault("x", out))
    try:
        model(torch.tensor([row]))
    finally:
        hook.remove()
    return captured["x"][0, -1]
