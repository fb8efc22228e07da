"""The tokenizer: a sentencepiece BPE model, wrapped so that text round-trips exactly and
user text can never turn into a special token.

How the model is trained (see `train`) and why:
- BPE with byte fallback: a character outside the vocabulary becomes its UTF-8 bytes, so
  nothing is ever unknown. Digits are split one per token (arithmetic sees every digit).
- No normalisation that changes text: the identity rule, no dummy prefix, no removal of
  extra whitespace, and whitespace-only pieces allowed (runs of spaces, indentation).
- Newlines: sentencepiece trains on "sentences" and, fed a file, splits it into lines, so
  `\\n` would never be merged and would cost one byte token each. We feed whole documents
  (cropped) through `sentence_iterator` instead, so newlines merge with what they follow
  (".\\n\\n", ":\\n", "\\n\\n"), as they do in GPT-2's byte-level BPE.
- Special tokens are sentencepiece *control* symbols: encoding never produces them, even
  for text that spells "<|assistant_end|>" literally (user-defined symbols would be matched
  in text: a prompt injection into the chat and tool protocol). Only code that builds id
  lists (the chat renderer, the engine) puts them in, by id.

Decoding does not go through sentencepiece: every id maps to the exact bytes it stands for
(a piece's text with its "▁" marks as spaces, a byte token's byte, nothing for a special),
and the text is the UTF-8 decoding of their concatenation. That one table gives `decode`,
the streaming decoder (which must hold back a character split across byte tokens) and
`token_bytes` (for bits per byte). Sentencepiece writes spaces as "▁" (U+2581), so a literal
U+2581 in the input would come back as a space; `encode` emits it as its three byte tokens.
"""

from __future__ import annotations

import codecs
import hashlib
import io
import os
from collections.abc import Iterable, Sequence

import numpy as np
import sentencepiece as spm

from models import lake, storage

# Ids 1..18, in this order (id 0 is sentencepiece's mandatory <unk>, never produced with
# byte fallback). <|bos|> marks a document boundary; the rest frame chat turns and tools.
# Specials are only ever added at the end (LATER_SPECIALS): a tokenizer trained before they
# existed still loads, without them, and a checkpoint trained with it keeps its ids.
SPECIALS = (
    "<|bos|>",
    "<|user_start|>",
    "<|user_end|>",
    "<|assistant_start|>",
    "<|assistant_end|>",
    "<|search_start|>",
    "<|search_end|>",
    "<|result_start|>",
    "<|result_end|>",
    "<|calc_start|>",
    "<|calc_end|>",
    "<|output_start|>",
    "<|output_end|>",
    "<|pad|>",
    "<|python_start|>",
    "<|python_end|>",
    "<|python_output_start|>",
    "<|python_output_end|>",
)
SPECIAL_IDS = {name: i for i, name in enumerate(SPECIALS, start=1)}  # what every crawl2chat tokenizer assigns
LATER_SPECIALS = frozenset(SPECIALS[14:])  # the code tool's: absent from tokenizers trained before it
MODEL_FILE = "tokenizer.model"
SPACE_MARK = "\u2581"  # sentencepiece's "▁": how a space is written inside a piece


