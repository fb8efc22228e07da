"""Export a checkpoint and its tokenizer as a HuggingFace model folder.

    crawl2chat export --checkpoint URI --out DIR

    from transformers import AutoModelForCausalLM, AutoTokenizer
    model = AutoModelForCausalLM.from_pretrained(OUT_DIR)      # a Qwen3ForCausalLM
    tokenizer = AutoTokenizer.from_pretrained(OUT_DIR)          # offline, same ids as ours

The folder holds
    model.safetensors        the weights under Qwen3's names (models.gpt.to_hf: a rename)
    config.json              the Qwen3 config equivalent to ours (models.gpt.hf_config)
    generation_config.json   stop tokens (<|assistant_end|>, <|bos|>), pad, the context length
    tokenizer.json           our sentencepiece BPE as a `tokenizers` BPE (see below)
    tokenizer_config.json    specials and a chat template that renders turns as models/chat.py
    README.md                where it came from (checkpoint, step, tokenizer)

`tokenizer_only` (`--tokenizer-only`) writes the two tokenizer files and the README alone: what
lm-eval's `local-completions` route needs to talk to our server (docs/serve.md), and the only
part of a model with recall or smeared keys that HF can hold (their weights have no Qwen3 form).

The tokenizer conversion. Sentencepiece BPE stores pieces in merge order, not merges; it
encodes by repeatedly joining the adjacent pair whose joined piece ranks first. A `tokenizers`
BPE joins the adjacent pair whose merge ranks first. So every way to split a piece into two
pieces of the vocabulary becomes a merge, ranked by the piece's rank, which makes the two
algorithms agree (tests/test_export.py checks ids on real documents and on arbitrary text).
Sentencepiece writes a space as "▁" inside its pieces; the exported vocabulary writes it as
the space itself, so no normaliser and no pre-tokenizer are needed (our tokenizer uses the
identity rule and no dummy prefix). That also keeps a literal "▁" typed by a user what it is
in ours: a character outside the vocabulary, hence its three UTF-8 byte tokens, which no merge
crosses (a "▁" normaliser would have read it as a space). Byte fallback covers every other
character outside the vocabulary, as in ours. One difference remains by design of HF
tokenizers: the specials are "added tokens", which HF matches when their literal text appears
in the input (its chat template relies on that); ours never produce a special from text.
"""

from __future__ import annotations

import json
from typing import Any

import safetensors.torch
import torch

from models import checkpoint, storage
from models.device import DTYPES
from models.gpt import hf_config, to_hf
from models.tokenizer import SPACE_MARK, Tokenizer

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'user' %}<|user_start|>{{ message['content'] }}<|user_end|>"
    "{% elif message['role'] == 'assistant' %}<|assistant_start|>{{ message['content'] }}<|assistant_end|>"
    "{% else %}{{ raise_exception('roles are user and assistant') }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}<|assistant_start|>{% endif %}"
)


def bpe_merges(tokenizer: Tokenizer) -> list[tuple[str, str]]:
    """Every (left, right) pair of mergeable pieces that joins into a piece, ranked by the
    joined piece's rank (its id: sentencepiece stores BPE pieces in merge order). Pieces as
    sentencepiece writes them ("▁" for a space)."""
    pieces = {tokenizer.id_to_piece(i): i for i in range(tokenizer.vocab_size) if tokenizer.piece_kind(i) == "piece"}
    merges = []
    for piece, rank in sorted(pieces.items(), key=lambda kv: kv[1]):
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            if left in pieces and right in pieces:
                merges.append((pieces[left], pieces[right], rank, left, right))
    merges.sort(key=lambda m: (m[2], m[0], m[1]))
    return [(left, right) for *_, left, right in merges]


def _hf_piece(tokenizer: Tokenizer, i: int) -> str:
    """A piece's string in tokenizer.json: an ordinary piece with its spaces as spaces; byte
    tokens and specials as sentencepiece names them ("<0x0A>", "<|bos|>")."""
    piece = tokenizer.id_to_piece(i)
    return piece.replace(SPACE_MARK, " ") if tokenizer.piece_kind(i) == "piece" else piece


