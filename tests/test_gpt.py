"""The GPT: HuggingFace equivalence, the KV cache, the loss mask, sizes and FLOPs."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from models.gpt import GPT, GPTConfig, KVCache, RowCache, from_hf, hf_config, hf_names, to_hf
from models.tokenizer import SPECIAL_IDS

# Grouped-query attention (4 query heads over 2 key/value heads) so every path is exercised.
CFG = GPTConfig(vocab_size=67, seq_len=24, n_layer=2, n_head=4, n_kv_head=2, n_embd=32)
SMEARED = dataclasses.replace(CFG, smear_keys=True, tie_embeddings=True)
# Recall over a 7-token vocabulary: random rows are then full of matches, of every length.
RECALL = dataclasses.replace(CFG, vocab_size=7, recall=True, recall_cap=3, tie_embeddings=True)
# ... and in context with the query pointer: ids 1-6 are <|bos|>, user turns' and queries' markers
# (models/tokenizer.py), so random rows hold user turns, queries opening and documents.
POINTED = dataclasses.replace(RECALL, recall_scope="context", query_pointer=True)


def random_model(cfg: GPTConfig = CFG, seed: int = 0) -> GPT:
    """A model whose weights are all non-trivial (the zero-initialised head would hide bugs)."""
    torch.manual_seed(seed)
    model = GPT(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3)
    return model.eval()


def test_huggingface_qwen3_built_from_our_config_and_renamed_weights_gives_our_logits():
    from transformers import Qwen3Config, Qwen3ForCausalLM

    model = random_model()
    hf = Qwen3ForCausalLM(Qwen3Config(**hf_config(CFG))).eval()
    # strict: every HF parameter is one of ours and vice versa (a rename, nothing else).
    hf.load_state_dict(to_hf(model.state_dict(), CFG), strict=True)
    idx = torch.randint(0, CFG.vocab_size, (2, CFG.seq_len), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours, theirs = model(idx), hf(idx).logits
    assert ours.abs().max() > 1  # the comparison is not between near-zero tensors
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    # And back: HF's own state dict loads into our model under from_hf's names.
    back = GPT(CFG).eval()
    back.load_state_dict(from_hf(hf.state_dict(), CFG), strict=True)
    torch.testing.assert_close(back(idx), ours)


def test_a_tied_head_is_the_embedding_and_hf_qwen3_with_tied_embeddings_gives_our_logits():
    from transformers import Qwen3Config, Qwen3ForCausalLM

    cfg = dataclasses.replace(CFG, tie_embeddings=True)
    model = random_model(cfg)
    state = model.state_dict()
    assert "lm_head.weight" not in state and model.lm_head is None
    assert (
        sum(p.numel() for p in model.parameters()) == cfg.num_params() == CFG.num_params() - CFG.vocab_size * CFG.n_embd
    )
    idx = torch.randint(0, cfg.vocab_size, (2, cfg.seq_len), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = model(idx)
        h = model.embed(idx)
        for block in model.blocks:
            h = block(h, model.cos[: cfg.seq_len, None, :], model.sin[: cfg.seq_len, None, :], None, None)
        by_hand = model.norm(h) @ model.embed.weight.T  # the head is the embedding, transposed
    torch.testing.assert_close(ours, by_hand)
    hf = Qwen3ForCausalLM(Qwen3Config(**hf_config(cfg))).eval()
    assert hf.lm_head.weight is hf.model.embed_tokens.weight
    missing = hf.load_state_dict(to_hf(state, cfg), strict=False).missing_keys
    assert missing == ["lm_head.weight"]  # the tied copy: the embedding fills it
    with torch.no_grad():
        torch.testing.assert_close(hf(idx).logits, ours, rtol=1e-5, atol=1e-5)
    back = GPT(cfg).eval()
    back.load_state_dict(from_hf(hf.state_dict(), cfg), strict=True)
    torch.testing.assert_close(back(idx), ours)
    assert set(hf_names(cfg)) == set(state)


def copy_accuracy_after_training(cfg: GPTConfig, batches, steps: int, warmup: int) -> float:
    """Train a fresh, seeded model of `cfg` for `steps` on rows from `batches()` (a new seeded
    maker of (x, y, mask) batches), AdamW at 3e-3 after a linear warmup; then the share of the
    masked targets of one more batch that it predicts."""
    torch.manual_seed(0)
    model = GPT(cfg)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.003, betas=(0.9, 0.95))
    batch = batches()
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = 0.003 * min(1.0, (step + 1) / warmup)
        x, y, _ = batch()
        optimizer.zero_grad()
        model(x, y).backward()
        optimizer.step()
    x, y, mask = batch()
    with torch.no_grad():
        return (model(x).argmax(-1) == y)[mask].float().mean().item()


@pytest.mark.slow
def test_a_tied_model_learns_to_copy_tokens_from_its_context_and_an_untied_one_does_not_yet():
    """Why the demo model ties its head: copying an unseen token needs attention's output
    mapped back onto that token, one generic map when tied, one per token when not. On
    sequences of random tokens said twice (at a fixed distance), 120 steps make the tied model
    copy most of the second half (86% when written); the untied one, same steps and seed, none."""
    cfg = GPTConfig(vocab_size=2048, seq_len=32, n_layer=2, n_head=4, n_kv_head=4, n_embd=64)

    def said_twice():
        gen = torch.Generator().manual_seed(1)
        mask = torch.zeros(32, 32, dtype=torch.bool)
        mask[:, 16:31] = True  # the second half, after its first token

        def batch():
            half = torch.randint(3, cfg.vocab_size, (32, 16), generator=gen)
            seq = torch.cat([half, half, half[:, :1]], 1)
            return seq[:, :-1], seq[:, 1:], mask

        return batch

    tied = copy_accuracy_after_training(dataclasses.replace(cfg, tie_embeddings=True), said_twice, 120, 20)
    untied = copy_accuracy_after_training(cfg, said_twice, 120, 20)
    assert tied >= 0.6 and untied <= 0.1, (tied, untied)


@pytest.mark.parametrize(("cfg", "why"), [(SMEARED, "smears its keys"), (RECALL, "recalls tokens")])
def test_left_padded_rows_are_each_rows_own_and_such_models_cannot_be_exported(cfg, why):
    """Smeared keys: a row's first token has no previous key. Recall: no lookup reaches into
    the padding. Whatever the padding holds (here: the rows' own tokens, from 7 ids), a padded
    batch computes what each row computes alone; and export refuses the model clearly."""
    model = random_model(cfg)
    gen = torch.Generator().manual_seed(4)
    short, long, padding = (torch.randint(0, 7, (n,), generator=gen) for n in (5, 9, 4))
    batch = torch.stack([torch.cat([padding, short]), long])  # row 0: 4 slots of padding
    with torch.no_grad():
        cache = KVCache(cfg, 2, 12, pad=[4, 0])
        prefill = model(batch, kv_cache=cache)
        step = model(torch.tensor([[3], [3]]), kv_cache=cache)[:, -1]
        alone = [model(torch.cat([seq, torch.tensor([3])])[None])[0] for seq in (short, long)]
    torch.testing.assert_close(prefill[0, 4:], alone[0][:-1], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(prefill[1], alone[1][:-1], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(step, torch.stack([alone[0][-1], alone[1][-1]]), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=why):
        to_hf(model.state_dict(), cfg)
    with pytest.raises(ValueError, match="cannot be exported"):
        hf_config(cfg)


def said_again_later():
    """Batches of random tokens whose middle is said again at a random distance, masked to the
    repeat after its first token (which nothing can predict)."""
    import random

    rng = random.Random(0)

    def batch():
        rows, masks = [], []
        for _ in range(32):
            n, gap1, gap2 = rng.randint(6, 14), rng.randint(0, 8), rng.randint(0, 8)
            said = [rng.randrange(3, 512) for _ in range(n)]
            row = [rng.randrange(3, 512) for _ in range(gap1)] + said + [rng.randrange(3, 512) for _ in range(gap2)]
            again = len(row) + len(said)
            row += said + [rng.randrange(3, 512) for _ in range(49 - again)]
            rows.append(row)
            masks.append([again - n < i < again for i in range(49)])
        x, mask = torch.tensor(rows), torch.tensor(masks)
        return x[:, :-1], x[:, 1:], mask[:, 1:]

    return batch


COPY_CFG = GPTConfig(vocab_size=512, seq_len=48, n_layer=2, n_head=4, n_kv_head=4, n_embd=64, tie_embeddings=True)


@pytest.mark.slow
def test_smeared_keys_form_an_induction_head_in_the_steps_where_plain_attention_forms_none():
    """What smeared keys are for (`model.smear_keys`, off in the presets: docs/sizing.md):
    copying what followed an earlier occurrence of the current token, at whatever distance (a
    name into a query), needs an induction head. On random tokens repeated at a random
    distance, 200 steps give the smeared model most of the repeat (81% when written) and the
    plain one, same steps and seed, none."""
    smeared = copy_accuracy_after_training(dataclasses.replace(COPY_CFG, smear_keys=True), said_again_later, 200, 30)
    plain = copy_accuracy_after_training(COPY_CFG, said_again_later, 200, 30)
    assert smeared >= 0.5 and plain <= 0.1, (smeared, plain)


def test_recall_copies_at_any_distance_within_steps_where_attention_alone_does_not():
    """What recall is for (`model.recall`, models/recall.py; off in the presets, docs/sizing.md):
    the same copying as above without an induction head. 40 steps give the recall model
    nearly all of the repeat and the plain model, same steps and seed, none."""
    recalled = copy_accuracy_after_training(dataclasses.replace(COPY_CFG, recall=True), said_again_later, 40, 5)
    plain = copy_accuracy_after_training(COPY_CFG, said_again_later, 40, 5)
    assert recalled >= 0.8 and plain <= 0.1, (recalled, plain)


def asked_about():
    """Batches of a question and the search it calls: the query is the question's word after
    "about" (id 40), which stands anywhere among other words; masked to the query's first
    token, which matching cannot propose (nothing before it is a match)."""
    import random

    rng, i = random.Random(0), SPECIAL_IDS.__getitem__

    def batch():
        rows = []
        for _ in range(32):
            words, name, at = [rng.randrange(41, 100) for _ in range(6)], rng.randrange(100, 512), rng.randrange(7)
            question = [*words[:at], 40, name, *words[at:]]
            rows.append([i("<|bos|>"), i("<|user_start|>"), *question, i("<|user_end|>"), i("<|assistant_start|>")])
            rows[-1] += [i("<|search_start|>"), name, i("<|search_end|>")]
        x = torch.tensor(rows)
        y = torch.full_like(x[:, 1:], -1)
        y[:, -2] = x[:, -2]
        return x[:, :-1], y, y >= 0

    return batch


def test_the_query_pointer_learns_which_word_of_the_question_to_search_within_steps():
    """`query_pointer`: choosing the query's first word among the question's is learnt by the
    pointer in 20 steps (100% when written), where recall in context alone, same steps and
    seed, gets a few (6%)."""
    in_context = dataclasses.replace(COPY_CFG, recall=True, recall_scope="context")
    pointed = copy_accuracy_after_training(dataclasses.replace(in_context, query_pointer=True), asked_about, 20, 5)
    matched = copy_accuracy_after_training(in_context, asked_about, 20, 5)
    assert pointed >= 0.9 and matched <= 0.2, (pointed, matched)
    with pytest.raises(ValueError, match="query_pointer"):
        dataclasses.replace(COPY_CFG, query_pointer=True)


def test_the_query_pointer_trains_under_bf16_autocast_as_in_float32():
    """CPU autocast leaves an einsum and a softmax in bf16; the pointer's scores and mixture
    stay float32, so a bf16 step gives the float32 loss to bf16's precision."""
    model = GPT(dataclasses.replace(COPY_CFG, recall=True, recall_scope="context", query_pointer=True))
    x, y, _ = asked_about()()
    exact = model(x, y)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        reduced = model(x, y)
    reduced.backward()
    assert reduced.item() == pytest.approx(exact.item(), rel=0.02)
    assert model.recall_point_query.weight.grad.abs().sum() > 0


def test_hf_names_cover_every_parameter_once():
    names = hf_names(CFG)
    assert set(names) == set(GPT(CFG).state_dict())
    assert len(set(names.values())) == len(names)


@pytest.mark.parametrize(
    "cfg", [CFG, SMEARED, RECALL, POINTED], ids=["plain", "smeared-keys", "recall", "query-pointer"]
)
def test_cached_incremental_logits_equal_one_full_forward_pass(cfg):
    model = random_model(cfg)
    idx = torch.randint(0, cfg.vocab_size, (3, 20), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        full = model(idx)
        cache = KVCache(cfg, batch_size=3)
        # A prompt, then a chunk of several tokens after the cached prefix (needs the
        # offset causal mask), then single tokens.
        parts = [model(idx[:, :6], kv_cache=cache), model(idx[:, 6:11], kv_cache=cache)]
        parts += [model(idx[:, t : t + 1], kv_cache=cache) for t in range(11, 20)]
    assert cache.pos == 20
    torch.testing.assert_close(torch.cat(parts, dim=1), full, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "cfg", [CFG, SMEARED, RECALL, POINTED], ids=["plain", "smeared-keys", "recall", "query-pointer"]
)
def test_a_row_cache_decodes_rows_of_different_lengths_as_each_alone_while_rows_come_and_go(cfg):
    """Continuous batching: rows at their own positions, joining and leaving between steps,
    each row's logits those of a full pass over its own sequence."""
    model = random_model(cfg)
    gen = torch.Generator().manual_seed(3)
    seqs = {
        name: torch.randint(0, cfg.vocab_size, (n,), generator=gen).tolist()
        for name, n in (("a", 20), ("b", 14), ("c", 22), ("d", 9))
    }
    prompts = {"a": 3, "b": 7, "c": 1, "d": 5}  # prompt lengths; the rest is fed one token per step
    joins = {"a": 0, "b": 0, "c": 2, "d": 6}  # the step at which each row joins
    cache, rows, got = RowCache(cfg, capacity=3), [], {name: [] for name in seqs}
    with torch.no_grad():
        for step in range(40):
            for name, at in joins.items():
                if at == step and cache.rows < cache.capacity:
                    one = KVCache(cfg, 1, prompts[name])
                    got[name].append(model(torch.tensor([seqs[name][: prompts[name]]]), kv_cache=one)[0, -1])
                    cache.add(one)
                    rows.append(name)
                elif at <= step and name not in rows and not got[name] and cache.rows < cache.capacity:
                    joins[name] = step + 1  # no room yet: try again
            if not rows:
                break
            fed = {name: prompts[name] + len(got[name]) - 1 for name in rows}  # index of the token to feed
            logits = model(torch.tensor([[seqs[name][fed[name]]] for name in rows]), kv_cache=cache)[:, -1]
            for name, row_logits in zip(rows, logits):
                got[name].append(row_logits)
            for j in reversed(range(len(rows))):  # a row leaves when its sequence is fed to the end
                if fed[rows[j]] == len(seqs[rows[j]]) - 1:
                    moved = cache.remove(j)
                    rows[j] = rows[moved]
                    rows.pop()
        for name, seq in seqs.items():
            full = model(torch.tensor([seq]))[0, prompts[name] - 1 :]
            torch.testing.assert_close(torch.stack(got[name]), full, rtol=1e-5, atol=1e-5)
    assert cache.rows == 0
    with pytest.raises(ValueError, match="capacity"):
        cache.add(KVCache(cfg, 1, 2), copies=4)


@pytest.mark.parametrize(
    "cfg", [CFG, SMEARED, RECALL, POINTED], ids=["plain", "smeared-keys", "recall", "query-pointer"]
)
def test_stacked_weights_give_the_training_paths_logits_with_and_without_the_cache(cfg):
    model = random_model(cfg)  # every weight random, norm gains and head included
    idx = torch.randint(0, cfg.vocab_size, (2, 12), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        plain = model(idx)
        stacked = model.stacked_weights()
        torch.testing.assert_close(model(idx, stacked=stacked), plain, rtol=1e-5, atol=1e-5)
        cache = KVCache(cfg, 2)
        steps = [model(idx[:, :5], kv_cache=cache, stacked=stacked)]
        steps += [model(idx[:, t : t + 1], kv_cache=cache, stacked=stacked) for t in range(5, 12)]
    torch.testing.assert_close(torch.cat(steps, dim=1), plain, rtol=1e-5, atol=1e-5)
    assert plain.abs().max() > 1


def test_stacked_weights_are_a_snapshot_and_refuse_gradients():
    """The snapshot is made when asked, so it sees a fused optimizer's in-place step (which does
    not even move the weights' version counters); it is never used where gradients flow."""
    model = random_model()
    idx = torch.randint(0, CFG.vocab_size, (2, 12), generator=torch.Generator().manual_seed(4))
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.05, fused=True)
    model(idx, idx).backward()
    optimizer.step()
    with torch.no_grad():
        torch.testing.assert_close(model(idx, stacked=model.stacked_weights()), model(idx), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="for inference"):
        model(idx, idx, stacked=model.stacked_weights())
    with torch.inference_mode():  # a model built in inference mode has weights without versions
        built = random_model()
        torch.testing.assert_close(built(idx, stacked=built.stacked_weights()), built(idx), rtol=1e-5, atol=1e-5)


def test_a_chunk_after_a_prefix_with_plain_causal_masking_would_differ():
    """Guards the test above: SDPA's is_causal aligns a chunk with key 0, which is wrong
    after a prefix, so the cache path must build its own mask (this shows it matters)."""
    model = random_model()
    idx = torch.randint(0, CFG.vocab_size, (1, 12), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        full = model(idx)
        cache = KVCache(CFG, 1)
        model(idx[:, :8], kv_cache=cache)
        chunk = model(idx[:, 8:], kv_cache=cache)
    torch.testing.assert_close(chunk, full[:, 8:], rtol=1e-5, atol=1e-5)
    # Rewinding the cache and replaying gives the same logits (pos is the whole state).
    cache.pos = 8
    with torch.no_grad():
        torch.testing.assert_close(model(idx[:, 8:], kv_cache=cache), chunk)


def test_generate_greedy_matches_argmax_of_full_passes():
    model = random_model()
    prompt = [5, 9, 2, 33]
    out = model.generate(prompt, 8, temperature=0)
    seq = list(prompt)
    with torch.no_grad():
        for _ in range(8):
            seq.append(int(model(torch.tensor([seq]))[0, -1].argmax()))
    assert out == seq[len(prompt) :]


def test_sampling_is_reproducible_with_a_seeded_generator():
    model = random_model()
    a = model.generate([1, 2], 10, temperature=1.0, top_k=5, generator=torch.Generator().manual_seed(7))
    b = model.generate([1, 2], 10, temperature=1.0, top_k=5, generator=torch.Generator().manual_seed(7))
    assert a == b and len(a) == 10


def test_loss_mask_ignores_targets_of_minus_one():
    model = random_model()
    gen = torch.Generator().manual_seed(4)
    idx = torch.randint(0, CFG.vocab_size, (2, 10), generator=gen)
    targets = torch.randint(0, CFG.vocab_size, (2, 10), generator=gen)
    mask = torch.zeros(2, 10, dtype=torch.bool)
    mask[0, :4] = mask[1, 7:] = True
    masked = targets.masked_fill(mask, -1)
    with torch.no_grad():
        logits = model(idx)
        per_token = torch.nn.functional.cross_entropy(
            logits.view(-1, CFG.vocab_size), targets.view(-1), reduction="none"
        ).view(2, 10)
        loss = model(idx, masked)
        none = model(idx, masked, reduction="none")
        total = model(idx, masked, reduction="sum")
    torch.testing.assert_close(loss, per_token[~mask].mean())
    assert (none[mask] == 0).all()
    torch.testing.assert_close(none[~mask], per_token[~mask])
    torch.testing.assert_close(total, per_token[~mask].sum())
    # Masked positions get no gradient at all: their logits do not affect the loss.
    model.train()
    logits = model(idx).detach().requires_grad_(True)
    torch.nn.functional.cross_entropy(logits.view(-1, CFG.vocab_size), masked.view(-1), ignore_index=-1).backward()
    assert (logits.grad[mask] == 0).all() and (logits.grad[~mask] != 0).any()


def test_fresh_model_predicts_uniformly():
    model = GPT(CFG)
    idx = torch.randint(0, CFG.vocab_size, (2, 8))
    assert model(idx, idx).item() == pytest.approx(math.log(CFG.vocab_size), abs=1e-6)


def test_parameter_count_and_flops_come_from_the_config():
    for cfg in (
        CFG,
        RECALL,
        POINTED,
        GPTConfig(),
        GPTConfig(vocab_size=50304, seq_len=1024, n_layer=12, n_head=12, n_kv_head=4, n_embd=768),
    ):
        model = GPT(cfg) if cfg.n_embd < 768 else None
        if model is not None:
            assert cfg.num_params() == sum(p.numel() for p in model.parameters())
        # Lookups: the embedding (unless it is also the head's matmul) and recall's length tables.
        lookups = (
            cfg.vocab_size * cfg.n_embd * (not cfg.tie_embeddings)
            + (cfg.recall_cap + 1) * (cfg.n_embd + 1) * cfg.recall
        )
        assert cfg.num_params(embedding=False) == cfg.num_params() - lookups
        expected = 6 * cfg.num_params(embedding=False) + 12 * cfg.n_layer * cfg.n_head * cfg.head_dim * cfg.seq_len
        assert cfg.flops_per_token() == expected
    # GPT-2-small-sized with GQA: 12 x 768, SwiGLU 2048, untied 50304-token embeddings.
    small = GPTConfig(vocab_size=50304, seq_len=1024, n_layer=12, n_head=12, n_kv_head=4, n_embd=768)
    assert small.mlp_hidden == 2048
    assert 150e6 < small.num_params() < 155e6


def test_bad_shapes_are_clear_errors():
    with pytest.raises(ValueError, match="multiple of n_kv_head"):
        GPTConfig(n_head=4, n_kv_head=3)
    model = GPT(CFG)
    with pytest.raises(ValueError, match="exceeds the context"):
        model(torch.zeros(1, CFG.seq_len + 1, dtype=torch.long))
    cache = KVCache(CFG, 1, max_len=4)
    model(torch.zeros(1, 3, dtype=torch.long), kv_cache=cache)
    with pytest.raises(ValueError, match="KV cache full"):
        model(torch.zeros(1, 2, dtype=torch.long), kv_cache=cache)
