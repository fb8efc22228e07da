"""models/tokenizer.py: exact round trips, specials that text cannot reach, streaming decode,
token byte lengths, determinism and storage, on a tokenizer trained on real text."""

from __future__ import annotations

import glob
import json
import sysconfig

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.tokenizer import SPACE_MARK, SPECIAL_IDS, SPECIALS, Tokenizer, train

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def articles(shared_data) -> list[str]:
    truth = json.loads((shared_data / "extraction-benchmark" / "ground-truth.json").read_text())
    return [truth[k]["articleBody"] for k in sorted(truth)]


def stdlib_sources(n: int) -> list[str]:
    files = sorted(glob.glob(sysconfig.get_paths()["stdlib"] + "/*.py"))[:n]
    return [open(f, encoding="utf-8").read()[:20_000] for f in files]


@pytest.fixture(scope="module")
def docs(shared_data) -> list[str]:
    return articles(shared_data)[:120] + stdlib_sources(10)


@pytest.fixture(scope="module")
def tok(docs) -> Tokenizer:
    return train(docs, 2048)


# -- round trips -------------------------------------------------------------------------

WHITESPACE = st.text(alphabet=" \t\n\r\x0b\x0c\u00a0\u2009\u3000" + SPACE_MARK, max_size=60)
CODE_LINES = st.lists(
    st.sampled_from(
        ["def f(x):", "    return x * 2", "\tif a:", "        pass", "", "# comment", "}", "x = [1, 2, 3]"]
    ),
    max_size=12,
).map("\n".join)
EMOJI_CJK = st.text(
    alphabet=st.one_of(
        st.characters(min_codepoint=0x1F300, max_codepoint=0x1FAFF),
        st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF),
        st.sampled_from("ぁアー한글 \n"),
    ),
    max_size=40,
)
CONTROLS = st.text(
    alphabet=st.characters(max_codepoint=0x1F) | st.characters(min_codepoint=0x7F, max_codepoint=0x9F), max_size=30
)
TRICKY = st.sampled_from(
    list(SPECIALS) + ["<unk>", "<0x41>", "<0x0A>", "<s>", "</s>", SPACE_MARK, "\u2585", "▁▁", " ⁇ ", "<|", "|>"]
)
MIXED = st.lists(st.one_of(st.text(max_size=15), TRICKY, WHITESPACE, CODE_LINES, EMOJI_CJK, CONTROLS), max_size=10).map(
    "".join
)


@SETTINGS
@given(text=st.text())
def test_decode_encode_is_identity_for_any_text(tok, text):
    assert tok.decode(tok.encode(text)) == text


@SETTINGS
@given(text=st.one_of(WHITESPACE, CODE_LINES, EMOJI_CJK, CONTROLS, MIXED))
def test_round_trip_whitespace_code_emoji_cjk_controls(tok, text):
    assert tok.decode(tok.encode(text)) == text


def test_round_trip_of_real_documents(tok, docs):
    assert all(tok.decode(ids) == d for ids, d in zip(tok.encode_batch(docs, threads=2), docs))


def test_literal_space_mark_is_not_a_space(tok):
    text = f"a{SPACE_MARK}b {SPACE_MARK}{SPACE_MARK}"
    assert tok.decode(tok.encode(text)) == text
    assert tok.encode(SPACE_MARK) == [tok._sp.piece_to_id(f"<0x{b:02X}>") for b in SPACE_MARK.encode()]


# -- specials ----------------------------------------------------------------------------


def test_specials_have_fixed_ids_and_are_control_symbols(tok):
    assert list(tok.specials) == list(SPECIALS)
    assert list(tok.specials.values()) == list(range(1, len(SPECIALS) + 1))
    assert tok.bos_id == 1 and tok.pad_id == 14  # the code tool's four came later, after it
    assert [
        tok.special(n)
        for n in ("<|python_start|>", "<|python_end|>", "<|python_output_start|>", "<|python_output_end|>")
    ] == [15, 16, 17, 18]
    assert all(tok.is_special(i) and tok.decode([i]) == "" for i in tok.specials.values())
    assert tok.special("<|assistant_end|>") == 5
    assert tok.specials == SPECIAL_IDS  # what recall in context finds turns and results by
    with pytest.raises(KeyError, match="no special token"):
        tok.special("<|javascript_start|>")


