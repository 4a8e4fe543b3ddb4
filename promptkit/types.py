"""Plain data passed between layers: messages in, completions out.

Everything here is a small dataclass so that the runner, the cache and the
exports can turn it into JSON or a DataFrame row without knowing its source.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal, Mapping, Protocol, runtime_checkable

from .errors import SettingsError

Role = Literal["system", "user", "assistant"]
ROLES: tuple[str, ...] = ("system", "user", "assistant")


@dataclass(frozen=True)
class Message:
    """One turn of a conversation, provider-neutral."""

    role: Role
    content: str

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise SettingsError(f"Message.role must be one of {ROLES}, got {self.role!r}")
        if not isinstance(self.content, str):
            raise SettingsError(f"Message.content must be a string, got {type(self.content).__name__}")


@dataclass(frozen=True)
class Settings:
    """Sampling settings that change the answer (and so belong in the cache key)."""

    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 256
    stop: tuple[str, ...] = ()
    seed: int | None = 0
    logprobs: bool = False
    top_logprobs: int = 0
    grammar: str | None = None  # GBNF; honoured by the local provider only
    n_ctx: int | None = None  # local models' context window in tokens (None: the model's n_ctx in models.yaml)

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):
            object.__setattr__(self, "stop", (self.stop,))
        elif isinstance(self.stop, list):
            object.__setattr__(self, "stop", tuple(self.stop))
        self.validate()

    def validate(self) -> None:
        """Reject values no provider accepts, naming the field and the allowed range."""
        t = self.temperature
        if not isinstance(t, (int, float)) or isinstance(t, bool) or not math.isfinite(t) or not 0.0 <= t <= 2.0:
            raise SettingsError(f"Settings.temperature must be between 0 and 2, got {t!r}", field=("temperature",))
        p = self.top_p
        if not isinstance(p, (int, float)) or isinstance(p, bool) or not 0.0 < p <= 1.0:
            raise SettingsError(f"Settings.top_p must be in (0, 1], got {p!r}", field=("top_p",))
        m = self.max_tokens
        if not isinstance(m, int) or isinstance(m, bool) or m < 1:
            raise SettingsError(f"Settings.max_tokens must be a whole number of at least 1, got {m!r}", field=("max_tokens",))
        if self.seed is not None and (not isinstance(self.seed, int) or isinstance(self.seed, bool)):
            raise SettingsError(f"Settings.seed must be a whole number or None, got {self.seed!r}", field=("seed",))
        if not all(isinstance(s, str) and s for s in self.stop):
            raise SettingsError(f"Settings.stop must be non-empty strings, got {self.stop!r}", field=("stop",))
        k = self.top_logprobs
        if not isinstance(k, int) or isinstance(k, bool) or not 0 <= k <= 20:
            raise SettingsError(f"Settings.top_logprobs must be between 0 and 20, got {k!r}", field=("top_logprobs",))
        w = self.n_ctx
        if w is not None and (not isinstance(w, int) or isinstance(w, bool) or w < 64):
            raise SettingsError(f"Settings.n_ctx must be a whole number of tokens of at least 64 (or None for the "
                                f"model's default), got {w!r}", field=("n_ctx",))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["stop"] = list(self.stop)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "Settings":
        """Build from a plain dict, naming any key that is not a setting."""
        d = dict(d or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise SettingsError(f"unknown setting(s) {unknown}; known settings are {sorted(known)}")
        if "stop" in d and d["stop"] is not None:
            d["stop"] = tuple([d["stop"]] if isinstance(d["stop"], str) else d["stop"])
        return cls(**d)

    def replace(self, **changes: Any) -> "Settings":
        return replace(self, **changes)


@dataclass(frozen=True)
class Request:
    """What a provider is asked: turns, settings and an optional assistant prefill.

    `prefill` starts the assistant's answer (e.g. "{" for JSON); the provider
    continues from it: `Completion.text` includes it, `Completion.reply` is the continuation alone.
    `stream` asks an API provider to stream so time to first token is measured; it costs client CPU
    per call and never changes the answer, so it is not part of the cell key.
    """

    messages: tuple[Message, ...]
    settings: Settings = field(default_factory=Settings)
    prefill: str = ""
    stream: bool = False

    def __post_init__(self) -> None:
        msgs = tuple(self.messages)
        object.__setattr__(self, "messages", msgs)
        if not any(m.role == "user" for m in msgs):
            raise SettingsError("Request.messages needs at least one user message")

    @property
    def system(self) -> str:
        """All system turns joined: vendors take the system prompt apart from the turns."""
        return "\n\n".join(m.content for m in self.messages if m.role == "system")

    @property
    def turns(self) -> list[Message]:
        return [m for m in self.messages if m.role != "system"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "messages": [{"role": m.role, "content": m.content} for m in self.messages],
            "settings": self.settings.to_dict(),
            "prefill": self.prefill,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Request":
        return cls(
            messages=tuple(Message(m["role"], m["content"]) for m in d["messages"]),
            settings=Settings.from_dict(d.get("settings")),
            prefill=d.get("prefill", ""),
        )


@dataclass
class TokenLogprob:
    """One generated token, its log-probability and the top alternatives."""

    token: str
    logprob: float
    top: dict[str, float] = field(default_factory=dict)


ErrorKind = Literal[
    "rate_limit", "overloaded", "server", "timeout", "connection", "auth",
    "bad_request", "context_length", "malformed", "truncated", "budget", "config", "unknown",
]


@dataclass
class Completion:
    """The outcome of one call: an answer with its measurements, or an error as data."""

    text: str = ""
    provider: str = ""
    model: str = ""
    input_tokens: int | None = None
    output_tokens: int | None = None
    latency_s: float | None = None
    ttft_s: float | None = None
    finish_reason: str | None = None
    cost_usd: float | None = None
    error_kind: str | None = None
    error: str | None = None
    retry_after_s: float | None = None
    logprobs: list[TokenLogprob] | None = None
    cached: bool = False
    prefill: str = ""  # the start of the answer the request supplied; `text` begins with it

    @property
    def ok(self) -> bool:
        return self.error_kind is None

    @property
    def reply(self) -> str:
        """What the model wrote after the prefill (`text` is prefill + reply, as a reader sees the answer)."""
        return self.text[len(self.prefill):] if self.prefill and self.text.startswith(self.prefill) else self.text

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Completion":
        known = {f.name for f in fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        if d.get("logprobs") is not None:
            d["logprobs"] = [TokenLogprob(**t) for t in d["logprobs"]]
        return cls(**d)


def prefill_used(request: Request, completion: Completion) -> str:
    """The prefill as the completion's text carries it (Anthropic strips its trailing whitespace)."""
    p = request.prefill
    if p and not completion.text.startswith(p) and completion.text.startswith(p.rstrip()):
        return p.rstrip()
    return p


