"""The model side of the server: one base model, N LoRA adapters, a token-by-token decoder.

Concurrency: requests decode in worker threads, each with its own KV cache, and every
forward pass runs under one lock together with the adapter switch that precedes it.
So requests on different adapters interleave step by step (no request waits for a whole
other generation) yet a forward pass never sees another request's adapter. On CPU this
costs nothing in throughput (one forward pass already uses every core); on a GPU TGI
batches instead, which is the production path.

Log-probabilities reported for tokens are those of the model itself (log-softmax of its
logits), before repetition penalties, temperature, top-k/p and grammar masking: they say
how likely the adapter finds the token, which is what a caller wants as a confidence.
"""

from __future__ import annotations

import codecs
import copy
import functools
import logging
import random
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from peft import PeftModel
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LogitsProcessorList,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
    TypicalLogitsWarper,
)

from ..errors import InputError
from ..modeling import Placement, local_folder, local_placement
from .grammar import Piece, RegexConstraint, allowed_tokens

log = logging.getLogger(__name__)

#: Model names that mean "the base model" besides its own id: TGI's customary name, and
#: the placeholder huggingface_hub's InferenceClient sends when no model is given.
BASE_ALIASES = frozenset({"tgi", "dummy"})

#: Tokens of the prompt kept as decoding context, as TGI does, so a token's text is
#: decoded with its neighbours (leading spaces, multi-byte characters).
DECODE_CONTEXT = 5


@functools.cache
def _byte_level_alphabet() -> dict[str, int]:
    """GPT-2's byte-to-character map, inverted: how byte-level BPE spells raw bytes."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    chars = list(printable)
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars, strict=True)}


BYTE_FALLBACK = re.compile(r"<0x([0-9A-Fa-f]{2})>")


def token_bytes(tokenizer: Any, token: int) -> bytes:
    """The raw bytes a token stands for (byte-level BPE, byte fallback, or plain text)."""
    spelled = tokenizer.convert_ids_to_tokens(token)
    if match := BYTE_FALLBACK.fullmatch(spelled):
        return bytes.fromhex(match.group(1))
    alphabet = _byte_level_alphabet()
    if all(c in alphabet for c in spelled):
        return bytes(alphabet[c] for c in spelled)
    return spelled.replace("\u2581", " ").encode("utf-8")


class EngineError(ValueError):
    """A request the engine cannot serve as asked: the caller's mistake (HTTP 422)."""


@dataclass(frozen=True)
class Sampling:
    """How to choose tokens; field names and meanings follow TGI's `parameters`."""

    max_new_tokens: int
    do_sample: bool = False
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    typical_p: float | None = None
    repetition_penalty: float | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    grammar: RegexConstraint | None = None
    top_n_tokens: int = 0
    prefill_details: bool = False

    @property
    def sampling(self) -> bool:
        """TGI samples when asked to, or when any warper would change the distribution."""
        return (
            self.do_sample
            or self.temperature not in (None, 1.0)
            or bool(self.top_k)
            or (self.top_p is not None and self.top_p < 1.0)
            or (self.typical_p is not None and self.typical_p < 1.0)
        )


@dataclass(frozen=True)
class Token:
    id: int
    text: str
    logprob: float | None
    special: bool = False


@dataclass
class Generation:
    """The finished output; `finish_reason` is TGI's: length, eos_token or stop_sequence."""

    text: str
    tokens: list[Token]
    top_tokens: list[list[Token]]
    finish_reason: str
    seed: int | None
    prefill: list[Token]
    input_length: int


#: Called for every generated token with its top alternatives, and with the finished
#: Generation when the token is the last one (streams attach it to the final event).
Emit = Callable[[Token, list[Token], Generation | None], None]