class Tokenizer:
    """Encode, decode and inspect one sentencepiece model (see the module docstring)."""

    def __init__(self, model_proto: bytes):
        self.model_proto = bytes(model_proto)
        self._sp = spm.SentencePieceProcessor(model_proto=self.model_proto)
        sp = self._sp
        self.vocab_size: int = sp.get_piece_size()
        self.specials: dict[str, int] = {}
        for name in SPECIALS:
            i = sp.piece_to_id(name)
            if sp.is_unknown(i) and name in LATER_SPECIALS:
                continue  # an older tokenizer: its models never saw this token (see has_special)
            if not sp.is_control(i):
                raise ValueError(f"not a crawl2chat tokenizer: {name} is not a control symbol")
            self.specials[name] = i
        if not all(sp.is_byte(sp.piece_to_id(f"<0x{b:02X}>")) for b in range(256)):
            raise ValueError("not a crawl2chat tokenizer: it lacks byte fallback")
        self.bos_id = self.specials["<|bos|>"]
        self.pad_id = self.specials["<|pad|>"]
        self._bytes: list[bytes] = [self._piece_bytes(i) for i in range(self.vocab_size)]
        self._token_bytes = np.fromiter(map(len, self._bytes), dtype=np.int32, count=self.vocab_size)
        self._token_bytes.flags.writeable = False
        self._space_mark_ids = [sp.piece_to_id(f"<0x{b:02X}>") for b in SPACE_MARK.encode()]

    def _piece_bytes(self, i: int) -> bytes:
        sp = self._sp
        if sp.is_control(i) or sp.is_unknown(i):
            return b""
        piece = sp.id_to_piece(i)
        if sp.is_byte(i):
            return bytes([int(piece[3:5], 16)])
        return piece.replace(SPACE_MARK, " ").encode()

    # -- encoding ----------------------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`: never a special token, whatever the text says."""
        return self.encode_batch([text], threads=1)[0]

    def encode_batch(self, texts: Sequence[str], threads: int = 1) -> list[list[int]]:
        """Token ids of each text, encoded by `threads` native threads (0: every core).

        Sentencepiece's batch encoder runs in C++ threads, so this scales with cores even
        when called from one Python thread.
        """
        threads = threads or os.cpu_count() or 1
        # A literal "▁" cannot go through sentencepiece (it would come back as a space):
        # encode the text around it and put its UTF-8 bytes in between.
        parts = [t.split(SPACE_MARK) for t in texts]
        flat = [p for ps in parts for p in ps]
        encoded = self._sp.encode(flat, out_type=int, num_threads=threads) if flat else []
        if len(flat) == len(texts):
            return encoded
        out: list[list[int]] = []
        it = iter(encoded)
        for ps in parts:
            ids = list(next(it))
            for _ in ps[1:]:
                ids.extend(self._space_mark_ids)
                ids.extend(next(it))
            out.append(ids)
        return out

    # -- decoding ----------------------------------------------------------------------

    def _check(self, ids: Sequence[int]) -> None:
        if len(ids) and (min(ids) < 0 or max(ids) >= self.vocab_size):
            bad = next(i for i in ids if not 0 <= i < self.vocab_size)
            raise ValueError(f"token id {bad} is outside the vocabulary (0..{self.vocab_size - 1})")

    def decode_bytes(self, ids: Sequence[int]) -> bytes:
        self._check(ids)
        return b"".join(map(self._bytes.__getitem__, ids))

    def decode(self, ids: Sequence[int]) -> str:
        """The text of `ids`; specials decode to nothing (see `id_to_piece` to show them).

        Byte tokens that do not form valid UTF-8 (possible in sampled output, never in
        `encode`'s) become U+FFFD.
        """
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def stream(self) -> StreamDecoder:
        """An incremental decoder for ids that arrive one at a time (the engine's output)."""
        return StreamDecoder(self)

    # -- inspection --------------------------------------------------------------------

    @property
    def token_bytes(self) -> np.ndarray:
        """UTF-8 bytes each id stands for (0 for specials): the denominator of bits per byte.
        Read-only; `tok.token_bytes[ids].sum()` is the byte length of `decode(ids)`."""
        return self._token_bytes

    def special(self, name: str) -> int:
        try:
            return self.specials[name]
        except KeyError:
            raise KeyError(f"no special token {name!r}; the specials are {list(self.specials)}") from None

    def has_special(self, name: str) -> bool:
        """Whether this tokenizer has `name` (one trained before the code tool lacks its tokens)."""
        return name in self.specials

    def is_special(self, token_id: int) -> bool:
        return self._sp.is_control(token_id) or self._sp.is_unknown(token_id)

    def words(self) -> list[int]:
        """For each id, the id of the same word written plainly: its piece without a leading
        space and in lower case ("▁The" -> "the"), else without the space, else the id itself.
        A word opening a turn or a sentence is encoded apart from the same word inside one, and
        recall in context must see them as one word (models/recall.py)."""
        sp = self._sp
        out = list(range(self.vocab_size))
        for i in range(self.vocab_size):
            piece = sp.id_to_piece(i)
            if sp.is_control(i) or sp.is_byte(i):
                continue
            bare = piece.removeprefix(SPACE_MARK) or piece
            for form in (bare.lower(), bare):
                j = sp.piece_to_id(form)
                if not sp.is_unknown(j):
                    out[i] = j
                    break
        return out

    def openers(self) -> list[int]:
        """For each id, the first id of its word where the word opens a text: a piece after a
        space ("▁Nils") spelt as a reply's first word is ("N" of "N" "ils", or "Nils" where
        that is a piece); any other piece is itself. Recall in context proposes a searched
        subject this way to the reply that restates it (models/recall.py)."""
        sp, out = self._sp, list(range(self.vocab_size))
        spaced = {
            i: piece.removeprefix(SPACE_MARK)
            for i in range(self.vocab_size)
            if not (sp.is_control(i) or sp.is_byte(i))
            and (piece := sp.id_to_piece(i)).startswith(SPACE_MARK)
            and len(piece) > 1
        }
        for i, ids in zip(spaced, self.encode_batch(list(spaced.values())), strict=True):
            out[i] = ids[0]
        return out

    def id_to_piece(self, token_id: int) -> str:
        """The piece as sentencepiece writes it ("▁the", "<0x0A>", "<|bos|>"): for display."""
        return self._sp.id_to_piece(token_id)

    def piece_kind(self, token_id: int) -> str:
        sp = self._sp
        if sp.is_control(token_id):
            return "special"
        if sp.is_unknown(token_id):
            return "unknown"
        return "byte" if sp.is_byte(token_id) else "piece"

    # -- storage -----------------------------------------------------------------------

    def save(self, uri: str, versioned: bool = False) -> str:
        """Write the model into a folder (local or s3://); returns the model file's URI.
        `versioned`: under a name carrying its checksum, for a manifest to commit (two runs
        training into one folder at once then never mix one's model with the other's vocab)."""
        name = (
            storage.versioned_name("tokenizer", ".model", hashlib.sha256(self.model_proto).hexdigest())
            if versioned
            else MODEL_FILE
        )
        target = storage.join(uri, name)
        storage.write_bytes(target, self.model_proto, atomic=True)
        return target

    @classmethod
    def load(cls, uri: str) -> Tokenizer:
        """Read a tokenizer from its folder (`tokenizers/{name}`: the model file its manifest
        commits) or its model file."""
        target = uri if uri.endswith(".model") else lake.committed_file(uri, "model_file", MODEL_FILE)
        try:
            return cls(storage.read_bytes(target))
        except FileNotFoundError:
            raise FileNotFoundError(f"no tokenizer at {uri} (no {MODEL_FILE})") from None


