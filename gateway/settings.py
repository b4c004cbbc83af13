"""Gateway settings: one validated object, built at start-up and passed down (no globals).

Sources, highest priority first: explicit keyword arguments (the command line), environment
variables (``SYNERGAI_<FIELD>``, plus the conventional unprefixed ``REDIS_URL``), the YAML config
file (``synergai serve --config F``), then defaults. The config file is validated strictly
before merging, so an unknown or malformed key is reported with its file and line::

    policy: synergai
    profiles: ../profiles            # relative to the config file
    workers:
      - {id: edge-0, pool: edge, arch: jetson-agx-orin, url: "http://10.0.0.5:8000",
         grpc_url: "10.0.0.5:8001", metrics_url: "http://10.0.0.5:8002/metrics",
         instances: 1, rtt_ms: 1.0, models: [resnet50]}
    models:
      resnet50: {slo_ms: 50, priority: 1, category: latency, idempotent: true}
    request_timeout_s: 30
    admin_token: "..."
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from gateway.discovery.config import DiscoverySettings
from gateway.epp.config import EppSettings
from gateway.prediction.profiles import default_profiles_dir
from gateway.routing.types import WorkerInfo
from gateway.yamlio import FormatError, format_validation_error, load_yaml

__all__ = ["FormatError", "ModelDefaults", "Settings", "WorkerSpec", "load_settings"]

Category = Literal["latency", "frequency"]


class WorkerSpec(BaseModel):
    """One Triton worker as configured (as ``workers.fleet.write_gateway_config`` writes it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1)
    pool: str = Field(min_length=1)
    arch: str = Field(min_length=1)
    url: str = Field(min_length=1, description="Triton HTTP base URL, e.g. http://h:8000")
    grpc_url: str = ""
    metrics_url: str = ""
    instances: PositiveInt = 1
    rtt_ms: NonNegativeFloat = 0.0
    models: list[str] = Field(min_length=1)

    def info(self) -> WorkerInfo:
        """The routing layer's frozen view of this worker."""
        return WorkerInfo(
            id=self.id,
            pool=self.pool,
            arch=self.arch,
            models=tuple(self.models),
            instances=self.instances,
            rtt_ms=self.rtt_ms,
            url=self.url.rstrip("/"),
            grpc_url=self.grpc_url,
            metrics_url=self.metrics_url,
        )


