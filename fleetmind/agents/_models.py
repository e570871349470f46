"""Which model endpoints a fleet may use: one per tier (device, edge, cloud), from a file and
the environment.

```yaml
# ~/.fleetmind/models.yaml (or --models FILE, or FLEETMIND_MODELS=FILE)
models:
  device:
    base_url: http://127.0.0.1:8080/v1        # llama.cpp server, vLLM, Ollama's /v1 ...
    model: gemma-3-270m
  cloud:
    base_url: https://api.example.com/v1
    model: big-model
    api_key_env: EXAMPLE_API_KEY               # or api_key_file: ~/.keys/example
    prices: {input_per_mtok: 0.40, output_per_mtok: 1.60}
planner: cloud                                 # the tier that plans (default: the largest)
```

Environment variables override the file, field by field: ``FLEETMIND_<TIER>_BASE_URL``,
``_MODEL``, ``_API_KEY``, ``_API_KEY_FILE``, ``_PRICE_INPUT``, ``_PRICE_OUTPUT`` (per million
tokens) and ``_TIMEOUT_S``; ``FLEETMIND_PLANNER_TIER`` picks the planner's tier.

API keys are read when a client is made and live only in it; they are never written to the
task log, the store or a step record, and ``repr`` hides them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from fleetmind._validation import describe_validation_error
from fleetmind.errors import ConfigError, ModelNotConfigured

TIERS = ("device", "edge", "cloud")
"""Model tiers, smallest first."""

CONFIGURE_HINT = (
    "set FLEETMIND_CLOUD_BASE_URL and FLEETMIND_CLOUD_MODEL (and FLEETMIND_CLOUD_API_KEY_FILE "
    "if it needs a key), or write models.yaml in the data directory; "
    "`fleetmind llm check` shows what is configured"
)


class ModelPrices(BaseModel):
    """What a million tokens cost, in whatever currency you count in."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    input_per_mtok: float = Field(default=0.0, ge=0)
    output_per_mtok: float = Field(default=0.0, ge=0)

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        """The cost of one call."""
        return (
            prompt_tokens * self.input_per_mtok + completion_tokens * self.output_per_mtok
        ) / 1_000_000