class StreamDecoder:
    """Text of a growing id sequence, each piece of it emitted as soon as it is final.

    Decoding ids one at a time and concatenating is wrong for sentencepiece's own decoder
    (it strips the leading space of every call) and for byte tokens that split a character
    ("é" is two of them). Here each id adds its bytes to an incremental UTF-8 decoder, which
    returns complete characters and holds back a partial one; `push` results plus `flush`
    equal `decode` of the whole sequence.
    """

    def __init__(self, tokenizer: Tokenizer):
        self._tokenizer = tokenizer
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, token_id: int) -> str:
        return self._utf8.decode(self._tokenizer.decode_bytes([token_id]))

    def flush(self) -> str:
        """Whatever is held back (an incomplete character, as U+FFFD); call once at the end."""
        return self._utf8.decode(b"", final=True)


def default_coverage(vocab_size: int) -> float:
    """Share of the sample's characters that get a piece of their own; the rest are bytes.

    Each such character takes a vocabulary slot beside the 256 byte tokens. Below 8,192
    pieces those slots are worth more as merges (English bytes/token drops at 0.9999);
    from 8,192 on, 0.9999 keeps rarer scripts whole (Japanese +7%, English even). Measured
    with benchmarks/tokenizer.py; see docs/benchmarks.md.
    """
    return 0.9995 if vocab_size < 8192 else 0.9999


def train(
    documents: Iterable[str],
    vocab_size: int,
    *,
    character_coverage: float | None = None,
    threads: int = 1,
) -> Tokenizer:
    """Train a BPE tokenizer on whole documents (each one sentencepiece "sentence").

    The caller bounds memory: sentencepiece holds every document it is given. Training is
    deterministic: the same documents in the same order and the same arguments give the
    same model bytes. Too little text for `vocab_size` is a ValueError saying so.
    """
    docs = [d for d in documents if d]
    if not docs:
        raise ValueError("no text to train a tokenizer on")
    longest = max(len(d.encode()) for d in docs)
    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(docs),
            model_writer=model,
            model_type="bpe",
            vocab_size=vocab_size,
            byte_fallback=True,
            split_digits=True,
            character_coverage=character_coverage or default_coverage(vocab_size),
            normalization_rule_name="identity",
            remove_extra_whitespaces=False,
            add_dummy_prefix=False,
            allow_whitespace_only_pieces=True,
            max_sentence_length=max(longest, 16),
            unk_id=0,
            bos_id=-1,
            eos_id=-1,
            pad_id=-1,
            control_symbols=list(SPECIALS),
            num_threads=max(threads, 1),
            minloglevel=2,
        )
    except RuntimeError as exc:
        if "Vocabulary size" in str(exc):
            raise ValueError(f"cannot train a {vocab_size}-token vocabulary on this sample: {exc}") from exc
        raise
    return Tokenizer(model.getvalue())
