"""Provider registry: a model spec string in, a ready provider out.

Specs are `prefix:model`: `local:smollm2`, `local:/path/model.gguf`,
`anthropic:claude-haiku-4-5`, `openai:gpt-4o-mini`, `ollama:llama3.2`,
`vllm:<model>`, `lmstudio:<model>`, and any OpenAI-compatible server as
`openai:<model>@http://host:port/v1`. Vendor SDKs are imported only when their
provider is first used.
"""
from __future__ import annotations

import importlib
import threading

from ..errors import ModelSpecError
from .base import ModelSpec, Provider, classify_status, retry_after_seconds

# prefix -> "module:Class"; OpenAI-compatible servers reuse the OpenAI provider.
_BUILTIN: dict[str, str] = {
    "local": "promptkit.providers.local:LocalProvider",
    "anthropic": "promptkit.providers.anthropic:AnthropicProvider",
    "openai": "promptkit.providers.openai:OpenAIProvider",
    "ollama": "promptkit.providers.openai:OpenAIProvider",
    "vllm": "promptkit.providers.openai:OpenAIProvider",
    "lmstudio": "promptkit.providers.openai:OpenAIProvider",
    "echo": "promptkit.providers.echo:EchoProvider",
    "mock": "promptkit.providers.mock:MockProvider",
}
_REGISTERED: dict[str, type[Provider]] = {}
_INSTANCES: dict[str, Provider] = {}
_LOCK = threading.Lock()

DEFAULT_MODEL = "local:smollm2"


def register(prefix: str, cls: type[Provider] | str) -> None:
    """Add a provider class under a spec prefix (built-ins and plugins use the same table).

    A "module:Class" string registers it lazily: the module is imported when the prefix is first used, so
    the layers above providers (scoring.py's `score:`, tools.py's `tools:`) plug in without this package
    naming them.
    """
    if isinstance(cls, str):
        _BUILTIN[prefix] = cls
    else:
        _REGISTERED[prefix] = cls

def known_prefixes() -> list[str]:
    return sorted(set(_BUILTIN) | set(_REGISTERED))


def provider_class(prefix: str) -> type[Provider]:
    if prefix in _REGISTERED:
        return _REGISTERED[prefix]
    target = _BUILTIN.get(prefix)
    if target is None:
        raise ModelSpecError(
            f"unknown provider {prefix!r}; known providers are {known_prefixes()} "
            f"(write a model as provider:model, e.g. local:smollm2 or openai:gpt-4o-mini)"
        )
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def parse_spec(spec: str | ModelSpec) -> ModelSpec:
    """Split `provider:model[@base_url]`, naming what is wrong with a malformed spec."""
    if isinstance(spec, ModelSpec):
        return spec
    if not isinstance(spec, str) or not spec.strip():
        raise ModelSpecError(f"a model spec must be a non-empty string like 'local:smollm2', got {spec!r}")
    text = spec.strip()
    base_url = None
    for marker in ("@http://", "@https://"):
        if marker in text:
            text, _, rest = text.partition(marker)
            base_url = marker[1:] + rest
            break
    prefix, sep, model = text.partition(":")
    if not sep or not model:
        raise ModelSpecError(
            f"model spec {spec!r} needs the form provider:model; known providers are {known_prefixes()} "
            f"(e.g. local:smollm2, anthropic:claude-haiku-4-5, openai:gpt-4o-mini)"
        )
    prefix = prefix.lower()
    provider_class(prefix)  # raises with the list of known providers
    return ModelSpec(provider=prefix, model=model, base_url=base_url)


def get_provider(spec: str | ModelSpec) -> Provider:
    """The provider for `spec`, built once per process (raises if it cannot be set up, e.g. a missing key)."""
    ms = parse_spec(spec)
    key = str(ms)
    with _LOCK:
        prov = _INSTANCES.get(key)
        if prov is None:
            prov = provider_class(ms.provider)(ms)
            _INSTANCES[key] = prov
        return prov


def clear_providers() -> None:
    """Forget built providers (tests change keys and base URLs between cases)."""
    with _LOCK:
        _INSTANCES.clear()


__all__ = [
    "DEFAULT_MODEL", "ModelSpec", "Provider", "classify_status", "clear_providers", "get_provider",
    "known_prefixes", "parse_spec", "provider_class", "register", "retry_after_seconds",
]