@dataclass
class Detokenizer:
    """TGI's incremental decoding: a token's text is what it adds to the decoded window.

    A token that ends inside a multi-byte character adds "" until the character is
    complete, so the texts of a stream always concatenate to the generated text.
    """

    tokenizer: Any
    ids: list[int]
    prefix: int = 0
    read: int = field(init=False)

    def __post_init__(self) -> None:
        self.read = len(self.ids)

    def _decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(
            list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False
        )

    def window(self) -> str:
        return self._decode(self.ids[self.prefix : self.read])

    def peek(self, token: int, window: str) -> str:
        """The text `token` would add now, given `window()` (computed once per step)."""
        text = self._decode([*self.ids[self.prefix :], token])
        if len(text) > len(window) and not text.endswith("\ufffd"):
            return text[len(window) :]
        return ""

    def piece(self, token: int, window: str) -> Piece:
        """What `token` would append, with the bytes of a character it leaves unfinished."""
        text = self.peek(token, window)
        if text:
            return text, b""
        data = b"".join(token_bytes(self.tokenizer, t) for t in [*self.ids[self.read :], token])
        decoder = codecs.getincrementaldecoder("utf-8")()
        try:
            complete = decoder.decode(data, final=False)
        except UnicodeDecodeError:
            return "\ufffd", b""  # not text at all: no pattern of characters accepts it
        return complete, decoder.getstate()[0]

    def push(self, token: int) -> str:
        piece = self.peek(token, self.window())
        self.ids.append(token)
        if piece:
            self.prefix, self.read = self.read, len(self.ids)
        return piece

    def flush(self) -> str:
        """Text still pending at the end (an incomplete character, replaced)."""
        if self.read == len(self.ids):
            return ""
        window = self.window()
        return self._decode(self.ids[self.prefix :])[len(window) :]


