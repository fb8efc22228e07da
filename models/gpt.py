"""The GPT: a decoder-only transformer in one file, architecturally a Qwen3 model.

Choices, and why:
- Rotary positions (no learned position table), so the model has no absolute-position weights.
- RMSNorm before each sublayer and before the head, with learnable gains (as Qwen3/Llama).
- QK-norm: an RMSNorm over each query and key head before rotary. It keeps attention logits
  bounded, which lets small models train at high learning rates without spikes (nanochat,
  OLMo, Qwen3 all use it).
- A gated MLP (SwiGLU: down(silu(gate(x)) * up(x))), no biases anywhere.
- Grouped-query attention: `n_kv_head` key/value heads shared by `n_head` query heads, which
  shrinks the KV cache of the inference engine.
- Attention is PyTorch's scaled_dot_product_attention (flash kernels on GPU and CPU).

Because every one of these matches HuggingFace's Qwen3 (with `attention_bias=False` and no
sliding window), export is a rename of weights: see `hf_config` and `to_hf`, and the test
that a `transformers.Qwen3ForCausalLM` built from them gives our logits. Two options leave
Qwen3, for models too small to learn copying in the minutes they train: smeared keys and
recall (models/recall.py); export refuses both. Smeared keys and recall everywhere are off in
the presets; recall in context is added at SFT in `tiny` (`sft.recall`).

`forward` takes an optional `KVCache`: the engine prefills a prompt once and then decodes
token by token, each step attending to the cached keys and values of everything before it.
For inference, `forward` can run from stacked copies of each layer's q/k/v, q/k-norm and
gate/up weights (`stacked_weights`, which the engine makes once per generation): decoding one
token is bound by the number of kernel calls, and stacking removes a third of them. Training
and every other pass use the parameters themselves.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.recall import found_in_results, in_context, lookup, query_openings
from models.tokenizer import SPECIAL_IDS


@dataclass
class GPTConfig:
    vocab_size: int = 4096
    seq_len: int = 256  # the longest context: the rotary table's length
    n_layer: int = 4
    n_head: int = 4
    n_kv_head: int = 4  # key/value heads; n_head must be a multiple (GQA; 1 = MQA)
    n_embd: int = 128
    head_dim: int = 0  # 0: n_embd // n_head
    mlp_hidden: int = 0  # 0: 8/3 * n_embd rounded up to a multiple of 64 (SwiGLU's usual size)
    rope_theta: float = 10000.0
    norm_eps: float = 1e-6
    # The output head is the token embedding (GPT-2's and small Qwen3's tying). Copying a token
    # seen in the context then needs one generic map (attention's output back onto the same
    # embedding); untied, the head must learn it token by token, which a model trained for
    # minutes never does: on random tokens repeated at a fixed distance a 4 x 128 model copied 95%
    # of them after 100 steps tied and 0% after 300 untied (docs/pretrain.md, Tied head).
    tie_embeddings: bool = False
    # Smeared keys (Olsson et al. 2022): each key is mixed with the previous position's, by a
    # learnt share per key/value head. A query that matches token A then finds the position
    # *after* an earlier A, so one layer can copy what followed it (an induction head); plain
    # attention needs two layers to compose that, which minutes of training never formed. Not
    # a Qwen3 model: such a checkpoint cannot be exported (docs/pretrain.md, Smeared keys).
    smear_keys: bool = False
    # Recall (models/recall.py): each position is told the token that followed the best earlier
    # match of the current one, and the length of that match (up to recall_cap tokens); its
    # embedding enters the residual stream and the head may add a gated bonus to its logit.
    # Copying at any distance without an induction head: the tiny model copied 86% of a repeated
    # list of invented words after 300 steps with it, 0% without; off in pretraining, because
    # everywhere it also copies the model's own mistakes when sampling (docs/sizing.md, Recall).
    # Not a Qwen3 model: such a checkpoint cannot be exported.
    recall: bool = False
    # "all": from anything read, everywhere; "context": only from user turns and search results,
    # only in a search query or the reply after a result (a retrieval system's pointer)
    recall_scope: str = "all"
    recall_cap: int = 8
    recall_boundary: int = 1  # the token that opens a document (models/tokenizer.py's <|bos|>)
    # With recall in context: a learnt pointer picks the search query's first token among the
    # user's words (`GPT.point`). Matching cannot: nothing before a query's first token says
    # which of the question's words is its subject, and the tiny model wrote a wrong first word
    # in most held-out queries ("Otto Hale" for Dagny Hale; "Com" for REINDEX).
    query_pointer: bool = False

    # pydantic (the flows' config models embed this dataclass) rejects unknown keys.
    __pydantic_config__ = {"extra": "forbid"}

    def __post_init__(self) -> None:
        if self.head_dim == 0:
            if self.n_embd % self.n_head:
                raise ValueError(f"n_embd {self.n_embd} is not a multiple of n_head {self.n_head}")
            self.head_dim = self.n_embd // self.n_head
        if self.mlp_hidden == 0:
            self.mlp_hidden = 64 * math.ceil(8 * self.n_embd / 3 / 64)
        if self.n_head % self.n_kv_head:
            raise ValueError(f"n_head {self.n_head} is not a multiple of n_kv_head {self.n_kv_head}")
        if self.head_dim % 2:
            raise ValueError("rotary needs an even head_dim")
        if self.recall_cap < 1:
            raise ValueError(f"recall_cap must be at least 1, not {self.recall_cap}")
        if self.recall_scope not in ("all", "context"):
            raise ValueError(f"recall_scope is 'all' or 'context', not {self.recall_scope!r}")
        if self.query_pointer and not (self.recall and self.recall_scope == "context"):
            raise ValueError(
                "query_pointer points within recall in context: it needs recall with recall_scope 'context'"
            )

    def num_params(self, embedding: bool = True) -> int:
        """Parameters of the model built from this config (`embedding=False`: without the
        token embedding, which is a lookup, not a matmul)."""
        d, q, kv = self.n_embd, self.n_head * self.head_dim, self.n_kv_head * self.head_dim
        attn = d * q + 2 * d * kv + q * d + 2 * self.head_dim  # q, k, v, o + q/k norms
        mlp = 3 * d * self.mlp_hidden
        per_layer = attn + mlp + 2 * d  # + the two pre-norms
        per_layer += self.n_kv_head if self.smear_keys else 0  # each head's share of the previous key
        total = self.n_layer * per_layer + d + self.vocab_size * d  # + final norm + the head's matmul
        if self.recall:  # the proposal's projection and the gate (matmuls), two tables of lengths
            total += d * d + d + ((self.recall_cap + 1) * (d + 1) if embedding else 0)
        if self.query_pointer:  # its query, its keys (from three tokens' embeddings) and its gate
            total += d * d + 3 * d * d + d
        return total + (self.vocab_size * d if embedding and not self.tie_embeddings else 0)

    def flops_per_token(self, seq_len: int | None = None) -> int:
        """Training FLOPs (forward + backward) per token, the PaLM appendix-B way:
        6 per matmul weight, plus the attention scores and weighted sum,
        12 * layers * heads * head_dim * context. (A causal kernel skips half of the latter;
        the convention counts it in full, as nanoGPT and nanochat do, so MFUs compare.)"""
        t = seq_len or self.seq_len
        return 6 * self.num_params(embedding=False) + 12 * self.n_layer * self.n_head * self.head_dim * t


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The gain in the input's dtype: under bf16 autocast a float32 gain would send
        # rms_norm to its slow unfused path.
        weight = self.weight if self.weight.dtype == x.dtype else self.weight.to(x.dtype)
        return F.rms_norm(x, (x.size(-1),), weight, self.eps)


def rotary_table(head_dim: int, length: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The rotation of every position, (length, head_dim), float32, laid out for `apply_rotary`:
    cos of position * frequency on both halves, and sin with the first half negated."""
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    angles = torch.outer(torch.arange(length, dtype=torch.float32), inv_freq)
    cos, sin = angles.cos(), angles.sin()
    return torch.cat((cos, cos), dim=-1), torch.cat((-sin, sin), dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (x[i], x[i + d/2]): the half-split layout Llama and Qwen use (not the
    interleaved one of the original RoPE paper), so HF weights need no permutation.

    (x1, x2) -> (x1 cos - x2 sin, x2 cos + x1 sin), computed as x * cos + swap(x) * sin with
    the tables of `rotary_table` (swap exchanges the halves, sin's first half is negated):
    bit for bit the same values in four kernel calls instead of eight, which matters when
    decoding one token at a time is bound by the number of calls.
    """
    out = x * cos + x.roll(x.size(-1) // 2, dims=-1) * sin
    return out if out.dtype == x.dtype else out.to(x.dtype)


def smear_keys(k: torch.Tensor, logit: torch.Tensor, first: torch.Tensor | None = None) -> torch.Tensor:
    """Keys (B, heads, slots, head_dim) each mixed with the previous slot's: (1 - a) k_j + a k_{j-1},
    a = sigmoid(logit) per head. Slot 0, and a row's first slot `first[b]` (after its left
    padding), have no previous key. Caches hold the keys as projected, and this runs on every
    read, so a cached pass computes what a full pass does."""
    a = torch.sigmoid(logit).to(k.dtype)[None, :, None, None]
    prev = F.pad(k, (0, 0, 1, 0)).narrow(2, 0, k.size(2))
    if first is not None:
        slots = torch.arange(k.size(2), device=k.device)
        prev = prev * (slots[None, :] != first[:, None]).to(k.dtype)[:, None, :, None]
    return k + a * (prev - k)


class KVCache:
    """Keys and values of every layer for the first `pos` slots of a batch of sequences.

    Preallocated to `max_len` so that decoding never reallocates. `GPT.forward` writes the
    new tokens' keys and values at `pos` in every layer, then advances `pos`. Rewinding
    (e.g. to reuse a prompt's prefix) is setting `pos` back.

    Rows may hold prompts of different lengths (the engine batches many prompts): `pad[b]`
    slots of row b come before its first token (left padding), so every row's next token
    goes to the same slot. Those slots are masked out of attention, and row b's token in
    slot s sits at position s - pad[b] for rotary, so a row computes what it would alone.
    """

    def __init__(
        self,
        config: GPTConfig,
        batch_size: int,
        max_len: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
        pad: Sequence[int] | None = None,
    ):
        self.max_len = max_len or config.seq_len
        self.pad = list(pad) if pad is not None and any(pad) else None
        if self.pad is not None and len(self.pad) != batch_size:
            raise ValueError(f"{len(self.pad)} paddings for {batch_size} rows")
        if self.max_len > config.seq_len + max(self.pad or [0]):
            raise ValueError(f"max_len {self.max_len} exceeds the model's context {config.seq_len}")
        shape = (config.n_layer, batch_size, config.n_kv_head, self.max_len, config.head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.tokens = torch.zeros(batch_size, self.max_len, dtype=torch.long, device=device)  # for recall
        self.read = torch.ones(batch_size, self.max_len, dtype=torch.bool, device=device)  # not written by the model
        self.pos = 0
        self._mask: tuple[torch.Tensor | None, bool] = (None, True)  # set by each forward's start
        self._split_layers()

    def _split_layers(self) -> None:
        # Per-layer views, made once: indexing the 5-D tensors costs microseconds per layer per
        # token. (Not unbind: its views cannot be written in place where autograd records.)
        self._k = [self.k.select(0, i) for i in range(self.k.size(0))]
        self._v = [self.v.select(0, i) for i in range(self.v.size(0))]
        self.pad_tensor = None if self.pad is None else torch.tensor(self.pad, device=self.k.device)

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v (B, n_kv_head, T, head_dim) after the cached tokens; return all so far."""
        end = self.pos + k.size(2)
        if end > self.max_len:
            raise ValueError(f"KV cache full: {end} tokens > max_len {self.max_len}")
        keys, values = self._k[layer], self._v[layer]
        keys.narrow(2, self.pos, k.size(2)).copy_(k)
        values.narrow(2, self.pos, v.size(2)).copy_(v)
        return keys.narrow(2, 0, end), values.narrow(2, 0, end)

    def keep(self, rows: Sequence[int]) -> None:
        """Keep only `rows` of the batch (in that order): finished rows stop costing."""
        index = torch.tensor(rows, device=self.k.device)
        self.k, self.v = self.k.index_select(1, index), self.v.index_select(1, index)
        self.tokens, self.read = self.tokens.index_select(0, index), self.read.index_select(0, index)
        if self.pad is not None:
            self.pad = [self.pad[r] for r in rows]
        self._split_layers()

    # -- the interface GPT.forward uses (shared with RowCache) --

    def start(self, cos: torch.Tensor, sin: torch.Tensor, T: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Begin a forward of T tokens per row: the rotary rows of their positions, and the
        attention mask every layer then uses (made once per forward, not once per layer)."""
        longest = self.pos + T - min(self.pad or [0])
        if longest > cos.size(0):
            raise ValueError(f"sequence of {longest} tokens exceeds the context of {cos.size(0)}")
        self._mask = attention_mask(T, self.pos, self.pad_tensor, cos.device)
        if self.pad is None:
            return cos[self.pos : self.pos + T, None, :], sin[self.pos : self.pos + T, None, :]
        # Each row's own positions (slot minus its padding): (B, T, 1, head_dim).
        positions = (self.pos + torch.arange(T, device=cos.device))[None, :] - self.pad_tensor[:, None]
        positions = positions.clamp(min=0)  # padding slots: any position, they are masked
        return cos[positions][:, :, None, :], sin[positions][:, :, None, :]

    def attend(
        self, layer: int, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, bool]:
        """Store the new keys and values; return every key and value so far, and the
        attention mask (or None with `causal`) that the new queries use."""
        keys, values = self.update(layer, k, v)
        return keys, values, *self._mask

    def remember(
        self, idx: torch.Tensor, written: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Store the new tokens (B, T) after the cached ones, and which the model wrote; return
        what `recall.lookup` needs: every row's tokens so far, the new tokens' slots, each row's
        first slot and which tokens were read."""
        T = idx.size(1)
        self.tokens[:, self.pos : self.pos + T] = idx
        self.read[:, self.pos : self.pos + T] = True if written is None else ~written
        slots = (self.pos + torch.arange(T, device=idx.device)).expand(idx.size(0), T)
        return self.tokens[:, : self.pos + T], slots, self.pad_tensor, self.read[:, : self.pos + T]

    def advance(self, T: int) -> None:
        self.pos += T


class RowCache:
    """A KV cache for continuous batching: each row holds its own sequence at its own length.

    Rows are requests that arrived at different times with prompts of different lengths, so
    there is no shared position: row b's next token sits at `lengths[b]`, its rotary angle is
    that position's, and it attends to its own first `lengths[b]` keys (a mask hides the rest
    of the span). A forward feeds one token to every live row (slots 0..rows-1). A row joins
    by copying a prefilled batch-1 `KVCache` into the next slot (`add`) and leaves by moving
    the last row into its slot (`remove`): both cost one row, never the whole cache.
    """

    def __init__(
        self,
        config: GPTConfig,
        capacity: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ):
        self.capacity, self.max_len = capacity, config.seq_len
        shape = (config.n_layer, capacity, config.n_kv_head, config.seq_len, config.head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self._k = [self.k.select(0, i) for i in range(config.n_layer)]
        self._v = [self.v.select(0, i) for i in range(config.n_layer)]
        self.tokens = torch.zeros(capacity, config.seq_len, dtype=torch.long, device=device)  # for recall
        self.read = torch.ones(capacity, config.seq_len, dtype=torch.bool, device=device)
        self.lengths: list[int] = []  # tokens held by each live row
        self.pad_tensor = None  # every row starts at slot 0 (the interface KVCache shares)
        self._slots = torch.arange(capacity, device=device)
        self._step: tuple[torch.Tensor, int, torch.Tensor] | None = None

    @property
    def rows(self) -> int:
        return len(self.lengths)

    def add(self, prefilled: KVCache, copies: int = 1) -> None:
        """Append `copies` rows that each hold the batch-1 cache's `pos` tokens."""
        if self.rows + copies > self.capacity:
            raise ValueError(f"{self.rows} rows + {copies} exceed the capacity of {self.capacity}")
        n, rows = prefilled.pos, slice(self.rows, self.rows + copies)
        self.k[:, rows, :, :n] = prefilled.k[:, :1, :, :n]  # broadcast over the copies
        self.v[:, rows, :, :n] = prefilled.v[:, :1, :, :n]
        self.tokens[rows, :n] = prefilled.tokens[:1, :n]
        self.read[rows, :n] = prefilled.read[:1, :n]
        self.lengths += [n] * copies

    def remove(self, row: int) -> int:
        """Drop `row`; the last row moves into its slot. Returns the moved row's old index
        (== row when it was the last)."""
        last = self.rows - 1
        if row != last:
            n = self.lengths[last]
            self.k[:, row, :, :n] = self.k[:, last, :, :n]
            self.v[:, row, :, :n] = self.v[:, last, :, :n]
            self.tokens[row, :n] = self.tokens[last, :n]
            self.read[row, :n] = self.read[last, :n]
            self.lengths[row] = n
        self.lengths.pop()
        return last

    def start(self, cos: torch.Tensor, sin: torch.Tensor, T: int) -> tuple[torch.Tensor, torch.Tensor]:
        if T != 1:
            raise ValueError("a RowCache feeds one token per row")
        if self.lengths and max(self.lengths) >= self.max_len:
            raise ValueError(f"a row of {max(self.lengths) + 1} tokens exceeds the context of {self.max_len}")
        positions = torch.tensor(self.lengths, device=self.k.device)
        span = max(self.lengths) + 1
        visible = torch.arange(span, device=self.k.device)[None, :] <= positions[:, None]
        self._step = (positions, span, visible[:, None, None, :])  # (rows, heads, query, key)
        return cos[positions][:, None, None, :], sin[positions][:, None, None, :]

    def attend(
        self, layer: int, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, bool]:
        positions, span, mask = self._step
        rows = self._slots[: self.rows]
        keys, values = self._k[layer], self._v[layer]
        keys[rows, :, positions] = k[:, :, 0]  # row b's key at its own position
        values[rows, :, positions] = v[:, :, 0]
        return keys[: self.rows, :, :span], values[: self.rows, :, :span], mask, False

    def remember(
        self, idx: torch.Tensor, written: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, None, torch.Tensor]:
        """Store each row's new token at its own position; return `recall.lookup`'s inputs."""
        positions, span, _ = self._step
        rows = self._slots[: self.rows]
        self.tokens[rows, positions] = idx[:, 0]
        self.read[rows, positions] = True if written is None else ~written[:, 0]
        return self.tokens[: self.rows, :span], positions[:, None], None, self.read[: self.rows, :span]

    def advance(self, T: int) -> None:
        self.lengths = [n + T for n in self.lengths]


@dataclass(frozen=True)
class StackedLayer:
    """One layer's weights stacked for inference (see `GPT.stacked_weights`)."""

    qkv: torch.Tensor  # q, k and v projections as one (n_head + 2 n_kv_head) * head_dim x n_embd matrix
    qk_norm: torch.Tensor  # the q and k norms' gains, one row per head: (n_head + n_kv_head, head_dim)
    gate_up: torch.Tensor  # gate and up projections as one 2 mlp_hidden x n_embd matrix


class Attention(nn.Module):
    def __init__(self, config: GPTConfig, layer: int):
        super().__init__()
        self.layer = layer
        self.n_head, self.n_kv_head, self.head_dim = config.n_head, config.n_kv_head, config.head_dim
        d = config.n_embd
        self.q_proj = nn.Linear(d, config.n_head * config.head_dim, bias=False)
        self.k_proj = nn.Linear(d, config.n_kv_head * config.head_dim, bias=False)
        self.v_proj = nn.Linear(d, config.n_kv_head * config.head_dim, bias=False)
        self.o_proj = nn.Linear(config.n_head * config.head_dim, d, bias=False)
        self.q_norm = RMSNorm(config.head_dim, config.norm_eps)
        self.k_norm = RMSNorm(config.head_dim, config.norm_eps)
        # The logit of each key/value head's share of the previous key (`smear_keys`).
        self.key_smear = nn.Parameter(torch.zeros(config.n_kv_head)) if config.smear_keys else None

    def project(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q and k, normalised and rotated, and v, (B, T, heads, head_dim): one linear and one
        norm per projection, the training path."""
        B, T, _ = x.shape
        q = apply_rotary(self.q_norm(self.q_proj(x).view(B, T, self.n_head, self.head_dim)), cos, sin)
        k = apply_rotary(self.k_norm(self.k_proj(x).view(B, T, self.n_kv_head, self.head_dim)), cos, sin)
        return q, k, self.v_proj(x).view(B, T, self.n_kv_head, self.head_dim)

    def project_stacked(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, stacked: StackedLayer
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`project` for inference, in a third of the kernel calls: one matmul for q, k and v,
        then q and k normalised and rotated together. The same values to float rounding."""
        B, T, _ = x.shape
        qkv = F.linear(x, stacked.qkv).view(B, T, -1, self.head_dim)
        qk, v = qkv.split_with_sizes([self.n_head + self.n_kv_head, self.n_kv_head], dim=2)
        qk = F.rms_norm(qk, (self.head_dim,), None, self.q_norm.eps) * stacked.qk_norm.to(qk.dtype)
        q, k = apply_rotary(qk, cos, sin).split_with_sizes([self.n_head, self.n_kv_head], dim=2)
        return q, k, v

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        kv_cache: KVCache | RowCache | None,
        stacked: StackedLayer | None = None,
    ) -> torch.Tensor:
        B, T, _ = x.shape
        # (B, T, heads, head_dim) -> (B, heads, T, head_dim)
        q, k, v = self.project(x, cos, sin) if stacked is None else self.project_stacked(x, cos, sin, stacked)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)

        mask, causal = None, True
        if kv_cache is not None:
            k, v, mask, causal = kv_cache.attend(self.layer, k, v)
        if self.key_smear is not None:  # on every key read: caches hold them as projected
            k = smear_keys(k, self.key_smear, None if kv_cache is None else kv_cache.pad_tensor)
        # One dtype for SDPA whatever autocast made of the norms, or a float32 cache holds.
        if q.dtype != v.dtype or k.dtype != v.dtype:  # (no .to call when equal: decoding makes thousands)
            q, k = q.to(v.dtype), k.to(v.dtype)
        gqa = self.n_kv_head != self.n_head
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, enable_gqa=gqa)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, -1))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.gate_proj = nn.Linear(config.n_embd, config.mlp_hidden, bias=False)
        self.up_proj = nn.Linear(config.n_embd, config.mlp_hidden, bias=False)
        self.down_proj = nn.Linear(config.mlp_hidden, config.n_embd, bias=False)

    def forward(self, x: torch.Tensor, stacked: StackedLayer | None = None) -> torch.Tensor:
        if stacked is None:
            return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))
        gate, up = F.linear(x, stacked.gate_up).chunk(2, dim=-1)
        return self.down_proj(F.silu(gate) * up)


