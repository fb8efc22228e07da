"""A decode step of fixed shapes, for torch.compile and CUDA graphs.

Decoding one token per row is bound by kernel launches, not FLOPs: a small model's step is a
few hundred tiny kernels, each a few microseconds of Python and driver time. The eager engine
also changes shapes every step (the cache it attends to grows by one slot, finished rows leave
the batch), so nothing can be captured. `StaticDecoder` fixes every shape instead:

- its cache has a fixed number of rows (a power of two) and slots; every step attends to all
  slots, with a mask of the ones that hold the row's tokens so far (not its left padding,
  not the future), and writes the new keys and values at the step's slot;
- the slot and the rows' paddings are tensors, not Python numbers, so one compiled graph
  serves every step; finished rows stay in the batch, fed a dummy token, and are ignored;
- the weights are the model's own parameters plus the stacked q/k/v and gate/up copies the
  eager path uses (`GPT.stacked_weights`), registered as buffers so that CUDA graphs see
  fixed addresses. The HF-compatible parameters stay the source of truth: the stacked copies
  are a snapshot, taken when the decoder is made (an engine's weights do not change).

`compiled(decoder)` wraps its step in torch.compile: mode "reduce-overhead" on CUDA (Inductor's
fused kernels replayed as one CUDA graph per shape), plain Inductor on a CPU. The engine
(models/engine.py, `decode=`) prefills eagerly, copies the prompt's cache in, and steps here.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.gpt import GPT, KVCache, apply_rotary, smear_keys

SLOT_ROUNDING = 64  # cache slots are rounded up to a multiple: fewer distinct shapes to compile


def bucket_rows(rows: int) -> int:
    """The static batch for `rows` rows: the next power of two (fewer shapes to compile)."""
    return 1 << max(0, (rows - 1).bit_length())


def bucket_slots(slots: int) -> int:
    return -(-slots // SLOT_ROUNDING) * SLOT_ROUNDING


class StaticDecoder(nn.Module):
    """One decode step for `rows` rows over `slots` cache slots, every shape fixed."""

    def __init__(self, model: GPT, rows: int, slots: int):
        super().__init__()
        cfg = model.config
        param = next(model.parameters())
        self.model = model
        self.rows, self.slots = rows, slots
        for i, layer in enumerate(model.stacked_weights()):
            self.register_buffer(f"qkv{i}", layer.qkv, persistent=False)
            self.register_buffer(f"qk_norm{i}", layer.qk_norm, persistent=False)
            self.register_buffer(f"gate_up{i}", layer.gate_up, persistent=False)
        shape = (cfg.n_layer, rows, cfg.n_kv_head, slots, cfg.head_dim)
        self.register_buffer("k", torch.zeros(shape, device=param.device, dtype=param.dtype), persistent=False)
        self.register_buffer("v", torch.zeros(shape, device=param.device, dtype=param.dtype), persistent=False)
        self.register_buffer("slot", torch.zeros(1, dtype=torch.long, device=param.device), persistent=False)
        self.register_buffer("pad", torch.zeros(rows, dtype=torch.long, device=param.device), persistent=False)
        self.register_buffer("slot_ids", torch.arange(slots, device=param.device), persistent=False)
        self.register_buffer(
            "tokens", torch.zeros(rows, slots, dtype=torch.long, device=param.device), persistent=False
        )
        self.register_buffer("read", torch.ones(rows, slots, dtype=torch.bool, device=param.device), persistent=False)
        self.step_fn: Any = self.forward

    def load(self, cache: KVCache) -> None:
        """Take over an eagerly prefilled cache (its rows first; the rest are idle rows)."""
        rows, filled = cache.k.size(1), cache.pos
        if rows > self.rows or filled >= self.slots:
            raise ValueError(f"a cache of {rows} rows x {filled} slots does not fit {self.rows} x {self.slots}")
        self.k.zero_()
        self.v.zero_()
        self.k[:, :rows, :, :filled] = cache.k[:, :, :, :filled]
        self.v[:, :rows, :, :filled] = cache.v[:, :, :, :filled]
        self.tokens.zero_()
        self.tokens[:rows, :filled] = cache.tokens[:, :filled]
        self.read.fill_(True)
        self.read[:rows, :filled] = cache.read[:, :filled]
        self.pad.zero_()
        if cache.pad is not None:
            self.pad[:rows] = torch.tensor(cache.pad, device=self.pad.device)
        self.slot.fill_(filled)

    def step(self, tokens: torch.Tensor, written: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (rows, vocab) of the next token after `tokens` (rows,), stored at the
        current slot with whether the model wrote it (`written`, rows: needed with recall only);
        then the slot advances."""
        logits = self.step_fn(tokens, written).clone()  # a CUDA graph's output is overwritten on replay
        self.slot += 1
        return logits

    def forward(self, tokens: torch.Tensor, written: torch.Tensor | None = None) -> torch.Tensor:
        model, cfg = self.model, self.model.config
        x = model.embed(tokens)[:, None]  # (rows, 1, n_embd)
        recalled = None
        if cfg.recall:  # the same lookup as training's, over this decoder's fixed slots
            self.tokens.index_copy_(1, self.slot, tokens[:, None])
            if written is not None:
                self.read.index_copy_(1, self.slot, ~written[:, None])
            slots = self.slot.expand(self.rows, 1)
            recalled = model.recall(self.tokens, slots, self.pad, self.read)
            x = x + model.recall_input(*recalled)
        # Each row's own position (rotary); idle and finished rows run on past the table: clamp.
        position = (self.slot - self.pad).clamp(0, cfg.seq_len - 1)
        cos, sin = model.cos[position][:, None, None, :], model.sin[position][:, None, None, :]
        seen = (self.slot_ids[None, :] >= self.pad[:, None]) & (self.slot_ids[None, :] <= self.slot)
        mask = seen[:, None, None, :]  # (rows, 1, 1, slots): the row's tokens up to this one
        groups = cfg.n_head // cfg.n_kv_head
        for i, block in enumerate(model.blocks):
            attn = block.attn
            h = block.attn_norm(x)
            qkv = F.linear(h, getattr(self, f"qkv{i}")).view(self.rows, 1, -1, cfg.head_dim)
            qk, v = qkv.split_with_sizes([cfg.n_head + cfg.n_kv_head, cfg.n_kv_head], dim=2)
            qk = F.rms_norm(qk, (cfg.head_dim,), None, attn.q_norm.eps) * getattr(self, f"qk_norm{i}").to(qk.dtype)
            q, k = apply_rotary(qk, cos, sin).to(v.dtype).split_with_sizes([cfg.n_head, cfg.n_kv_head], dim=2)
            keys, values = self.k[i], self.v[i]
            keys.index_copy_(2, self.slot, k.transpose(1, 2))
            values.index_copy_(2, self.slot, v.transpose(1, 2))
            if attn.key_smear is not None:
                keys = smear_keys(keys, attn.key_smear, self.pad)
            # Grouped-query attention for one new token: the query heads of a key/value head
            # (HF's order: query head h reads kv head h // groups) stand in for a query
            # sequence, so every SDPA kernel takes it with a mask, no repeated cache.
            y = F.scaled_dot_product_attention(
                q.view(self.rows, cfg.n_kv_head, groups, cfg.head_dim), keys, values, attn_mask=mask
            )
            x = x + attn.o_proj(y.reshape(self.rows, 1, -1))
            gate, up = F.linear(block.mlp_norm(x), getattr(self, f"gate_up{i}")).chunk(2, dim=-1)
            x = x + block.mlp.down_proj(F.silu(gate) * up)
        logits = model.logits(x, recalled)
        if cfg.query_pointer:
            logits = model.point(logits, x, self.tokens, slots, self.pad)
        return logits[:, 0]


def compiled(decoder: StaticDecoder) -> StaticDecoder:
    """The decoder with its step compiled: CUDA graphs on a GPU, Inductor kernels on a CPU."""
    if decoder.k.is_cuda:
        for buffer in decoder.buffers():  # the cache, the stacked weights, the slot: fixed addresses
            torch._dynamo.mark_static_address(buffer)
        decoder.step_fn = torch.compile(decoder.forward, mode="reduce-overhead", fullgraph=True, dynamic=False)
    else:
        decoder.step_fn = torch.compile(decoder.forward, fullgraph=True, dynamic=False)
    return decoder