class Engine:
    """A loaded base model with its adapters; thread-safe."""

    def __init__(
        self,
        base_model: str | Path,
        adapters: Mapping[str, str | Path] | None = None,
        *,
        model_id: str | None = None,
        max_input_tokens: int | None = None,
        max_total_tokens: int | None = None,
        placement: Placement | None = None,
    ) -> None:
        try:  # hf://ORG/NAME: the user's hub cache (`mtd run` locally)
            folder = Path(local_folder(str(base_model)))
        except InputError as exc:
            raise EngineError(str(exc)) from None
        if not (folder / "config.json").is_file():
            raise EngineError(f"base model {base_model}: not a model folder (no config.json)")
        adapters = dict(adapters or {})
        self.model_id = model_id or str(base_model)
        self._check_adapters(adapters)
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        # CUDA (bf16 where supported) when present, fp32 on the CPU: one rule, in modeling.
        self.placement = placement or local_placement()
        model: Any = AutoModelForCausalLM.from_pretrained(folder, dtype=self.placement.dtype)
        model = model.to(self.placement.device)
        for index, (name, path) in enumerate(adapters.items()):
            try:
                if index == 0:
                    model = PeftModel.from_pretrained(model, str(path), adapter_name=name)
                else:
                    model.load_adapter(str(path), adapter_name=name)
            except Exception as exc:  # a damaged file raises safetensors' own errors too
                raise EngineError(
                    f"adapter {name}: {path} cannot be loaded on {base_model}: {exc}"
                ) from None
            log.info("loaded adapter %s from %s", name, path)
        self.model = model.eval()
        self.adapters: tuple[str, ...] = tuple(adapters)
        # Public adapter name → the peft adapter that serves it now. Reloads load new peft
        # adapters under fresh names and swap this map, so no request sees a half-loaded
        # adapter; replaced ones are deleted one reload later (by then in-flight requests
        # that resolved them have long finished).
        self._serving: dict[str, str] = {name: name for name in adapters}
        self._retired: list[str] = []
        self._reloads = 0
        self.dtype = str(next(self.model.parameters()).dtype)
        self.device_type = next(self.model.parameters()).device.type
        context = getattr(self.model.config, "max_position_embeddings", None) or 2048
        self.max_total_tokens = max_total_tokens or context
        self.max_input_tokens = max_input_tokens or self.max_total_tokens - 1
        if not 0 < self.max_input_tokens < self.max_total_tokens:
            raise EngineError(
                f"max_input_tokens ({self.max_input_tokens}) must be positive and below "
                f"max_total_tokens ({self.max_total_tokens})"
            )
        if self.tokenizer.eos_token_id is None:
            raise EngineError(f"base model {base_model}: the tokenizer has no eos token")
        self.eos_token_id: int = self.tokenizer.eos_token_id
        configured = getattr(self.model.generation_config, "eos_token_id", None)
        configured = configured if isinstance(configured, list) else [configured]
        self.end_tokens = frozenset(t for t in [self.eos_token_id, *configured] if t is not None)
        self.special_tokens = frozenset(self.tokenizer.all_special_ids)
        self._lock = threading.Lock()

    # -- adapters -------------------------------------------------------------------------

    def _check_adapters(self, adapters: Mapping[str, str | Path]) -> None:
        """Names that do not shadow the base model, folders that are peft adapters: checked
        before any weights load, at start-up and on every reload."""
        for name, path in adapters.items():
            if not name or name in BASE_ALIASES or name == self.model_id:
                raise EngineError(
                    f"adapter name {name!r} is reserved for the base model; choose another"
                )
            if not (Path(path) / "adapter_config.json").is_file():
                raise EngineError(f"adapter {name}: {path} is not a peft adapter folder")

    def replace_adapters(self, adapters: Mapping[str, str | Path]) -> tuple[str, ...]:
        """Serve exactly `adapters` from now on, without a restart and without dropping a
        request: new weights load under the model lock (requests wait a moment, none fail),
        then the name map is swapped. A bad adapter leaves the current set in place."""
        self._check_adapters(adapters)
        with self._lock:
            self._reloads += 1
            loaded: dict[str, str] = {}
            try:
                for name, path in adapters.items():
                    internal = f"{name}__r{self._reloads}"
                    if isinstance(self.model, PeftModel):
                        self.model.load_adapter(str(path), adapter_name=internal)
                    else:
                        self.model = PeftModel.from_pretrained(
                            self.model, str(path), adapter_name=internal
                        ).eval()
                    loaded[name] = internal
            except Exception as exc:  # a damaged file raises safetensors' own errors too
                for internal in loaded.values():
                    self.model.delete_adapter(internal)
                raise EngineError(f"adapter reload failed, nothing changed: {exc}") from None
            if loaded:
                self.model.set_adapter(next(iter(loaded.values())), inference_mode=True)
                for internal in self._retired:
                    self.model.delete_adapter(internal)
                self._retired = list(self._serving.values())
            self._serving = loaded
            self.adapters = tuple(loaded)
        log.info("serving adapters %s (reload %d)", ", ".join(self.adapters), self._reloads)
        return self.adapters

    # -- requests -------------------------------------------------------------------------

    def resolve_adapter(self, name: str | None) -> str | None:
        """The adapter a request names (None: the base model); an unknown name is an error.

        TGI answers from the base model when it does not know an adapter; here that is a
        422, because a silent base-model answer looks like a task answer and is not one.
        """
        if name is None or name in BASE_ALIASES or name == self.model_id:
            return None
        serving = self._serving.get(name)
        if serving is not None:
            return serving
        known = ", ".join(self.adapters) or "none"
        raise EngineError(
            f"unknown adapter {name!r}: this server has adapters [{known}]; "
            f"use 'tgi' or {self.model_id!r} (or no adapter) for the base model"
        )

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"])

    def chat_prompt(self, messages: list[dict[str, str]]) -> str:
        """The prompt text for chat messages, as training built it (see encoding.py)."""
        if not self.tokenizer.chat_template:
            raise EngineError(
                "this model's tokenizer has no chat template: use /generate with a prompt"
            )
        try:
            return self.tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, tokenize=False
            )
        except Exception as exc:  # jinja raises its own errors for bad conversations
            raise EngineError(f"messages: the chat template rejected them: {exc}") from None

    def check_length(
        self, ids: list[int], max_new_tokens: int | None, truncate: int | None = None
    ) -> tuple[list[int], int]:
        """Apply TGI's input limits: the (truncated) prompt and the new-token budget."""
        if truncate is not None:
            ids = ids[-truncate:]
        if not ids:
            raise EngineError("`inputs` cannot be empty")
        if len(ids) > self.max_input_tokens:
            raise EngineError(
                f"Input validation error: `inputs` must have less than {self.max_input_tokens} "
                f"tokens. Given: {len(ids)}"
            )
        room = self.max_total_tokens - len(ids)
        if max_new_tokens is None:
            return ids, min(100, room)
        if len(ids) + max_new_tokens > self.max_total_tokens:
            raise EngineError(
                f"Input validation error: `inputs` tokens + `max_new_tokens` must be <= "
                f"{self.max_total_tokens}. Given: {len(ids)} `inputs` tokens and "
                f"{max_new_tokens} `max_new_tokens`"
            )
        return ids, max_new_tokens

    # -- model calls ----------------------------------------------------------------------

    @contextmanager
    def _using(self, adapter: str | None) -> Iterator[None]:
        """Hold the model with `adapter` active (None: adapters off) for one forward pass."""
        with self._lock:
            if not isinstance(self.model, PeftModel):
                yield
            elif adapter is None:
                with self.model.disable_adapter():
                    yield
            else:
                if self.model.active_adapter != adapter:
                    self.model.set_adapter(adapter, inference_mode=True)
                yield

    def _token(self, token: int, logprob: float | None, text: str | None = None) -> Token:
        if text is None:
            text = self.tokenizer.decode([token], skip_special_tokens=False)
        return Token(token, text, logprob, token in self.special_tokens)

    @torch.inference_mode()
    def generate(
        self,
        prompt_ids: list[int],
        adapter: str | None,
        params: Sampling,
        emit: Emit | None = None,
        cancelled: threading.Event | None = None,
    ) -> Generation:
        """Decode up to `params.max_new_tokens` tokens after `prompt_ids`."""
        seed = params.seed
        if params.sampling and seed is None:
            seed = random.randrange(2**63)
        generator = torch.Generator().manual_seed(seed) if params.sampling else None
        warpers = self._warpers(params)
        detok = Detokenizer(self.tokenizer, list(prompt_ids[-DECODE_CONTEXT:]))
        history = torch.tensor([prompt_ids])
        counts: Counter[int] = Counter()
        tokens: list[Token] = []
        tops: list[list[Token]] = []
        prefill: list[Token] = []
        text = ""
        cache = None
        step_input = prompt_ids
        for step in range(params.max_new_tokens):
            keep_all = step == 0 and params.prefill_details
            with self._using(adapter):
                out = self.model(
                    input_ids=torch.tensor([step_input], device=self.placement.device),
                    past_key_values=cache,
                    use_cache=True,
                    logits_to_keep=0 if keep_all else 1,
                )
            cache = out.past_key_values
            logits = out.logits[0].float().cpu()  # sampling and grammar run on the CPU
            if keep_all:
                prefill = self._prefill(prompt_ids, logits)
            logprobs = torch.log_softmax(logits[-1], dim=-1)
            token = self._choose(
                logits[-1], history, counts, text, detok, params, warpers, generator
            )
            piece = detok.push(token)
            current = self._token(token, float(logprobs[token]), piece)
            top = self._top(logprobs, params.top_n_tokens)
            tokens.append(current)
            tops.append(top)
            counts[token] += 1
            history = torch.cat([history, torch.tensor([[token]])], dim=1)
            if not current.special:
                text += piece
            last = step + 1 == params.max_new_tokens or bool(cancelled and cancelled.is_set())
            finish = self._finish_reason(token, text, params.stop, last)
            result = None
            if finish:
                text += detok.flush()
                result = Generation(text, tokens, tops, finish, seed, prefill, len(prompt_ids))
            if emit:
                emit(current, top, result)
            if result:
                return result
            step_input = [token]
        raise EngineError("`max_new_tokens` must be strictly positive")

    def _top(self, logprobs: torch.Tensor, n: int) -> list[Token]:
        """The `n` most likely tokens of one step (TGI's `top_n_tokens`)."""
        if not n:
            return []
        return [self._token(int(i), float(logprobs[i])) for i in torch.topk(logprobs, n).indices]

    def _finish_reason(self, token: int, text: str, stop: Sequence[str], last: bool) -> str | None:
        """Why decoding ends after `token` (TGI's finish reasons), or None to go on."""
        if token in self.end_tokens:
            return "eos_token"
        if any(text.endswith(s) for s in stop):
            return "stop_sequence"
        return "length" if last else None

    def _prefill(self, prompt_ids: list[int], logits: torch.Tensor) -> list[Token]:
        logprobs = torch.log_softmax(logits[:-1], dim=-1)
        first = [self._token(prompt_ids[0], None)]
        return first + [
            self._token(token, float(logprobs[i, token])) for i, token in enumerate(prompt_ids[1:])
        ]

    @staticmethod
    def _warpers(params: Sampling) -> LogitsProcessorList:
        warpers = LogitsProcessorList()
        if not params.sampling:
            return warpers
        if params.temperature not in (None, 1.0):
            warpers.append(TemperatureLogitsWarper(params.temperature))
        if params.top_k:
            warpers.append(TopKLogitsWarper(params.top_k))
        if params.top_p is not None and params.top_p < 1.0:
            warpers.append(TopPLogitsWarper(params.top_p))
        if params.typical_p is not None and params.typical_p < 1.0:
            warpers.append(TypicalLogitsWarper(params.typical_p))
        return warpers

    def _choose(
        self,
        logits: torch.Tensor,
        history: torch.Tensor,
        counts: Counter[int],
        text: str,
        detok: Detokenizer,
        params: Sampling,
        warpers: LogitsProcessorList,
        generator: torch.Generator | None,
    ) -> int:
        """Penalties, then the grammar mask, then warpers, then greedy or sampled choice."""
        scores = logits[None, :].clone()
        fallback: int | None = None  # the best token, should sampling overflow (below)
        if params.repetition_penalty not in (None, 1.0):
            scores = RepetitionPenaltyLogitsProcessor(params.repetition_penalty)(history, scores)
        if counts and (params.frequency_penalty or params.presence_penalty):
            ids = torch.tensor(list(counts))
            seen = torch.tensor(list(counts.values()), dtype=scores.dtype)
            scores[0, ids] -= (params.frequency_penalty or 0.0) * seen
            scores[0, ids] -= params.presence_penalty or 0.0
        if params.grammar is not None:
            window = detok.window()
            allowed = allowed_tokens(
                params.grammar,
                text,
                torch.argsort(scores[0], descending=True).tolist(),
                lambda token: detok.piece(token, window),
                self.end_tokens,
                self.special_tokens,
                want_all=params.sampling,
            )
            if not allowed:  # nothing can continue the match: end rather than break it
                return self.eos_token_id
            if not params.sampling:
                return allowed[0]
            fallback = allowed[0]
            mask = torch.full_like(scores, float("-inf"))
            mask[0, allowed] = 0.0
            scores = scores + mask
        if not params.sampling:
            return int(scores[0].argmax())
        if fallback is None:
            fallback = int(scores[0].argmax())
        scores = warpers(history, scores)
        probs = torch.softmax(scores[0], dim=-1)
        if not bool(torch.isfinite(probs).all()):
            # Extreme but valid settings (a temperature of 1e-300, a huge repetition
            # penalty) overflow the scores to ±inf and softmax gives NaN. Sampling tends
            # to greedy choice there: a token at +inf, else the best token before warping.
            top = torch.nan_to_num(scores[0], nan=float("-inf"))
            return int(top.argmax()) if bool(top.max() == float("inf")) else fallback
        return int(torch.multinomial(probs, 1, generator=generator))

    @torch.inference_mode()
    def score_labels(
        self,
        prompt_ids: list[int],
        labels: list[str],
        adapter: str | None,
        batch: int = 16,
        cancelled: threading.Event | None = None,
    ) -> list[float]:
        """Log-likelihood of each label (and the end token) as the answer to the prompt.

        Same rule as evaluation.classify: the label's tokens followed by the end token the
        model learned to emit after an answer, summed. The prompt runs once; its KV cache
        is shared by batches of at most `batch` (right-padded) labels, so scoring three
        labels costs little more than reading the prompt, and many labels cost memory
        for one batch only. Each batch is one turn at the model lock.
        """
        options = [
            [*self.encode(label, add_special_tokens=False), self.eos_token_id] for label in labels
        ]
        longest = max(len(option) for option in options)
        if len(prompt_ids) + longest > self.max_total_tokens:
            raise EngineError(
                f"Input validation error: `inputs` tokens + the longest label must be <= "
                f"{self.max_total_tokens}. Given: {len(prompt_ids)} `inputs` tokens and "
                f"{longest} label tokens"
            )
        with self._using(adapter):
            prefix = self.model(
                input_ids=torch.tensor([prompt_ids], device=self.placement.device),
                logits_to_keep=1,
            )
        first = torch.log_softmax(prefix.logits[0, -1].float(), dim=-1).cpu()
        scores: list[float] = []
        for start in range(0, len(options), batch):
            if cancelled is not None and cancelled.is_set():
                raise EngineError("the client left before its labels were scored")
            chunk = options[start : start + batch]
            cache = copy.deepcopy(prefix.past_key_values)
            following = self._label_logprobs(len(prompt_ids), chunk, cache, adapter)
            scores += [
                float(first[option[0]])
                + sum(float(following[row, j, token]) for j, token in enumerate(option[1:]))
                for row, option in enumerate(chunk)
            ]
        return scores

    def _label_logprobs(
        self, prompt_length: int, options: list[list[int]], cache: Any, adapter: str | None
    ) -> torch.Tensor:
        """Log-probabilities after each token of `options`, read on the prompt's cache."""
        longest = max(len(option) for option in options)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        device = self.placement.device
        rows = torch.tensor([o + [pad] * (longest - len(o)) for o in options], device=device)
        mask = torch.tensor(
            [[1] * (prompt_length + len(o)) + [0] * (longest - len(o)) for o in options],
            device=device,
        )
        positions = torch.arange(prompt_length, prompt_length + longest, device=device)
        cache.batch_repeat_interleave(len(options))
        with self._using(adapter):
            logits = self.model(
                input_ids=rows,
                attention_mask=mask,
                position_ids=positions.expand(len(options), -1),
                past_key_values=cache,
            ).logits
        return torch.log_softmax(logits.float(), dim=-1).cpu()