class ModelDefaults(BaseModel):
    """Per-model defaults for hints a request leaves out."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    slo_ms: PositiveFloat = 1000.0
    priority: int = 0
    category: Category = "latency"
    idempotent: bool = False


class _Fields(BaseModel):
    """Every setting, shared by the strict file schema and :class:`Settings`."""

    policy: str = "synergai"
    profiles: Path | None = None
    workers: list[WorkerSpec] = Field(default_factory=list)
    models: dict[str, ModelDefaults] = Field(default_factory=dict)
    default_slo_ms: PositiveFloat = 1000.0

    host: str = "0.0.0.0"
    port: int = Field(default=8080, ge=0, le=65535)
    grpc_port: int | None = Field(default=8081, ge=0, le=65535)

    redis_url: str | None = Field(
        default=None, validation_alias=AliasChoices("REDIS_URL", "redis_url")
    )
    redis_prefix: str = "synergai"
    redis_timeout_s: PositiveFloat = 0.05
    redis_backoff_max_s: PositiveFloat = 2.0
    redis_max_connections: PositiveInt = 128
    lease_ttl_s: PositiveFloat = 60.0
    refresh_interval_s: PositiveFloat = 0.1
    stale_after_s: PositiveFloat = 2.0
    # fixed cost (ms) per request of the path that neither a profile nor rtt_ms contains
    # (this gateway, Triton's front end and backend IPC): predictions include it as network
    # time (gateway.prediction.model.PredictorConfig; docs/benchmarks.md, Simulator vs live)
    overhead_ms: NonNegativeFloat = 0.0
    scrape_interval_s: PositiveFloat | None = 1.0  # Triton /metrics reconciliation; None: off
    discovery: DiscoverySettings = Field(default_factory=DiscoverySettings)
    epp: EppSettings = Field(default_factory=EppSettings)  # synergai epp (gateway.epp.config)

    upstream: Literal["http1", "aiohttp"] = "http1"
    connect_timeout_s: PositiveFloat = 1.0
    request_timeout_s: PositiveFloat = 30.0
    max_connections_per_worker: PositiveInt = 256
    health_interval_s: PositiveFloat = 1.0

    max_body_bytes: PositiveInt = 64 * 1024 * 1024
    max_inflight: PositiveInt = 4096
    # failure behaviour (issue 8; docs/operations.md "Failure behaviour")
    max_inflight_bytes: PositiveInt = 1024 * 1024 * 1024
    low_priority_share: float = Field(default=0.8, gt=0.0, le=1.0)
    high_priority: int = 1
    timeout_slo_factor: PositiveFloat = 10.0
    min_timeout_s: PositiveFloat = 5.0
    retry_budget_ratio: NonNegativeFloat = 0.2
    retry_min_per_s: NonNegativeFloat = 10.0
    probe_unhealthy_threshold: PositiveInt = 2
    outlier_consecutive_errors: PositiveInt = 3
    outlier_consecutive_connect_errors: PositiveInt = 1
    outlier_base_ejection_s: PositiveFloat = 1.0
    outlier_max_ejection_s: PositiveFloat = 30.0
    outlier_max_ejection_percent: float = Field(default=50.0, ge=0.0, le=100.0)
    drain_timeout_s: PositiveFloat = 10.0
    admin_token: SecretStr | None = None
    seed: int | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @model_validator(mode="after")
    def _check_workers(self) -> _Fields:
        seen: set[str] = set()
        for w in self.workers:
            if w.id in seen:
                raise ValueError(f"duplicate worker id {w.id!r}")
            seen.add(w.id)
        return self

    def profiles_dir(self) -> Path:
        """The profiles directory to load (the project's ``profiles/`` by default)."""
        return self.profiles if self.profiles is not None else default_profiles_dir()

    def model_defaults(self, model: str) -> ModelDefaults:
        """Hint defaults of ``model`` (config entry, else the global SLO)."""
        found = self.models.get(model)
        return found if found is not None else ModelDefaults(slo_ms=self.default_slo_ms)

    def worker_infos(self) -> list[WorkerInfo]:
        """Configured workers as routing :class:`WorkerInfo`."""
        return [w.info() for w in self.workers]


class _FileSchema(_Fields):
    model_config = ConfigDict(extra="forbid")


class _DictSource(PydanticBaseSettingsSource):
    """Lowest-priority source holding the already-validated config file."""

    def __init__(self, settings_cls: type[BaseSettings], values: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        self._values = values

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._values)


class Settings(_Fields, BaseSettings):
    """The gateway's settings; build with :func:`load_settings` or directly in tests."""

    model_config = SettingsConfigDict(
        env_prefix="SYNERGAI_", extra="forbid", populate_by_name=True, frozen=True
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Flags, then environment, then the config file (no dotenv, no secrets dir)."""
        file_values = getattr(init_settings, "init_kwargs", {}).pop("_file_values", None) or {}
        return (init_settings, env_settings, _DictSource(settings_cls, file_values))


def _read_config(path: Path) -> dict[str, Any]:
    raw = load_yaml(path)
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise FormatError(f"{path}:1: a gateway config must be a mapping")
    try:
        spec = _FileSchema.model_validate(raw)
    except ValidationError as exc:
        raise format_validation_error(path, raw, exc.errors()) from None
    values = spec.model_dump(exclude_unset=True, by_alias=False)
    if spec.profiles is not None and not spec.profiles.is_absolute():
        values["profiles"] = (path.parent / spec.profiles).resolve()
    if "workers" in values:
        values["workers"] = spec.workers
    if "models" in values:
        values["models"] = spec.models
    if spec.admin_token is not None:
        values["admin_token"] = spec.admin_token
    return values


def load_settings(config: Path | None = None, **overrides: Any) -> Settings:
    """Validate the config file, environment and overrides into one :class:`Settings`.

    Args:
        config: YAML config file, or ``None`` (``SYNERGAI_CONFIG`` is used when set).
        overrides: highest-priority values (command-line flags); ``None`` values are ignored.

    Raises:
        FormatError: the file is unreadable or a key is unknown/invalid (file and line named),
            or the environment holds an invalid value.
    """
    if config is None and os.environ.get("SYNERGAI_CONFIG"):
        config = Path(os.environ["SYNERGAI_CONFIG"])
    file_values = _read_config(config) if config is not None else {}
    kwargs = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(_file_values=file_values, **kwargs)  # type: ignore[call-arg]
    except ValidationError as exc:
        msgs = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in exc.errors()
        )
        raise FormatError(f"invalid settings (environment or flags): {msgs}") from None