@dataclass
class Grade:
    """What every grader returns: a score in [0, 1], pass or fail, and why."""

    score: float
    passed: bool
    reason: str = ""
    label: str | None = None  # the parsed answer, when the grader parses one
    parsed: bool = True  # False when the answer could not be read at all (kept apart from wrong)
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class Example:
    """One dataset example: the inputs that fill a template's variables, and the gold target.

    `split` is "train" (few-shot examples), "dev" (calibration, tuning) or "test" (held out).
    """

    id: str
    input: dict[str, Any]
    target: Any = None
    split: str = "test"
    meta: dict[str, Any] = field(default_factory=dict)


Row = Example  # the old name ("row" also means a result row); kept so existing code runs


@runtime_checkable
class PromptVariant(Protocol):
    """Anything the runner can turn into a request: a Template, or a template with phrases applied."""

    name: str

    def to_request(self, variables: Mapping[str, Any], settings: Settings) -> Request: ...


@runtime_checkable
class Grader(Protocol):
    """A callable that grades one completion against a row's target; `name` labels its column."""

    name: str

    def __call__(self, completion: Completion, target: Any) -> Grade: ...


@dataclass
class Cell:
    """One unit of work: one call of one model on one rendered prompt.

    `key` is a stable sha256 hex of everything that changes the answer; it is the
    cache key, the row id in results, and the custom_id of a batch request.
    """

    key: str
    variant: str
    model: str
    settings: Settings
    row_id: str
    repeat: int
    request: Request
    target: Any = None
    settings_label: str = ""


@dataclass
class CellResult:
    """A finished cell: its completion (answer or error) and the grades given to it."""

    cell: Cell
    completion: Completion
    grades: dict[str, Grade] = field(default_factory=dict)