def tokenizer_json(tokenizer: Tokenizer) -> dict[str, Any]:
    """The `tokenizers` library's serialisation of a BPE equivalent to `tokenizer`."""
    vocab = {_hf_piece(tokenizer, i): i for i in range(tokenizer.vocab_size)}
    specials = [i for i in range(tokenizer.vocab_size) if tokenizer.piece_kind(i) in ("special", "unknown")]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {
                "id": i,
                "content": tokenizer.id_to_piece(i),
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "special": True,
            }
            for i in specials
        ],
        "normalizer": None,
        "pre_tokenizer": None,
        "post_processor": None,
        "decoder": {"type": "Sequence", "decoders": [{"type": "ByteFallback"}, {"type": "Fuse"}]},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": tokenizer.id_to_piece(0),
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": True,
            "byte_fallback": True,
            "ignore_merges": False,
            "vocab": vocab,
            "merges": [
                [left.replace(SPACE_MARK, " "), right.replace(SPACE_MARK, " ")] for left, right in bpe_merges(tokenizer)
            ],
        },
    }


def tokenizer_config(tokenizer: Tokenizer, context: int) -> dict[str, Any]:
    return {
        # The generic fast tokenizer: it runs tokenizer.json as written (a model-specific class
        # such as Qwen2Tokenizer would rebuild its own pre-tokenizer around the vocabulary).
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<|bos|>",
        "eos_token": "<|assistant_end|>",
        "pad_token": "<|pad|>",
        "unk_token": tokenizer.id_to_piece(0),
        "add_bos_token": False,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": context,
        "chat_template": CHAT_TEMPLATE,
    }


def _json(value: Any) -> bytes:
    return (json.dumps(value, indent=2, ensure_ascii=False) + "\n").encode()


def export(
    checkpoint_uri: str,
    out: str,
    tokenizer_uri: str | None = None,
    dtype: str = "float32",
    tokenizer_only: bool = False,
) -> dict[str, Any]:
    """Write the HF folder for a checkpoint (a step folder, or a run: its latest) to `out`
    (a local folder, or any URI models.storage writes). `tokenizer_uri` defaults to the
    tokenizer the checkpoint was trained with; `dtype` (float32, or bfloat16: half the
    bytes, what a GPU serves in) is the weights'. A rename of tensors needs no accelerator:
    it runs on the CPU whatever models/device.py would pick. `tokenizer_only`: the tokenizer
    files and the README, no weights. Returns what was written."""
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {sorted(DTYPES)}")
    ckpt = checkpoint.load(checkpoint_uri, training_state=False)
    cfg = ckpt.model_config
    tokenizer_uri = tokenizer_uri or ckpt.config.get("tokenizer")
    if not tokenizer_uri:
        raise ValueError(f"{ckpt.uri} does not name its tokenizer: pass tokenizer_uri")
    tok = Tokenizer.load(tokenizer_uri)
    if tok.vocab_size != cfg.vocab_size:
        raise ValueError(f"tokenizer has {tok.vocab_size} pieces, the model {cfg.vocab_size}")
    sp = tok.special
    ids = {"bos_token_id": tok.bos_id, "eos_token_id": sp("<|assistant_end|>"), "pad_token_id": tok.pad_id}
    files = {
        "tokenizer.json": _json(tokenizer_json(tok)),
        "tokenizer_config.json": _json(tokenizer_config(tok, cfg.seq_len)),
    }
    readme = (
        f"# crawl2chat {'tokenizer' if tokenizer_only else 'model'}\n\nExported from checkpoint `{ckpt.uri}` "
        f"(step {ckpt.step}) with tokenizer `{storage.normalize(tokenizer_uri)}`.\n"
    )
    if not tokenizer_only:
        weights = {k: v.to(getattr(torch, dtype)).contiguous() for k, v in to_hf(ckpt.model, cfg).items()}
        files["model.safetensors"] = safetensors.torch.save(weights, metadata={"format": "pt"})
        files["config.json"] = _json({**hf_config(cfg), "torch_dtype": dtype, "dtype": dtype, **ids})
        files["generation_config.json"] = _json(
            {**ids, "eos_token_id": [sp("<|assistant_end|>"), tok.bos_id], "max_length": cfg.seq_len}
        )
        readme += (
            f"Architecture: Qwen3 ({cfg.n_layer} layers, {cfg.n_embd} wide, {cfg.n_head} heads / "
            f"{cfg.n_kv_head} KV heads, context {cfg.seq_len}, {cfg.num_params():,} parameters).\n"
        )
    files["README.md"] = readme.encode()
    for name, data in files.items():
        storage.write_bytes(storage.join(out, name), data, atomic=True)
    return {
        "out": storage.normalize(out),
        "checkpoint": ckpt.uri,
        "step": ckpt.step,
        "tokenizer": storage.normalize(tokenizer_uri),
        "params": cfg.num_params(),
        "files": {name: len(data) for name, data in files.items()},
    }
