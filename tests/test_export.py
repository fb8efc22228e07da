"""models/export.py: the exported folder loads in HF transformers (offline) with our logits,
our token ids, our chat format and our greedy continuations."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models import checkpoint
from models.chat import render_for_completion
from models.engine import Engine
from models.export import bpe_merges, export
from models.gpt import GPT, GPTConfig
from models.tokenizer import SPACE_MARK, SPECIALS, Tokenizer, train

CFG = dict(seq_len=64, n_layer=2, n_head=4, n_kv_head=2, n_embd=64)


def articles(shared_data) -> list[str]:
    truth = json.loads((shared_data / "extraction-benchmark" / "ground-truth.json").read_text())
    return [truth[k]["articleBody"] for k in sorted(truth)]


@pytest.fixture(scope="module")
def tok(shared_data) -> Tokenizer:
    return train(articles(shared_data)[:120], 2048)  # the other 61 articles are unseen text


def random_model(vocab_size: int) -> GPT:
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=vocab_size, **CFG))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3)
    return model.eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tok):
    """A checkpoint as training leaves it, exported to a folder."""
    root = tmp_path_factory.mktemp("export")
    tok.save(str(root / "tok"))
    model = random_model(tok.vocab_size)
    uri = checkpoint.save(
        str(root / "run"),
        3,
        model=model.state_dict(),
        config={"model": dataclasses.asdict(model.config), "tokenizer": str(root / "tok")},
    )
    result = export(str(root / "run"), str(root / "hf"))  # the run folder: its latest checkpoint
    assert result["checkpoint"] == uri and result["step"] == 3
    return model, root / "hf"


@pytest.fixture(scope="module", autouse=True)
def offline():
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")  # the folder must be enough: no hub lookups
        yield


@pytest.fixture(scope="module")
def hf_tok(exported):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(exported[1])


def test_transformers_loads_the_folder_and_gives_our_logits(exported):
    from transformers import AutoModelForCausalLM, Qwen3ForCausalLM

    model, folder = exported
    hf = AutoModelForCausalLM.from_pretrained(folder).eval()
    assert isinstance(hf, Qwen3ForCausalLM)
    idx = torch.randint(
        0, model.config.vocab_size, (3, model.config.seq_len), generator=torch.Generator().manual_seed(1)
    )
    with torch.no_grad():
        ours, theirs = model(idx), hf(idx).logits
    assert ours.abs().max() > 1
    torch.testing.assert_close(theirs, ours, rtol=1e-5, atol=1e-5)


def test_hf_greedy_generate_continues_exactly_as_our_engine(exported, tok):
    from transformers import AutoModelForCausalLM

    model, folder = exported
    hf = AutoModelForCausalLM.from_pretrained(folder).eval()
    prompt = [tok.bos_id, *tok.encode("The council said")]
    with torch.no_grad():
        out = hf.generate(torch.tensor([prompt]), max_new_tokens=20, min_new_tokens=20, do_sample=False)
    ours = Engine(model, tok).generate(prompt, 1, max_new_tokens=20, temperature=0, stop=[])[0]
    assert out[0, len(prompt) :].tolist() == ours.tokens


def test_the_exported_tokenizer_encodes_real_documents_to_our_ids(hf_tok, tok, shared_data):
    hf = hf_tok
    docs = articles(shared_data)  # 120 the tokenizer was trained on, 61 it never saw
    for doc in docs:
        ids = tok.encode(doc)
        assert hf.encode(doc, add_special_tokens=False) == ids
        assert hf.decode(ids) == doc


# Any Unicode text (surrogates cannot be encoded), "▁" included, but no special's name: HF
# matches those as added tokens by design (see models/export.py).
ANY_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60).filter(
    lambda t: not any(s in t for s in SPECIALS)
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.one_of(ANY_TEXT, st.text(alphabet=f" \n\t.,'0123456789abcdeéü東京🙂{SPACE_MARK}", max_size=60)))
def test_the_exported_tokenizer_agrees_on_any_text(hf_tok, tok, text):
    ids = tok.encode(text)
    assert hf_tok.encode(text, add_special_tokens=False) == ids
    assert hf_tok.decode(ids) == tok.decode(ids) == text


def test_a_literal_space_mark_stays_bytes_through_the_export(hf_tok, tok):
    """Sentencepiece writes spaces as U+2581; a user who types one gets its bytes, not a space."""
    text = f"a {SPACE_MARK}b{SPACE_MARK}{SPACE_MARK} c"
    ids = tok.encode(text)
    marks = [tok.id_to_piece(i) for i in ids].count("<0xE2>")
    assert marks == 3 and tok.decode(ids) == text
    assert hf_tok.encode(text, add_special_tokens=False) == ids
    assert hf_tok.decode(ids) == text
    assert hf_tok.encode(f"a{SPACE_MARK}", add_special_tokens=False) != hf_tok.encode("a ", add_special_tokens=False)


def test_specials_chat_template_and_stop_tokens(exported, hf_tok, tok):
    from transformers import GenerationConfig

    folder, hf = exported[1], hf_tok
    assert {hf.convert_tokens_to_ids(s) for s in SPECIALS} == set(tok.specials.values())
    assert hf.convert_tokens_to_ids(hf.eos_token) == tok.special("<|assistant_end|>")
    assert hf.pad_token_id == tok.pad_id and hf.bos_token_id == tok.bos_id
    messages = [
        {"role": "user", "content": "Hello there"},
        {"role": "assistant", "content": "Hi."},
        {"role": "user", "content": "How deep is the lake?"},
    ]
    ids = hf.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
    assert list(ids) == render_for_completion(tok, messages)
    gen = GenerationConfig.from_pretrained(folder)
    assert gen.eos_token_id == [tok.special("<|assistant_end|>"), tok.bos_id] and gen.max_length == CFG["seq_len"]


def test_merges_are_every_split_of_every_piece_ranked_by_the_piece(tok):
    merges = bpe_merges(tok)
    pieces = {tok.id_to_piece(i): i for i in range(tok.vocab_size) if tok.piece_kind(i) == "piece"}
    joined = [pieces[a + b] for a, b in merges]
    assert joined == sorted(joined)  # ranked by the joined piece's id
    assert all(a in pieces and b in pieces for a, b in merges)
    # Every multi-character piece is reachable by at least one merge.
    assert {pieces[a + b] for a, b in merges} == {
        i
        for p, i in pieces.items()
        if len(p) > 1 and any(p[:c] in pieces and p[c:] in pieces for c in range(1, len(p)))
    }


def test_export_reads_a_checkpoint_on_s3(s3_bucket, tok, tmp_path):
    from transformers import AutoModelForCausalLM

    tok_uri = s3_bucket + "/tokenizers/t"
    tok.save(tok_uri)
    model = random_model(tok.vocab_size)
    uri = checkpoint.save(
        s3_bucket + "/checkpoints/r",
        1,
        model=model.state_dict(),
        config={"model": dataclasses.asdict(model.config), "tokenizer": tok_uri},
    )
    export(uri, str(tmp_path / "hf"))
    hf = AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    idx = torch.randint(0, tok.vocab_size, (1, 16))
    with torch.no_grad():
        torch.testing.assert_close(hf(idx).logits, model(idx), rtol=1e-5, atol=1e-5)


def test_export_refuses_a_tokenizer_of_another_size(tmp_path, tok, shared_data):
    other = train(articles(shared_data)[:60], 1024)
    other.save(str(tmp_path / "other"))
    model = random_model(tok.vocab_size)
    uri = checkpoint.save(
        str(tmp_path / "run"), 1, model=model.state_dict(), config={"model": dataclasses.asdict(model.config)}
    )
    with pytest.raises(ValueError, match="does not name its tokenizer"):
        export(uri, str(tmp_path / "hf"))
    with pytest.raises(ValueError, match="1024 pieces, the model 2048"):
        export(uri, str(tmp_path / "hf"), tokenizer_uri=str(tmp_path / "other"))


def test_export_command(exported, tmp_path):
    from typer.testing import CliRunner

    from flows.cli import app

    run = exported[1].parent / "run"
    result = CliRunner().invoke(
        app, ["export", "--checkpoint", str(run), "--out", str(tmp_path / "out"), "--lake", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    written = json.loads(result.stdout)["files"]
    assert {
        "model.safetensors",
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
    } <= set(written)
    assert all((tmp_path / "out" / name).stat().st_size == size for name, size in written.items())


def test_a_model_with_recall_exports_its_tokenizer_only_and_refuses_the_rest(tmp_path, tok):
    """Recall has no Qwen3 weights: the full export says so (and nothing is written), while
    `tokenizer_only` writes the tokenizer files HF loads, with the ids of ours."""
    from transformers import AutoTokenizer

    tok.save(str(tmp_path / "tok"))
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, recall=True, **CFG))
    config = {"model": dataclasses.asdict(model.config), "tokenizer": str(tmp_path / "tok")}
    uri = checkpoint.save(str(tmp_path / "run"), 1, model=model.state_dict(), config=config)
    with pytest.raises(ValueError, match="tokenizer-only"):
        export(uri, str(tmp_path / "hf"))
    assert not (tmp_path / "hf").exists()
    from typer.testing import CliRunner

    from flows.cli import app

    args = ["export", "--checkpoint", uri, "--out", str(tmp_path / "hf"), "--lake", str(tmp_path)]
    refused = CliRunner().invoke(app, args)  # the command: a usage error that says why, no traceback
    assert refused.exit_code == 2 and "sft.recall=false" in " ".join(refused.output.split())
    assert "Traceback" not in refused.output and not (tmp_path / "hf").exists()
    written = export(uri, str(tmp_path / "hf"), tokenizer_only=True)["files"]
    assert set(written) == {"tokenizer.json", "tokenizer_config.json", "README.md"}
    text = "A tokenizer, exported alone: 42 pages."
    assert AutoTokenizer.from_pretrained(tmp_path / "hf")(text, add_special_tokens=False)["input_ids"] == tok.encode(
        text
    )
