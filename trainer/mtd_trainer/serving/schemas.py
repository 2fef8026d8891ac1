"""Request bodies, shaped like TGI's (and OpenAI's for chat), and their conversion to Sampling.

Range checks use TGI's own error messages so a client sees the same text from this
server and from TGI. `parameters` of /generate rejects unknown fields: a misspelt
`adapter_id` must not quietly become a base-model answer. Chat requests ignore unknown
fields, because OpenAI clients send many optional ones.

Numbers must be finite (JSON has no NaN, but Python's parser reads one) and strings must
be text: a lone surrogate (a `\\ud800` escape) decodes to a Python str that no tokenizer
or encoder accepts. Both are 422s naming the field, not errors deep in the model.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from .engine import EngineError, Sampling
from .grammar import GrammarError, RegexConstraint

MAX_STOP_SEQUENCES = 4
MAX_TOP_N_TOKENS = 5
MAX_ADAPTERS = 256  # adapters in one POST /adapters (each holds its weights in memory)
MAX_SEED = 2**64 - 1  # TGI's seed is an unsigned 64-bit integer; so is torch's


def lone_surrogate(value: str) -> int | None:
    """The position of the first lone surrogate in `value` (None if it is all text)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start
    return None


def _text(value: str) -> str:
    position = lone_surrogate(value)
    if position is not None:
        raise ValueError(
            f"not valid Unicode text: a lone surrogate (U+{ord(value[position]):04X}) at "
            f"character {position}"
        )
    return value


#: A string that is text: every character encodable as UTF-8.
Text = Annotated[str, AfterValidator(_text)]


class Grammar(BaseModel):
    """TGI's grammar: `regex` is supported; the JSON kinds are refused (422)."""

    type: Literal["regex", "json", "json_object", "json_schema"]
    value: Any = None


