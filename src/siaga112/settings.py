"""Settings: environment variables with the SIAGA112_ prefix, and an optional TOML file.

Nested sections use a double underscore: ``SIAGA112_ARI__URL``. The TOML file is named by
``SIAGA112_CONFIG`` (default ``siaga112.toml`` in the working directory, when it exists).
A wrong value fails at start with pydantic's message naming the field.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from siaga112.agencies import DEFAULT_DIRECTORY, Agency

STATE_DIR_DEFAULT = Path("/var/lib/siaga112")


class AriSettings(BaseModel):
    url: str = "http://127.0.0.1:8088/ari"
    username: str = "siaga112"
    password: SecretStr = SecretStr("change-me-ari")
    app: str = "siaga112"
    # Connections to Asterisk's HTTP server; http.conf sessionlimit must be above this.
    max_connections: int = Field(default=20, ge=1, le=500)
    request_timeout: float = Field(default=5.0, gt=0)
    reconnect_initial: float = Field(default=0.2, gt=0)
    reconnect_max: float = Field(default=5.0, gt=0)


class DatabaseSettings(BaseModel):
    url: str = "postgresql+asyncpg://siaga112@127.0.0.1:5432/siaga112"
    batch_size: int = Field(default=200, ge=1)
    flush_interval: float = Field(default=0.2, gt=0)
    retry_interval: float = Field(default=1.0, gt=0)
    # Bounded local journal: records wait here while PostgreSQL is down.
    journal_max_bytes: int = Field(default=512 * 1024 * 1024, ge=1024)


class MqttSettings(BaseModel):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    topic_prefix: str = "siaga112"
    # Events kept in memory while the broker is unreachable; older ones are dropped and counted.
    buffer_max: int = Field(default=10_000, ge=1)


class QueueSettings(BaseModel):
    ring_timeout: float = Field(default=15.0, gt=0, description="seconds an operator's phone rings")
    wrapup: float = Field(default=10.0, ge=0, description="seconds of wrap-up after each call")
    announce_interval: float = Field(default=30.0, gt=0)
    operators: list[str] = [f"op{n}" for n in range(1, 9)]
    # Operators start logged in, so that a fresh centre takes calls before anyone dials *11.
    operators_start_logged_in: bool = True


class ScreeningSettings(BaseModel):
    # Digit that lets a blocked caller through to the priority lane.
    bypass_digit: str = Field(default="5", pattern=r"^[0-9*#]$")
    bypass_wait: float = Field(default=8.0, gt=0)
    strict: bool = False  # announce and hang up, no way through: off by default


class PolicySettings(BaseModel):
    # more than this in the window blocks
    prank_block_threshold: int = Field(default=5, ge=1)
    # more than this refers to the ministry
    referral_threshold: int = Field(default=10, ge=1)
    window_hours: float = Field(default=24 * 30, gt=0)
    block_hours: float = Field(default=24.0, gt=0)


class SilenceSettings(BaseModel):
    enabled: bool = True
    # TALK_DETECT thresholds: ms of silence before talking stops, energy level of speech.
    dsp_silence_ms: int = Field(default=1200, ge=100)
    dsp_talking_threshold: int = Field(default=128, ge=1)
    # seconds of silence before the prompt
    silent_after: float = Field(default=6.0, gt=0)
    keys_wait: float = Field(default=8.0, gt=0, description="seconds to press 5 5 after the prompt")


class AgencySettings(BaseModel):
    answer_timeout: float = Field(default=20.0, gt=0)
    moving_deadline_minutes: float = Field(default=15.0, gt=0)
    complaint_deadline_hours: float = Field(default=72.0, gt=0)
    overdue_check_interval: float = Field(default=10.0, gt=0)


class ApiToken(BaseModel):
    token: SecretStr
    # supervisor (read), operator (acts on calls), admin (also the blocklist); agency: may
    # only report its own team moving, and names its two-digit code in `agency`.
    role: Literal["supervisor", "operator", "admin", "agency"]
    name: str
    agency: str | None = Field(default=None, pattern=r"^[0-9]{2}$")

    @model_validator(mode="after")
    def _agency_bound(self) -> ApiToken:
        if self.role == "agency" and self.agency is None:
            raise ValueError(f"api token {self.name!r} has role agency but no agency code "
                             "(e.g. agency = \"01\")")
        if self.role != "agency" and self.agency is not None:
            raise ValueError(f"api token {self.name!r} has agency {self.agency} but role "
                             f"{self.role}: only an agency token names an agency")
        return self


class ApiSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(default=8112, ge=1, le=65535)
    tokens: list[ApiToken] = []
    metrics_public: bool = False  # true: /metrics needs no token (a scraper on loopback)


class RecordingSettings(BaseModel):
    enabled: bool = True  # the dialplan's MixMonitor records; this adds path and length to records
    # Where the PBX's MixMonitor writes (dialplan: siaga112/<call id>.wav under its monitor
    # spool), as this host sees it. For the test PBX that is inside its chroot.
    dir: Path = Path("/var/cache/siaga112/pbx-root/var/spool/asterisk/monitor/siaga112")
    retention_days: int = Field(default=90, ge=1)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SIAGA112_",
        env_nested_delimiter="__",
        extra="forbid",
    )

    state_dir: Path = STATE_DIR_DEFAULT
    # The dialplan's record of calls handled while the daemon was not there (as this host sees
    # the PBX's /var/spool/asterisk/siaga112-fallback/calls.log).
    fallback_journal: Path = Path("/var/spool/asterisk/siaga112-fallback/calls.log")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "console"] = "json"
    ari: AriSettings = AriSettings()
    database: DatabaseSettings = DatabaseSettings()
    mqtt: MqttSettings = MqttSettings()
    queue: QueueSettings = QueueSettings()
    screening: ScreeningSettings = ScreeningSettings()
    policy: PolicySettings = PolicySettings()
    silence: SilenceSettings = SilenceSettings()
    agency: AgencySettings = AgencySettings()
    api: ApiSettings = ApiSettings()
    recording: RecordingSettings = RecordingSettings()
    agencies: list[Agency] = DEFAULT_DIRECTORY

    @field_validator("state_dir")
    @classmethod
    def _absolute(cls, v: Path) -> Path:
        if not v.is_absolute():
            raise ValueError(f"state_dir must be an absolute path, got {v!s}")
        return v

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = Path(os.environ.get("SIAGA112_CONFIG", "siaga112.toml"))
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_file.is_file():
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_file))
        return tuple(sources)