class Block(nn.Module):
    def __init__(self, config: GPTConfig, layer: int):
        super().__init__()
        self.attn_norm = RMSNorm(config.n_embd, config.norm_eps)
        self.attn = Attention(config, layer)
        self.mlp_norm = RMSNorm(config.n_embd, config.norm_eps)
        self.mlp = MLP(config)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        kv_cache: KVCache | RowCache | None,
        stacked: StackedLayer | None = None,
    ) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x), cos, sin, kv_cache, stacked)
        return x + self.mlp(self.mlp_norm(x), stacked)


def attention_mask(
    T: int, start: int, pad: torch.Tensor | None, device: torch.device
) -> tuple[torch.Tensor | None, bool]:
    """SDPA's (attn_mask, is_causal) for T new tokens after `start` cached slots of rows left-padded
    by `pad` (None: no padding)."""
    if pad is None:
        if start == 0:
            return None, True  # the whole sequence is here: plain causal attention
        if T == 1:
            return None, False  # one new token sees every cached one
    # Query i (in slot start + i) sees slots 0..start + i; SDPA's is_causal would align the
    # chunk with slot 0 instead. With padding, a row never sees its padding slots, except
    # that a padding query sees itself: a row of all -inf would make NaNs that spread.
    keys = torch.arange(start + T, device=device)
    queries = (start + torch.arange(T, device=device))[:, None]
    mask = keys[None, :] <= queries
    if pad is None:
        return mask, False
    mask = (mask[None] & (keys[None, None, :] >= pad[:, None, None])) | (keys[None, None, :] == queries[None])
    return mask[:, None], False  # (B, 1, T, slots): one mask for every head


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.n_embd)
        if config.recall:
            lengths = config.recall_cap + 1
            self.recall_proj = nn.Linear(config.n_embd, config.n_embd, bias=False)  # the proposal's embedding in
            self.recall_length = nn.Embedding(lengths, config.n_embd)  # how long the match is, in
            self.recall_gate = nn.Linear(config.n_embd, 1, bias=False)  # the head's bonus, from the context
            self.recall_bonus = nn.Embedding(lengths, 1)  # ... and from the match's length
            if config.recall_scope == "context":  # which word each token is, for matching (the trainer sets it)
                self.register_buffer("recall_word", torch.arange(config.vocab_size))
            if config.query_pointer:
                self.recall_point_query = nn.Linear(config.n_embd, config.n_embd, bias=False)
                self.recall_point_key = nn.Linear(3 * config.n_embd, config.n_embd, bias=False)
                self.recall_point_gate = nn.Linear(config.n_embd, 1, bias=False)
                # how a word a query wrote after a space opens a reply (the trainer sets it)
                self.register_buffer("recall_opener", torch.arange(config.vocab_size))
        self.blocks = nn.ModuleList(Block(config, i) for i in range(config.n_layer))
        self.norm = RMSNorm(config.n_embd, config.norm_eps)
        # Tied: no head of its own, the logits are read off the embedding (`logits`).
        self.lm_head = None if config.tie_embeddings else nn.Linear(config.n_embd, config.vocab_size, bias=False)
        # Derived from the config, so not saved in checkpoints (persistent=False).
        cos, sin = rotary_table(config.head_dim, config.seq_len, config.rope_theta)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        self.reset_parameters()

    @torch.no_grad()
    def stacked_weights(self) -> list[StackedLayer]:
        """Each layer's q/k/v weights, q/k norm gains and gate/up weights stacked, for
        `forward(..., stacked=)`: one matmul instead of three (two), one norm instead of two,
        because decoding a token at a time is bound by the number of kernel calls, not by
        FLOPs. A snapshot: made once per generation (the engine does), valid while the weights
        do not change, dropped with it. The parameters stay separate, so training, checkpoints
        and the HF export keep Qwen3's layout. It costs memory: about two thirds of the layers'
        weights again, for as long as it is held."""
        heads, kv_heads = self.config.n_head, self.config.n_kv_head
        return [
            StackedLayer(
                qkv=torch.cat([b.attn.q_proj.weight, b.attn.k_proj.weight, b.attn.v_proj.weight]),
                qk_norm=torch.cat([b.attn.q_norm.weight.expand(heads, -1), b.attn.k_norm.weight.expand(kv_heads, -1)]),
                gate_up=torch.cat([b.mlp.gate_proj.weight, b.mlp.up_proj.weight]),
            )
            for b in self.blocks
        ]

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """GPT-2's init (N(0, 0.02); the projections into the residual stream scaled by
        1/sqrt(2 * layers) so its variance does not grow with depth), with a zero head so
        that training starts from the uniform distribution: loss ln(vocab_size) at step 0.
        (A tied head is the embedding: logits of std ~0.2 at step 0, a loss a few hundredths
        above ln(vocab_size).)"""
        residual_std = 0.02 / math.sqrt(2 * self.config.n_layer)
        for name, p in self.named_parameters():
            if name.endswith("norm.weight"):
                nn.init.ones_(p)
            elif name == "recall_point_key.weight":
                nn.init.normal_(p, std=0.02)  # not zero with the query: both at zero would never move
            elif name.startswith("recall_"):
                nn.init.zeros_(
                    p
                )  # recall starts near silent (no proposal in the stream, a vote of ln 2); training opens it
            elif name.endswith("key_smear"):
                nn.init.zeros_(p)  # half of each key from the previous position, to start
            elif name == "lm_head.weight":
                nn.init.zeros_(p)
            elif name.endswith(("o_proj.weight", "down_proj.weight")):
                nn.init.normal_(p, std=residual_std)
            else:
                nn.init.normal_(p, std=0.02)
        cos, sin = rotary_table(self.config.head_dim, self.config.seq_len, self.config.rope_theta)
        self.cos.copy_(cos)
        self.sin.copy_(sin)

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        *,
        kv_cache: KVCache | RowCache | None = None,
        reduction: str = "mean",
        stacked: list[StackedLayer] | None = None,
        written: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits (B, T, vocab) for token ids `idx` (B, T); or, given `targets`, the
        cross-entropy in nats. Targets of -1 are ignored (the loss mask: SFT sets the
        prompt's targets to -1). `reduction`: "mean" over counted targets, "sum", or "none"
        for a (B, T) tensor with 0 at ignored positions (for bits per byte and RL).

        With `kv_cache`, `idx` continues the cached sequences: its tokens sit at positions
        kv_cache.pos onwards, attend to the cached keys, and are added to the cache (with a
        `RowCache`, one token per row, each at its row's own position). With
        `stacked` (from `stacked_weights`, without gradients only), the same values to float
        rounding in a third fewer kernel calls. `written` (B, T) bool: which of `idx` the model
        itself wrote (sampled, or trained on in SFT/RL); recall never proposes those (None: all
        were read).
        """
        T = idx.size(1)
        if kv_cache is not None:
            cos, sin = kv_cache.start(self.cos, self.sin, T)
        elif T > self.config.seq_len:
            raise ValueError(f"sequence of {T} tokens exceeds the context of {self.config.seq_len}")
        else:
            cos, sin = self.cos[:T, None, :], self.sin[:T, None, :]
        if stacked is not None and torch.is_grad_enabled():
            raise ValueError("stacked weights are for inference: gradients would not reach the parameters")
        x = self.embed(idx)
        recalled = None
        if self.config.recall:
            if kv_cache is None:
                tokens, slots, first = idx, torch.arange(T, device=idx.device).expand_as(idx), None
                read = None if written is None else ~written
            else:
                tokens, slots, first, read = kv_cache.remember(idx, written)
            recalled = self.recall(tokens, slots, first, read)
            x = x + self.recall_input(*recalled)
        for i, block in enumerate(self.blocks):
            x = block(x, cos, sin, kv_cache, None if stacked is None else stacked[i])
        if kv_cache is not None:
            kv_cache.advance(T)
        logits = self.logits(x, recalled)
        if self.config.query_pointer:
            logits = self.point(logits, x, tokens, slots, first)
        if targets is None:
            return logits
        # The softmax in float32 even under bf16 autocast: it is where precision matters.
        loss = F.cross_entropy(
            logits.float().view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1, reduction=reduction
        )
        return loss.view(targets.shape) if reduction == "none" else loss

    def recall(
        self, tokens: torch.Tensor, slots: torch.Tensor, first: torch.Tensor | None, read: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(proposed, length) at `slots` of `tokens`, as models/recall.py's `lookup` takes them,
        in the model's scope: everywhere, or in context (only from the user's turns and search
        results, only into a query or a reply, and what the passages hold of the query where a
        result ends). Training, the KV cache and the static decoder all ask here."""
        cfg = self.config
        if cfg.recall_scope != "context":
            return lookup(tokens, slots, cfg.recall_cap, first, cfg.recall_boundary, read)
        source, active = in_context(tokens, SPECIAL_IDS)
        read = source if read is None else read & source
        words = self.recall_word[tokens]
        proposed, length = lookup(tokens, slots, cfg.recall_cap, first, cfg.recall_boundary, read, words)
        openers = self.recall_opener if cfg.query_pointer else None
        found = found_in_results(tokens, slots, words, SPECIAL_IDS, cfg.recall_cap, openers)
        if found is not None:  # after a result: what was searched for, if the passages hold it
            said = found[1] > 0
            proposed, length = torch.where(said, found[0], proposed), torch.where(said, found[1], length)
        return proposed, length * active.gather(1, slots)

    def recall_input(self, proposed: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
        """What recall adds to the embedding: the proposed token's embedding, projected, where
        there is a match, and the match's length."""
        found = (length > 0).unsqueeze(-1).to(self.recall_proj.weight.dtype)
        return self.recall_proj(self.embed(proposed)) * found + self.recall_length(length)

    def logits(self, x: torch.Tensor, recalled: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """The next-token logits of the last layer's output `x`: the final norm, then the head
        (the token embedding itself when tied). With `recalled` (proposed, length), the
        proposed token's logit gets the bonus softplus(gate(context) + bonus(length)) where a
        match was found: a pointer's vote, which the model learns when to cast."""
        h = self.norm(x)
        logits = F.linear(h, self.embed.weight) if self.lm_head is None else self.lm_head(h)
        if recalled is None:
            return logits
        proposed, length = recalled
        bonus = F.softplus(self.recall_gate(h) + self.recall_bonus(length)).squeeze(-1) * (length > 0)
        return logits.scatter_add(-1, proposed.unsqueeze(-1), bonus.unsqueeze(-1).to(logits.dtype))

    def point(
        self,
        logits: torch.Tensor,
        x: torch.Tensor,
        tokens: torch.Tensor,
        slots: torch.Tensor,
        first: torch.Tensor | None,
    ) -> torch.Tensor:
        """`logits` (B, T, vocab) with the query pointer's vote mixed in where a search query
        opens (models/recall.py, `query_openings`): attention from the last layer's output `x`
        there over the user's tokens, each keyed by its embedding and its two predecessors'
        (the word and what introduces it, "about" or "is"), gives a distribution over the
        tokens the user wrote; a learnt gate mixes it with the model's own, as a
        pointer-generator does (See et al. 2017). Keys depend on tokens only, so a cache keeps
        nothing new. The mixed rows are log-probabilities, which sample and train as logits."""
        found = query_openings(tokens, slots, SPECIAL_IDS, first, self.config.recall_boundary)
        if found is None:
            return logits
        rows, columns, source = found
        seen = tokens[rows]  # (n, S)
        weight = self.recall_point_key.weight
        # In float32 whatever autocast would make of it (an einsum and a softmax in bf16 lose
        # the scores, and CPU autocast leaves them bf16); inputs in the weights' own dtype.
        with torch.autocast(x.device.type, enabled=False):
            h = self.norm(x[rows, columns].to(weight.dtype))  # (n, d)
            e = self.embed(seen).to(weight.dtype)
            window = torch.cat((F.pad(e, (0, 0, 2, 0))[:, :-2], F.pad(e, (0, 0, 1, 0))[:, :-1], e), dim=-1)
            keys = self.recall_point_key(window).float()
            scores = torch.einsum("nd,nsd->ns", self.recall_point_query(h).float(), keys) / math.sqrt(keys.size(-1))
            weights = scores.masked_fill(~source, float("-inf")).softmax(-1)
            copy = torch.zeros(len(rows), logits.size(-1), device=logits.device).scatter_add(1, seen, weights)
            gate = self.recall_point_gate(h).float()  # (n, 1): the copy's share, as a logit
            own = logits[rows, columns].float().log_softmax(-1)
            mixed = torch.logaddexp(F.logsigmoid(-gate) + own, F.logsigmoid(gate) + copy.clamp_min(1e-30).log())
        return logits.index_put((rows, columns), mixed.to(logits.dtype))

    @torch.no_grad()
    def generate(
        self,
        prompt: list[int],
        max_new_tokens: int,
        *,
        temperature: float = 1.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
        stop: int | None = None,
    ) -> list[int]:
        """Sample a continuation of one prompt with the KV cache: prefill once, then one
        token per step. A minimal loop for samples during training; models/engine.py is the
        full engine (batches, top-p, tools, streaming)."""
        device = self.embed.weight.device
        max_new_tokens = min(max_new_tokens, self.config.seq_len - len(prompt))
        cache = KVCache(self.config, 1, len(prompt) + max_new_tokens, device, self.embed.weight.dtype)
        idx = torch.tensor([prompt], device=device)
        out: list[int] = []
        for _ in range(max_new_tokens):
            logits = self(idx, kv_cache=cache)[0, -1].float()
            if temperature <= 0:
                next_id = int(logits.argmax())
            else:
                logits = logits / temperature
                if top_k:
                    kth = torch.topk(logits, min(top_k, logits.numel())).values[-1]
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                probs = torch.softmax(logits, dim=-1)
                next_id = int(torch.multinomial(probs.cpu(), 1, generator=generator))
            if next_id == stop:
                break
            out.append(next_id)
            idx = torch.tensor([[next_id]], device=device)
        return out


# -- HuggingFace export: a rename of weights ---------------------------------------------

# Our parameter names -> Qwen3ForCausalLM's; {i} is the layer index.
RENAMES = [
    ("embed.weight", "model.embed_tokens.weight"),
    ("blocks.{i}.attn_norm.weight", "model.layers.{i}.input_layernorm.weight"),
    *[
        (f"blocks.{{i}}.attn.{p}.weight", f"model.layers.{{i}}.self_attn.{p}.weight")
        for p in ("q_proj", "k_proj", "v_proj", "o_proj", "q_norm", "k_norm")
    ],
    ("blocks.{i}.mlp_norm.weight", "model.layers.{i}.post_attention_layernorm.weight"),
    *[
        (f"blocks.{{i}}.mlp.{p}.weight", f"model.layers.{{i}}.mlp.{p}.weight")
        for p in ("gate_proj", "up_proj", "down_proj")
    ],
    ("norm.weight", "model.norm.weight"),
    ("lm_head.weight", "lm_head.weight"),
]


def hf_names(config: GPTConfig) -> dict[str, str]:
    """Every parameter's name in our model -> its name in Qwen3ForCausalLM."""
    names = {}
    for ours, theirs in RENAMES:
        if ours == "lm_head.weight" and config.tie_embeddings:
            continue  # no head of our own: HF ties its lm_head to the embedding
        for i in range(config.n_layer) if "{i}" in ours else [0]:
            names[ours.format(i=i)] = theirs.format(i=i)
    return names


def to_hf(state_dict: dict[str, torch.Tensor], config: GPTConfig) -> dict[str, torch.Tensor]:
    """Our state dict under Qwen3ForCausalLM's names (tensors shared, not copied)."""
    not_qwen3(config)
    names = hf_names(config)
    return {names[k]: v for k, v in state_dict.items()}


def from_hf(state_dict: dict[str, torch.Tensor], config: GPTConfig) -> dict[str, torch.Tensor]:
    """The inverse of `to_hf`, for loading an exported model back."""
    ours = {theirs: mine for mine, theirs in hf_names(config).items()}
    tied = {"lm_head.weight"} if config.tie_embeddings else set()  # HF lists the tied head too
    return {ours[k]: v for k, v in state_dict.items() if k not in tied}


def not_qwen3(config: GPTConfig) -> None:
    """Refuse, clearly, a model that no Qwen3 checkpoint can hold."""
    if config.recall:
        raise ValueError(
            "this model recalls tokens by matching them (model.recall, models/recall.py), which Qwen3 has no "
            "weights for: it cannot be exported to HuggingFace (`--tokenizer-only` still writes its tokenizer; "
            "the run's base model exports, and `--set sft.recall=false` trains an SFT model without recall)"
        )
    if config.smear_keys:
        raise ValueError(
            "this model smears its keys (model.smear_keys), which Qwen3 has no weights for: it cannot be "
            "exported to HuggingFace; train with smear_keys false to export"
        )


def hf_config(config: GPTConfig, **extra: object) -> dict[str, object]:
    """Keyword arguments of the `transformers.Qwen3Config` equivalent to `config`."""
    not_qwen3(config)
    return dict(
        architectures=["Qwen3ForCausalLM"],
        model_type="qwen3",
        vocab_size=config.vocab_size,
        hidden_size=config.n_embd,
        intermediate_size=config.mlp_hidden,
        num_hidden_layers=config.n_layer,
        num_attention_heads=config.n_head,
        num_key_value_heads=config.n_kv_head,
        head_dim=config.head_dim,
        hidden_act="silu",
        max_position_embeddings=config.seq_len,
        rms_norm_eps=config.norm_eps,
        rope_parameters={"rope_type": "default", "rope_theta": config.rope_theta},
        rope_theta=config.rope_theta,  # older transformers read this key
        attention_bias=False,
        use_sliding_window=False,
        tie_word_embeddings=config.tie_embeddings,
        torch_dtype="float32",
        **extra,
    )
