"""Our model as an lm-evaluation-harness LM, so every lm-eval task runs on a checkpoint.

    crawl2chat benchmark --checkpoint sft --tasks arc_easy        (tasks/benchmark.py)
    lm_eval.simple_evaluate(model="crawl2chat", model_args="checkpoint=lake/checkpoints/sft", tasks=[...])
    lm_eval.simple_evaluate(model=EngineLM.from_engine(engine, chat=True), tasks=[...])

lm-eval asks three things of a model, each in text:
- `loglikelihood(context, continuation)`: the log-probability of the continuation's tokens
  and whether greedy decoding would have written them. The pair is encoded the way lm-eval's
  `hf` backend encodes it (context + continuation as one text, split at the context's
  length), with <|bos|> in front as in training: so this LM, the `hf` backend on the
  exported folder (`add_bos_token=True`) and `local-completions` against `crawl2chat serve`
  score the same token ids. Requests go through the model in batches, longest first, padded
  on the right (causal attention never looks at the padding).
- `loglikelihood_rolling(text)`: the whole text's log-probability, in windows of the context
  (lm-eval's rolling windows: every token predicted once, with as much context as fits).
- `generate_until(context, until)`: the engine's greedy (or sampled) continuation, stopped
  at the first `until` string or at the stop token. The engine runs its tools as it does in
  chat: a chat model that calls the calculator gets the result in its stream.

Chat checkpoints (SFT, RL) get the chat template when lm-eval applies one (`--apply_chat_template`):
turns render as `models.chat` renders them, and only then are the literal special names in
the rendered prompt read back as special ids. Without a template, text is text: a document
that spells "<|assistant_end|>" is encoded as those characters, as everywhere else.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import lm_eval.models  # noqa: F401  lm-eval's own models register first (it loads them only into an empty registry)
import torch
import torch.nn.functional as F
from lm_eval import utils as lm_utils
from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model
from tqdm import tqdm

from models import checkpoint as checkpoints
from models import storage
from models.engine import DEFAULT_STOPS, Engine
from models.tokenizer import SPECIALS, Tokenizer

CHAT_FORMAT = "sft"  # a checkpoint's data_format when it was trained on conversations


def is_chat_checkpoint(config: dict[str, Any]) -> bool:
    return config.get("data_format") == CHAT_FORMAT


def render_chat(messages: Iterable[dict[str, str]], add_generation_prompt: bool = True) -> str:
    """lm-eval's chat history as our chat format's text (models/chat.py; the same text as the
    exported folder's chat template). A system message joins the first user turn, as in
    `render_conversation`; without a generation prompt the last assistant turn stays open
    (lm-eval continues it)."""
    messages = list(messages)
    system = ""
    if messages and messages[0]["role"] == "system":
        system, messages = messages[0]["content"], messages[1:]
    out = ["<|bos|>"]
    for i, m in enumerate(messages):
        content = m["content"]
        if m["role"] == "user":
            if system:
                content, system = f"{system}\n\n{content}", ""
            out.append(f"<|user_start|>{content}<|user_end|>")
        elif m["role"] == "assistant":
            last = i == len(messages) - 1
            out.append(
                f"<|assistant_start|>{content}" + ("" if last and not add_generation_prompt else "<|assistant_end|>")
            )
        else:
            raise ValueError(f"roles are system, user and assistant; got {m['role']!r}")
    if add_generation_prompt:
        out.append("<|assistant_start|>")
    return "".join(out)


_SPECIAL_TEXT = re.compile("(" + "|".join(re.escape(s) for s in SPECIALS) + ")")


@register_model("crawl2chat")
class EngineLM(TemplateLM):
    """lm-eval's LM over our engine; see the module docstring."""

    def __init__(
        self,
        checkpoint: str | None = None,
        tokenizer: str | None = None,
        search: str | None = None,
        device: str = "cpu",
        batch_size: int | str = 16,
        max_gen_toks: int = 256,
        chat: bool | str | None = None,
        engine: Engine | None = None,
        **_: Any,
    ):
        super().__init__()
        if engine is None:
            if not checkpoint:
                raise ValueError("pass checkpoint=URI (a checkpoint or run folder) or an engine")
            engine = Engine.from_checkpoint(checkpoint, search=search, tokenizer=tokenizer, device=device)
            if chat is None:
                chat = is_chat_checkpoint(
                    storage.read_json(storage.join(checkpoints.resolve(checkpoint), "config.json"))
                )
        self.engine = engine
        self.model = engine.model
        self.tok: Tokenizer = engine.tokenizer
        self.chat = _flag(chat)
        self.templated = False  # set once lm-eval renders prompts with the chat template
        self.batch_size = int(batch_size) if str(batch_size).isdigit() else 16
        self.max_gen_toks = int(max_gen_toks)
        self._device = next(self.model.parameters()).device
        self.bos = self.tok.bos_id
        self.stops = [self.tok.special(s) for s in DEFAULT_STOPS]

    @classmethod
    def from_engine(cls, engine: Engine, chat: bool = False, **options: Any) -> EngineLM:
        return cls(engine=engine, chat=chat, **options)

    # -- what lm-eval reads --------------------------------------------------------------

    @property
    def eot_token_id(self) -> int:
        return self.tok.special("<|assistant_end|>") if self.chat else self.bos

    @property
    def prefix_token_id(self) -> int:
        return self.bos

    @property
    def max_length(self) -> int:
        return self.model.config.seq_len

    @property
    def tokenizer_name(self) -> str:
        return "crawl2chat"

    def chat_template(self, chat_template: bool | str = False) -> str:
        from models.export import CHAT_TEMPLATE

        return CHAT_TEMPLATE

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        self.templated = True  # the prompts now carry the template's special names
        return render_chat(chat_history, add_generation_prompt)

    # -- encoding ------------------------------------------------------------------------

    def _encode(self, text: str) -> list[int]:
        if not self.templated:
            return self.tok.encode(text)
        ids: list[int] = []
        for part in _SPECIAL_TEXT.split(text):
            if part in self.tok.specials:
                ids.append(self.tok.special(part))
            elif part:
                ids.extend(self.tok.encode(part))
        return ids

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs: Any) -> list[int]:
        """Ids of `string`, after <|bos|> unless add_special_tokens is False or it has one."""
        ids = self._encode(string)
        if add_special_tokens is False or ids[:1] == [self.bos]:
            return ids
        return [self.bos, *ids]

    def tok_decode(self, ids: list[int]) -> str:
        return self.tok.decode(ids)

    # -- scoring -------------------------------------------------------------------------

    @torch.inference_mode()
    def _loglikelihood_tokens(
        self, requests: list[tuple[Any, list[int], list[int]]], disable_tqdm: bool = False, **_: Any
    ) -> list[tuple[float, bool]]:
        """(sum of log-probabilities, all greedy) of each continuation after its context; a
        pair longer than the context window keeps its last `max_length + 1` tokens."""
        order = sorted(range(len(requests)), key=lambda i: -len(requests[i][1]) - len(requests[i][2]))
        results: list[tuple[float, bool] | None] = [None] * len(requests)
        for start in tqdm(range(0, len(order), self.batch_size), disable=disable_tqdm, desc="crawl2chat loglikelihood"):
            batch = [requests[i] for i in order[start : start + self.batch_size]]
            rows = [(ctx + cont)[-(self.max_length + 1) :][:-1] for _, ctx, cont in batch]
            width = max(len(r) for r in rows)
            ids = torch.zeros((len(rows), width), dtype=torch.long, device=self._device)
            for j, row in enumerate(rows):
                ids[j, : len(row)] = torch.tensor(row)
            logits = self.model(ids)
            for j, (key, _, cont) in enumerate(batch):
                n = len(cont)
                # Only the continuation's positions, in float32: a (rows, width, vocab) softmax
                # would cost more memory than the forward pass.
                picked = F.log_softmax(logits[j, len(rows[j]) - n : len(rows[j])].float(), dim=-1)
                target = torch.tensor(cont, device=self._device)
                answer = (float(picked.gather(1, target[:, None]).sum()), bool((picked.argmax(-1) == target).all()))
                results[order[start + j]] = answer
                if key is not None:
                    self.cache_hook.add_partial("loglikelihood", key, answer)
        return results  # type: ignore[return-value]

    def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False) -> list[float]:
        out = []
        for request in tqdm(requests, disable=disable_tqdm, desc="crawl2chat rolling"):
            (text,) = request.args
            windows = [
                (None, *lm_utils.make_disjoint_window(w))
                for w in lm_utils.get_rolling_token_windows(
                    token_list=self.tok_encode(text, add_special_tokens=False),
                    prefix_token=self.bos,
                    max_seq_len=self.max_length,
                    context_len=1,
                )
            ]
            total = sum(ll for ll, _ in self._loglikelihood_tokens(windows, disable_tqdm=True))
            self.cache_hook.add_partial("loglikelihood_rolling", (text,), total)
            out.append(total)
        return out

    # -- generation ----------------------------------------------------------------------

    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        out = []
        for request in tqdm(requests, disable=disable_tqdm, desc="crawl2chat generate"):
            context, gen_kwargs = request.args
            text = self._generate(context, dict(gen_kwargs))
            self.cache_hook.add_partial("generate_until", (context, gen_kwargs), text)
            out.append(text)
        return out

    def _generate(self, context: str, kwargs: dict[str, Any]) -> str:
        until = kwargs.pop("until", None) or []
        until = [until] if isinstance(until, str) else list(until)
        max_new = int(kwargs.pop("max_gen_toks", kwargs.pop("max_new_tokens", self.max_gen_toks)))
        # Greedy unless the task samples: do_sample, or a temperature above 0 (as lm-eval's hf backend reads them).
        temperature = float(kwargs.pop("temperature", 0.0))
        temperature = temperature if temperature > 0 and kwargs.pop("do_sample", None) is not False else 0.0
        prompt = self.tok_encode(context)[-max(1, self.max_length - max_new) :]
        steps = self.engine.stream(
            prompt,
            1,
            max_new_tokens=max_new,
            temperature=temperature,
            top_k=kwargs.get("top_k"),
            top_p=kwargs.get("top_p"),
            seed=int(kwargs.get("seed", 0)),
            stop=self.stops,
        )
        text = ""
        for events in steps:
            text += events[0].text
            if any(u in text for u in until):
                steps.close()  # stop decoding: the rest would be cut anyway
                break
        for u in until:
            text = text.split(u, 1)[0]
        return text


def _flag(value: bool | str | None) -> bool:
    """lm-eval's --model_args arrive as text ("True", "false")."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes")
    return bool(value)