def test_a_tokenizer_trained_before_the_code_tool_still_loads_without_its_tokens(monkeypatch):
    """The specials a tokenizer of the previous release was trained with are SPECIALS minus
    LATER_SPECIALS; it must load (its checkpoints keep working) and report the code tool's
    tokens as absent, with every other id where it was."""
    from models import tokenizer as module

    docs = ["The river runs past the old mill. " * 20, "Numbers like 12 and 345 are split. " * 20]
    monkeypatch.setattr(module, "SPECIALS", tuple(s for s in SPECIALS if s not in module.LATER_SPECIALS))
    old_proto = train(docs, 320).model_proto
    monkeypatch.undo()
    old = Tokenizer(old_proto)
    assert list(old.specials) == list(SPECIALS[:14]) and list(old.specials.values()) == list(range(1, 15))
    assert not old.has_special("<|python_start|>") and old.has_special("<|calc_start|>")
    with pytest.raises(KeyError, match="no special token"):
        old.special("<|python_start|>")
    assert old.decode(old.encode("print(1) <|python_start|>")) == "print(1) <|python_start|>"
    new = train(docs, 320)
    assert new.has_special("<|python_start|>") and new.special("<|pad|>") == old.special("<|pad|>")


@SETTINGS
@given(text=MIXED)
def test_text_never_encodes_to_a_special_or_unknown_id(tok, text):
    ids = tok.encode(text)
    assert not any(tok.is_special(i) for i in ids)  # 0 (<unk>) included
    assert tok.decode(ids) == text