class ModelEndpoint(BaseModel):
    """One OpenAI-compatible chat-completions endpoint and how to talk to it.

    Attributes:
        name: The label in step records and tables (the tier, for configured endpoints).
        base_url: The API root, ending before ``/chat/completions`` (e.g. ``.../v1``).
        model: The model name the server expects.
        api_key / api_key_env / api_key_file: The bearer key, given inline, by the name of an
            environment variable, or as a file; at most one. None for local servers.
        timeout_s: Longest wait for one attempt (for a stream: between two pieces).
        connect_timeout_s: Longest wait to connect.
        max_retries: Further attempts after a 429, a 5xx, a refused connection or a malformed
            answer, with exponential back-off, honouring ``Retry-After``.
        max_backoff_s: Longest wait between two attempts (a longer ``Retry-After`` gives up).
        structured_output: How JSON answers are asked for: ``auto`` (JSON Schema, falling back
            to instructions when the server refuses it), ``json_schema``, ``json_object`` or
            ``prompt`` (instructions only; the answer is always validated).
        max_tokens_field: ``max_tokens`` (most servers) or ``max_completion_tokens``.
        headers: Extra HTTP headers (organisation ids and the like).
        context_tokens: The model's context size, when known.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = "model"
    base_url: str
    model: str = Field(min_length=1)
    api_key: SecretStr | None = None
    api_key_env: str | None = None
    api_key_file: Path | None = None
    timeout_s: float = Field(default=120.0, gt=0)
    connect_timeout_s: float = Field(default=5.0, gt=0)
    max_retries: int = Field(default=3, ge=0, le=20)
    max_backoff_s: float = Field(default=30.0, ge=0)
    prices: ModelPrices = Field(default_factory=ModelPrices)
    structured_output: Literal["auto", "json_schema", "json_object", "prompt"] = "auto"
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"
    headers: dict[str, str] = Field(default_factory=dict)
    context_tokens: int | None = Field(default=None, ge=1)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https:// (got {value!r})")
        if value.endswith("/chat/completions"):
            value = value.removesuffix("/chat/completions")
        return value

    def key_source(self) -> str:
        """Where the key comes from, for people (never the key itself)."""
        if self.api_key is not None:
            return "inline"
        if self.api_key_env:
            return f"env {self.api_key_env}"
        if self.api_key_file:
            return f"file {self.api_key_file}"
        return "none"

    def resolve_api_key(self) -> str | None:
        """The API key, read now from where the configuration says it is.

        Raises:
            ConfigError: the variable is unset or the file cannot be read.
        """
        given = [s for s in (self.api_key, self.api_key_env, self.api_key_file) if s]
        if len(given) > 1:
            raise ConfigError(
                f"model {self.name!r}: give one of api_key, api_key_env, api_key_file"
            )
        if self.api_key is not None:
            return self.api_key.get_secret_value()
        if self.api_key_env:
            value = os.environ.get(self.api_key_env)
            if not value:
                raise ConfigError(
                    f"model {self.name!r}: environment variable {self.api_key_env} is not set"
                )
            return value.strip()
        if self.api_key_file:
            path = self.api_key_file.expanduser()
            try:
                return path.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(
                    f"model {self.name!r}: cannot read api_key_file {path}: {exc.strerror}"
                ) from None
        return None


class ModelConfig(BaseModel):
    """The endpoints a fleet may use, one per tier, and which tier plans."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    models: dict[Literal["device", "edge", "cloud"], ModelEndpoint] = Field(default_factory=dict)
    planner: Literal["device", "edge", "cloud"] | None = None
    source: str = Field(default="", exclude=True)
    """Where it was read from, for messages."""

    @property
    def tiers(self) -> list[str]:
        """Configured tiers, smallest first."""
        return [t for t in TIERS if t in self.models]

    def endpoint(self, tier: str) -> ModelEndpoint:
        """The endpoint of one tier.

        Raises:
            ModelNotConfigured: that tier has no endpoint.
        """
        found: ModelEndpoint | None = self.models.get(tier)  # type: ignore[call-overload]
        if found is None:
            have = ", ".join(self.tiers) or "none"
            raise ModelNotConfigured(
                f"no {tier} model is configured (configured: {have}); {CONFIGURE_HINT}"
            )
        return found

    def planner_tier(self) -> str:
        """The tier that plans: the configured one, else the largest configured.

        Raises:
            ModelNotConfigured: no model is configured at all.
        """
        if self.planner is not None:
            self.endpoint(self.planner)
            return self.planner
        if not self.models:
            raise ModelNotConfigured(f"no model is configured to plan with; {CONFIGURE_HINT}")
        return self.tiers[-1]

    @classmethod
    def load(
        cls, path: str | Path | None = None, *, env: Mapping[str, str] | None = None
    ) -> ModelConfig:
        """Read the configuration: the file (if it exists), then the environment over it.

        Args:
            path: A models.yaml file; a missing file is fine (environment only) unless it was
                named explicitly through ``FLEETMIND_MODELS``.
            env: The environment (``os.environ`` when None).

        Raises:
            ConfigError: the file is malformed or an entry is invalid; one line says where.
        """
        env = os.environ if env is None else env
        explicit = env.get("FLEETMIND_MODELS")
        file = Path(explicit) if explicit else (Path(path) if path is not None else None)
        raw: dict[str, Any] = {}
        source = "environment"
        if file is not None and (file.exists() or explicit):
            raw = _read_file(file.expanduser())
            source = str(file)
        models = dict(raw.get("models") or {})
        if not isinstance(raw.get("models") or {}, dict):
            raise ConfigError(f"{source}: 'models' must map tiers to endpoints")
        for tier in TIERS:
            overrides = _env_overrides(tier, env)
            if overrides:
                base = models.get(tier) or {}
                if not isinstance(base, dict):
                    raise ConfigError(f"{source}: models.{tier} must be a mapping")
                if "api_key" in overrides or "api_key_file" in overrides:
                    base = {
                        k: v
                        for k, v in base.items()
                        if k not in ("api_key", "api_key_env", "api_key_file")
                    }
                prices = {**(base.get("prices") or {}), **overrides.pop("prices", {})}
                models[tier] = {**base, **overrides, **({"prices": prices} if prices else {})}
        for tier, entry in models.items():
            if isinstance(entry, dict):
                entry.setdefault("name", tier)
        data = {**raw, "models": models}
        if env.get("FLEETMIND_PLANNER_TIER"):
            data["planner"] = env["FLEETMIND_PLANNER_TIER"]
        try:
            return cls.model_validate({**data, "source": source})
        except ValidationError as exc:
            raise ConfigError(f"{source}: {describe_validation_error(exc)}") from None


def _read_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read model configuration {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{where}: malformed YAML") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a model configuration is a mapping with a 'models' key")
    return data


_ENV_FIELDS = {
    "BASE_URL": "base_url",
    "MODEL": "model",
    "API_KEY": "api_key",
    "API_KEY_FILE": "api_key_file",
    "TIMEOUT_S": "timeout_s",
}


def _env_overrides(tier: str, env: Mapping[str, str]) -> dict[str, Any]:
    prefix = f"FLEETMIND_{tier.upper()}_"
    out: dict[str, Any] = {}
    for suffix, key in _ENV_FIELDS.items():
        value = env.get(prefix + suffix)
        if value:
            out[key] = value
    prices = {}
    for suffix, key in (("PRICE_INPUT", "input_per_mtok"), ("PRICE_OUTPUT", "output_per_mtok")):
        value = env.get(prefix + suffix)
        if value:
            prices[key] = value
    if prices:
        out["prices"] = prices
    return out


def default_models_file() -> Path:
    """models.yaml in the data directory (``FLEETMIND_HOME``, else ``~/.fleetmind``)."""
    base = os.environ.get("FLEETMIND_HOME") or "~/.fleetmind"
    return Path(base).expanduser() / "models.yaml"