class GenerateParameters(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    adapter_id: Text | None = None
    best_of: int | None = None
    decoder_input_details: bool = False
    details: bool = False
    do_sample: bool = False
    frequency_penalty: float | None = None
    grammar: Grammar | None = None
    max_new_tokens: int | None = None
    repetition_penalty: float | None = None
    return_full_text: bool | None = None
    seed: int | None = None
    stop: list[Text] = Field(default_factory=list)
    temperature: float | None = None
    top_k: int | None = None
    top_n_tokens: int | None = None
    top_p: float | None = None
    truncate: int | None = None
    typical_p: float | None = None
    watermark: bool = False


class GenerateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    inputs: Text
    parameters: GenerateParameters = Field(default_factory=GenerateParameters)
    stream: bool = False  # only read by the compatibility route POST /


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: str
    text: Text | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Text
    content: Text | list[ContentPart] | None = None

    def as_template_input(self) -> dict[str, str]:
        """The {role, content} dict chat templates expect; text parts are joined."""
        if isinstance(self.content, list):
            if any(part.type != "text" for part in self.content):
                raise EngineError("messages: only text content is supported")
            return {"role": self.role, "content": "".join(p.text or "" for p in self.content)}
        return {"role": self.role, "content": self.content or ""}


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    model: Text | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: Text | list[Text] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    logprobs: bool = False
    top_logprobs: int | None = None
    response_format: Grammar | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    n: int | None = None
    tools: list[Any] | None = None


class ClassifyRequest(BaseModel):
    """Our extension: score a fixed label set instead of generating (exact classification)."""

    model_config = ConfigDict(extra="forbid")

    inputs: Text | None = None
    messages: list[ChatMessage] | None = None
    labels: list[Text] = Field(min_length=1)
    adapter_id: Text | None = None


class AdaptersRequest(BaseModel):
    """POST /adapters: the complete new adapter set, and optionally a new catalogue."""

    model_config = ConfigDict(extra="forbid")

    adapters: dict[Text, Text] = Field(max_length=MAX_ADAPTERS)
    catalogue: dict[str, Any] | None = None


def regex_constraint(grammar: Grammar | None) -> RegexConstraint | None:
    if grammar is None:
        return None
    if grammar.type != "regex":
        raise GrammarError(
            f"grammar type {grammar.type!r} is not supported by this development server; "
            "use {'type': 'regex', 'value': PATTERN}"
        )
    if not isinstance(grammar.value, str):
        raise GrammarError("grammar: `value` must be a string (the pattern) for a `regex` grammar")
    if lone_surrogate(grammar.value) is not None:
        raise GrammarError("grammar: `value` is not valid Unicode text (a lone surrogate)")
    return RegexConstraint(grammar.value)


def check_ranges(
    temperature: float | None = None,
    top_p: float | None = None,
    top_k: int | None = None,
    typical_p: float | None = None,
    repetition_penalty: float | None = None,
    max_new_tokens: int | None = None,
    seed: int | None = None,
    stop: list[str] | None = None,
    top_n_tokens: int | None = None,
    truncate: int | None = None,
    frequency_penalty: float | None = None,
    presence_penalty: float | None = None,
) -> None:
    """TGI's parameter validation, with its messages."""
    problems = [
        (temperature is not None and temperature <= 0, "`temperature` must be strictly positive"),
        (top_p is not None and not 0 < top_p < 1, "`top_p` must be > 0.0 and < 1.0"),
        (top_k is not None and top_k <= 0, "`top_k` must be strictly positive"),
        (typical_p is not None and not 0 < typical_p < 1, "`typical_p` must be > 0.0 and < 1.0"),
        (
            repetition_penalty is not None and repetition_penalty <= 0,
            "`repetition_penalty` must be strictly positive",
        ),
        (
            max_new_tokens is not None and max_new_tokens <= 0,
            "`max_new_tokens` must be strictly positive",
        ),
        (seed is not None and seed < 0, "`seed` must be positive"),
        (seed is not None and seed > MAX_SEED, f"`seed` must be <= {MAX_SEED} (2^64 - 1)"),
        (
            frequency_penalty is not None and not -2 <= frequency_penalty <= 2,
            "`frequency_penalty` must be >= -2.0 and <= 2.0",
        ),
        (
            presence_penalty is not None and not -2 <= presence_penalty <= 2,
            "`presence_penalty` must be >= -2.0 and <= 2.0",
        ),
        (
            stop is not None and len(stop) > MAX_STOP_SEQUENCES,
            f"`stop` supports up to {MAX_STOP_SEQUENCES} stop sequences. Given: {len(stop or [])}",
        ),
        (
            top_n_tokens is not None and not 0 <= top_n_tokens <= MAX_TOP_N_TOKENS,
            f"`top_n_tokens` must be >= 0 and <= {MAX_TOP_N_TOKENS}",
        ),
        (truncate is not None and truncate <= 0, "`truncate` must be strictly positive"),
    ]
    for failed, message in problems:
        if failed:
            raise EngineError(f"Input validation error: {message}")


def generate_sampling(p: GenerateParameters, max_new_tokens: int) -> Sampling:
    """Sampling for /generate, after `check_ranges` and the length check."""
    if p.best_of not in (None, 1):
        raise EngineError("`best_of` > 1 is not supported by this development server")
    if p.watermark:
        raise EngineError("`watermark` is not supported by this development server")
    if p.frequency_penalty is not None and p.frequency_penalty <= 0:
        raise EngineError("Input validation error: `frequency_penalty` must be strictly positive")
    return Sampling(
        max_new_tokens=max_new_tokens,
        do_sample=p.do_sample,
        temperature=p.temperature,
        top_k=p.top_k,
        top_p=p.top_p,
        typical_p=p.typical_p,
        repetition_penalty=p.repetition_penalty,
        frequency_penalty=p.frequency_penalty,
        seed=p.seed,
        stop=tuple(p.stop),
        grammar=regex_constraint(p.grammar),
        top_n_tokens=p.top_n_tokens or 0,
        prefill_details=p.decoder_input_details and p.details,
    )


def chat_sampling(r: ChatRequest, max_new_tokens: int) -> Sampling:
    """Sampling for chat: like TGI, it samples unless `temperature` is 0 (greedy)."""
    if r.n not in (None, 1):
        raise EngineError("`n` > 1 is not supported by this development server")
    if r.tools:
        raise EngineError("`tools` are not supported by this development server")
    greedy = r.temperature == 0
    stop = [r.stop] if isinstance(r.stop, str) else list(r.stop or [])
    check_ranges(
        temperature=None if greedy else r.temperature,
        top_p=r.top_p,
        seed=r.seed,
        stop=stop,
        frequency_penalty=r.frequency_penalty,
        presence_penalty=r.presence_penalty,
    )
    top_n = (r.top_logprobs or 0) if r.logprobs else 0
    check_ranges(top_n_tokens=top_n)
    return Sampling(
        max_new_tokens=max_new_tokens,
        do_sample=not greedy,
        temperature=None if greedy else r.temperature,
        top_p=r.top_p,
        frequency_penalty=r.frequency_penalty,
        presence_penalty=r.presence_penalty,
        seed=r.seed,
        stop=tuple(stop),
        grammar=regex_constraint(r.response_format),
        top_n_tokens=top_n,
    )