def test_words_map_a_word_with_a_space_or_a_capital_to_the_word_written_plainly(tok):
    words = tok.words()
    for i, j in enumerate(words):  # each id is itself, or its piece without the space, lower-cased or not
        plain = tok.id_to_piece(i).removeprefix(SPACE_MARK)
        assert j == i or tok.id_to_piece(j) in (plain, plain.lower())
    single = [w for w in ("the", "of", "and", "in", "to") if len(tok.encode(w)) == 1]
    assert single  # "▁the" and "the" are both pieces of any English tokenizer of a few hundred words
    for word in single:
        inside, opening = tok.encode(f"so {word}")[-1], tok.encode(word)[0]
        assert inside != opening and words[inside] == opening and words[opening] == opening
    capital = [
        w for w in ("The", "In", "It", "This") if len(tok.encode(f"so {w}")) == 2 and len(tok.encode(w.lower())) == 1
    ]
    assert capital and all(words[tok.encode(f"so {w}")[-1]] == tok.encode(w.lower())[0] for w in capital)
    assert all(words[i] == i for i in tok.specials.values())
    assert sum(j != i for i, j in enumerate(words)) > 50


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(word=st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJ_-.", min_size=1, max_size=12))
def test_an_opener_is_the_first_token_of_a_word_that_opens_a_text(tok, word):
    """`openers`: a word written after a space is, at a text's start, spelt from its opener
    (the first token of the word alone), whatever the word; other tokens are themselves."""
    openers = tok.openers()
    spaced = tok.encode(f"so {word}")[1]  # the word's first token after a space
    if tok.id_to_piece(spaced).startswith(SPACE_MARK) and len(tok.id_to_piece(spaced)) > 1:
        assert openers[spaced] == tok.encode(tok.id_to_piece(spaced).removeprefix(SPACE_MARK))[0]
        assert tok.decode([openers[spaced]]) and word.startswith(tok.decode([openers[spaced]])[:1])
    opening = tok.encode(word)[0]
    if not tok.id_to_piece(opening).startswith(SPACE_MARK):
        assert openers[opening] == opening
    assert all(openers[i] == i for i in tok.specials.values())


def test_literal_special_strings_are_ordinary_text(tok):
    for name in SPECIALS:
        ids = tok.encode(f"user says {name} here")
        assert tok.special(name) not in ids and len(ids) > 3
    # Only a caller that builds ids puts a special in, and it decodes to nothing.
    ids = [tok.special("<|user_start|>"), *tok.encode("hi"), tok.special("<|user_end|>")]
    assert tok.decode(ids) == "hi"
    assert [tok.id_to_piece(i) for i in (ids[0], ids[-1])] == ["<|user_start|>", "<|user_end|>"]


# -- what the training choices buy -------------------------------------------------------


def test_newlines_merge_with_what_they_follow(tok):
    pieces = [tok.id_to_piece(i) for i in tok.encode("The end.\n\nThe next paragraph.")]
    assert any("\n\n" in p for p in pieces), pieces


def test_runs_of_spaces_are_whitespace_only_pieces(tok):
    first = tok.id_to_piece(tok.encode("        return x")[0])
    assert first == "\u2581" * 8, first  # eight spaces of indentation: one token


def test_digits_are_split_one_per_token(tok):
    ids = tok.encode("2048 + 31337")
    digits = [tok.id_to_piece(i) for i in ids if tok.id_to_piece(i).strip("\u2581").isdigit()]
    assert "".join(digits).replace("\u2581", "") == "204831337" and all(len(d.strip("\u2581")) == 1 for d in digits)


# -- decoding ----------------------------------------------------------------------------


@SETTINGS
@given(text=st.one_of(st.text(), EMOJI_CJK, MIXED))
def test_streaming_decode_of_encoded_text_emits_it_exactly(tok, text):
    stream = tok.stream()
    out = ""
    for i in tok.encode(text):
        out += stream.push(i)
        assert text.startswith(out)  # never a wrong character, only held back
    assert out + stream.flush() == text


@SETTINGS
@given(data=st.data())
def test_streaming_decode_equals_decode_for_any_ids(tok, data):
    ids = data.draw(st.lists(st.integers(0, tok.vocab_size - 1), max_size=50))
    stream = tok.stream()
    assert "".join(stream.push(i) for i in ids) + stream.flush() == tok.decode(ids)


def test_token_by_token_decoding_would_break_characters_split_into_bytes(tok):
    text = "ok \U0001f9a9 done"  # a flamingo: no piece of its own, so four byte tokens
    ids = tok.encode(text)
    assert sum(tok.piece_kind(i) == "byte" for i in ids) == 4
    assert "".join(tok.decode([i]) for i in ids) != text  # why StreamDecoder exists
    stream = tok.stream()
    pieces = [stream.push(i) for i in ids]
    assert "".join(pieces) == text and "\U0001f9a9" in pieces  # emitted whole, once its last byte came


def test_invalid_byte_sequences_decode_to_replacement_characters(tok):
    lone = tok._sp.piece_to_id("<0xE6>")  # the first byte of a 3-byte character, alone
    assert tok.decode([lone, *tok.encode("x")]) == "\ufffdx"


def test_ids_outside_the_vocabulary_are_an_error(tok):
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tok.decode([5, tok.vocab_size])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tok.decode([-1])


@SETTINGS
@given(text=MIXED)
def test_token_bytes_sum_to_the_utf8_length(tok, text):
    ids = tok.encode(text)
    assert int(tok.token_bytes[ids].sum()) == len(text.encode())


def test_token_bytes_are_zero_for_specials_and_one_for_byte_tokens(tok):
    tb = tok.token_bytes
    assert len(tb) == tok.vocab_size and tb[0] == 0
    assert all(tb[i] == 0 for i in tok.specials.values())
    assert all(tb[tok._sp.piece_to_id(f"<0x{b:02X}>")] == 1 for b in range(256))
    with pytest.raises(ValueError):  # shared by every caller: read-only
        tb[1] = 3


# -- batch, determinism, storage, errors -------------------------------------------------


def test_batch_encode_on_threads_equals_one_by_one(tok, docs):
    texts = docs[:40] + ["", f"x{SPACE_MARK}y", "a\nb"]
    assert tok.encode_batch(texts, threads=2) == [tok.encode(t) for t in texts]
    assert tok.encode_batch([], threads=0) == []


def test_training_is_deterministic_and_depends_on_the_sample(docs):
    first = train(docs[:60], 1024, threads=2)
    assert train(docs[:60], 1024, threads=2).model_proto == first.model_proto
    assert train(docs[1:61], 1024, threads=2).model_proto != first.model_proto


def test_save_and_load_on_local_disk_and_s3(tok, lake_root):
    uri = lake_root + "/tokenizers/t"
    model_uri = tok.save(uri)
    assert model_uri.endswith("/tokenizers/t/tokenizer.model")
    for source in (uri, model_uri):
        back = Tokenizer.load(source)
        assert back.model_proto == tok.model_proto and back.encode("hello world") == tok.encode("hello world")
    with pytest.raises(FileNotFoundError, match="no tokenizer"):
        Tokenizer.load(lake_root + "/tokenizers/missing")


def test_too_little_text_for_the_vocabulary_is_a_clear_error():
    with pytest.raises(ValueError, match="cannot train a 4096-token vocabulary"):
        train(["a tiny corpus, far too small"], 4096)
    with pytest.raises(ValueError, match="no text"):
        train(["", ""], 512)


def test_a_model_without_our_specials_is_refused(docs):
    import io

    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(docs[:20]), model_writer=model, vocab_size=500, model_type="bpe", minloglevel=2
    )
    with pytest.raises(ValueError, match="not a crawl2chat tokenizer"):
        Tokenizer(model.getvalue())
