"""Settings: environment variables with the SIAGA112_ prefix, and an optional TOML file.

Nested sections use a double underscore: ``SIAGA112_ARI__URL``. The TOML file is named by
``SIAGA112_CONFIG`` (default ``siaga112.toml`` in the working directory, when it exists).
Every section refuses fields it does not know (a misspelt setting is an error, not a default).

A wrong value fails with a message that names the setting and never repeats the value given
(``describe``): pydantic's own messages echo inputs, and an input may be a token or password.
The daemon refuses more at start (``load_for_daemon``): no settings file unless told
``--defaults``, the placeholder ARI password, API tokens shorter than 24 characters.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)
from pydantic_settings import SettingsError as SourceError

from siaga112.agencies import DEFAULT_DIRECTORY, Agency

STATE_DIR_DEFAULT = Path("/var/lib/siaga112")
CONFIG_DEFAULT = "siaga112.toml"
# The password in the sample ari.conf. Known to everyone: the daemon refuses to start with it.
ARI_PASSWORD_PLACEHOLDER = "change-me-ari"
TOKEN_MIN_LENGTH = 24


class _Section(BaseModel):
    """A settings section: unknown fields are errors (a misspelt key would silently default)."""

    model_config = ConfigDict(extra="forbid")


class AriNode(_Section):
    """One Asterisk node of a cluster (docs/cluster.md). Its asterisk.conf must say
    `systemname = <name>`: the node's call ids then start with it, which is how the daemon
    knows on which node a call lives (and no two nodes' ids can clash)."""

    name: str = Field(pattern=r"^[a-z][a-z0-9]{0,15}$")
    url: str = Field(pattern=r"^https?://\S+$", max_length=200)


class AriSettings(_Section):
    url: str = "http://127.0.0.1:8088/ari"
    # A cluster: one ARI connection per node, one queue and one desk over all of them (`url`
    # is then unused). Empty: the single PBX at `url`.
    nodes: list[AriNode] = Field(default_factory=list, max_length=16)
    # A node whose events socket stays down this long is taken as dead: its calls are closed
    # as `dropped` (they went with the node; the callback list has them).
    node_lost_after: float = Field(default=5.0, gt=0, le=300)
    # Seconds between two looks for callers in our application whom no session handles (a lost
    # event, a hang-up never carried out): one seen at two looks in a row is taken in.
    sweep_interval: float = Field(default=15.0, ge=1, le=3600)
    username: str = "siaga112"
    password: SecretStr = SecretStr(ARI_PASSWORD_PLACEHOLDER)  # refused by the daemon
    app: str = "siaga112"
    # Connections to Asterisk's HTTP server; http.conf sessionlimit must be above this.
    max_connections: int = Field(default=20, ge=1, le=500)
    request_timeout: float = Field(default=5.0, gt=0)
    # ARI requests over the events socket while it is up (ari/socket_rest.py): half the
    # daemon's CPU of an HTTP request. HTTP while it is down, with false, and with an Asterisk
    # that does not answer there (before 22.4, 21.9, 20.14: found out at connect).
    requests_over_socket: bool = True
    reconnect_initial: float = Field(default=0.2, gt=0)
    reconnect_max: float = Field(default=5.0, gt=0)

    @model_validator(mode="after")
    def _unique_nodes(self) -> AriSettings:
        names = [n.name for n in self.nodes]
        if len(set(names)) != len(names):
            raise ValueError("ari.nodes: each node needs its own name")
        return self


class DatabaseSettings(_Section):
    url: str = "postgresql+asyncpg://siaga112@127.0.0.1:5432/siaga112"
    batch_size: int = Field(default=200, ge=1)
    # The most a power cut can take from the records: what the call path journals is in
    # PostgreSQL or fsynced on the local disk within flush_interval.
    flush_interval: float = Field(default=0.2, gt=0)
    # How often the writer stores to PostgreSQL when fewer than batch_size records wait (a
    # full batch goes at once). Each transaction recomputes the rows of the calls in it, so a
    # call stored in fewer pieces costs less: at 10 calls/s, 0.2 -> 1.0 s took 20% of the
    # daemon's CPU and half of PostgreSQL's per call (docs/load-testing.md, eighth round).
    # A reader that needs a record of the last second asks the writer first (flush()).
    store_interval: float = Field(default=1.0, gt=0, le=60)
    retry_interval: float = Field(default=1.0, gt=0)
    # Bounded local journal: records wait here while PostgreSQL is down.
    journal_max_bytes: int = Field(default=512 * 1024 * 1024, ge=1024)
    # Every statement is cancelled by the server after this many seconds (and given up by the
    # client a little later), so a hung database never stalls the API, the blocklist or the
    # writer; the writer takes a timeout as "database away" and retries.
    statement_timeout: float = Field(default=10.0, gt=0, le=3600)
    # A batch failing this many times in a row for a reason that is neither the database being
    # away nor a refusal of the data goes record by record, and what fails is quarantined.
    quarantine_after: int = Field(default=5, ge=1)


class MqttSettings(_Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    topic_prefix: str = "siaga112"
    # Events kept in memory while the broker is unreachable; older ones are dropped and counted.
    buffer_max: int = Field(default=10_000, ge=1)
    # Seconds an event waits for others, to go out in one window (like Kafka's linger.ms): a
    # subscriber sees it up to this much later; every window costs a PUBACK round of CPU.
    # 0.3 against 0.1: 6% less of the daemon's CPU at 10 calls/s, 0.5 no less again
    # (docs/load-testing.md, thirteenth round). The console's live feed and the queue's
    # matching of operators do not wait for it.
    linger: float = Field(default=0.3, ge=0, le=1.0)


DESK_MEDIA_TIMEOUT_MIN = 2.0  # s: queue.desk_media_timeout, when on


class QueueSettings(_Section):
    ring_timeout: float = Field(default=15.0, gt=0, description="seconds an operator's phone rings")
    wrapup: float = Field(default=10.0, ge=0, description="seconds of wrap-up after each call")
    announce_interval: float = Field(default=30.0, gt=0)
    operators: list[str] = [f"op{n}" for n in range(1, 9)]
    # Operators start logged in, so that a fresh centre takes calls before anyone dials *11.
    operators_start_logged_in: bool = True
    # Escalation: with no operator able to answer (all logged out, paused or unreachable) for
    # this long, waiting callers go to the overflow target; so does a caller who waited max_wait.
    no_operator_timeout: float = Field(default=20.0, gt=0)
    max_wait: float = Field(default=300.0, gt=0)
    # "fallback": the dialplan's Queue(siaga112-fallback), every desk phone rings; or a dial
    # string to a backup centre (e.g. "PJSIP/112@backup-centre"), which falls back to that queue.
    overflow: str = Field(default="fallback", min_length=1, max_length=200,
                          pattern=r"^(fallback|[A-Za-z0-9]+/[A-Za-z0-9_.@:+\-/]+)$")
    # A desk phone that loses power or its network in a call sends no BYE: the citizen would
    # sit in a silent bridge. A connected operator's phone from which no media packet has come
    # for this long is taken as lost: its leg is hung up, the operator paused (phone_lost), and
    # the citizen goes back to the front of the queue (call/desk_media.py). 0: not watched.
    # Desk phones must send media all through a call (silence suppression, VAD, off: the
    # default of desk phones); a phone that holds the call is given desk_media_timeout_held.
    desk_media_timeout: float = Field(default=10.0, ge=0, le=600)
    desk_media_timeout_held: float = Field(default=300.0, gt=0, le=3600)

    @field_validator("desk_media_timeout")
    @classmethod
    def _watch_long_enough(cls, value: float) -> float:
        # Shorter, a gap of network jitter would hang up a live operator's phone.
        if 0 < value < DESK_MEDIA_TIMEOUT_MIN:
            raise ValueError(f"0 (not watched) or at least {DESK_MEDIA_TIMEOUT_MIN:g} s: shorter, "
                             "a moment of network jitter would cut a live operator off")
        return value


class ScreeningSettings(_Section):
    # Digit that lets a blocked caller through to the priority lane.
    bypass_digit: str = Field(default="5", pattern=r"^[0-9*#]$")
    bypass_wait: float = Field(default=8.0, gt=0)
    strict: bool = False  # announce and hang up, no way through: off by default


class PolicySettings(_Section):
    # more than this in the window blocks
    prank_block_threshold: int = Field(default=5, ge=1)
    # more than this refers to the ministry
    referral_threshold: int = Field(default=10, ge=1)
    window_hours: float = Field(default=24 * 30, gt=0)
    block_hours: float = Field(default=24.0, gt=0)


class SilenceSettings(_Section):
    enabled: bool = True
    # TALK_DETECT thresholds: ms of silence before talking stops, energy level of speech.
    dsp_silence_ms: int = Field(default=1200, ge=100)
    dsp_talking_threshold: int = Field(default=128, ge=1)
    # seconds of silence before the prompt "press 5 twice if you cannot speak"; after it the
    # caller stays queued, flagged silent: the system never hangs up a waiting caller
    silent_after: float = Field(default=6.0, gt=0)


class AgencySettings(_Section):
    answer_timeout: float = Field(default=20.0, gt=0)
    moving_deadline_minutes: float = Field(default=15.0, gt=0)
    complaint_deadline_hours: float = Field(default=72.0, gt=0)
    overdue_check_interval: float = Field(default=10.0, gt=0)


class ApiToken(_Section):
    token: SecretStr
    # supervisor (read), operator (acts on calls), admin (also the blocklist); agency: may
    # only report its own team moving, and names its two-digit code in `agency`.
    role: Literal["supervisor", "operator", "admin", "agency", "aml"]
    name: str
    agency: str | None = Field(default=None, pattern=r"^[0-9]{2}$")
    # The desk phone (an operator in queue.operators, e.g. "op1") an operator's or admin's token
    # sits at: the web console shows that desk's call and state.
    desk: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,64}$")

    @model_validator(mode="after")
    def _agency_bound(self) -> ApiToken:
        if self.desk is not None and self.role not in ("operator", "admin"):
            raise ValueError(f"api token {self.name!r} has desk {self.desk} but role "
                             f"{self.role}: only an operator or admin token sits at a desk")
        if self.role == "agency" and self.agency is None:
            raise ValueError(f"api token {self.name!r} has role agency but no agency code "
                             "(e.g. agency = \"01\")")
        if self.role != "agency" and self.agency is not None:
            raise ValueError(f"api token {self.name!r} has agency {self.agency} but role "
                             f"{self.role}: only an agency token names an agency")
        return self


class ApiSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8112, ge=1, le=65535)
    tokens: list[ApiToken] = []
    metrics_public: bool = False  # true: /metrics needs no token (a scraper on loopback)


class RecordingSettings(_Section):
    enabled: bool = True  # the dialplan's MixMonitor records; this adds path and length to records
    # Where the PBX's MixMonitor writes (dialplan: siaga112/<call id>.wav under its monitor
    # spool), as this host sees it. For the test PBX that is inside its chroot.
    dir: Path = Path("/var/cache/siaga112/pbx-root/var/spool/asterisk/monitor/siaga112")
    retention_days: int = Field(default=90, ge=1)
    # The same directory as the PBX sees it: the instant recall (call/recall.py) writes the call's
    # last seconds into dir/recall/ and has the PBX play them from pbx_dir/recall/.
    pbx_dir: Path = Path("/var/spool/asterisk/monitor/siaga112")
    recall_seconds: float = Field(default=30.0, gt=0, le=600)  # what *6 plays again


class SupervisionSettings(_Section):
    """Supervisors' desk phones (supervision.py): listen, whisper, barge on operators' calls."""

    # The ARI application of supervisors' phones and snoop channels (dialplan global
    # SIAGA112_SUP_APP): apart from ari.app, so that the call path never sees those channels.
    app: str = Field(default="siaga112-supervision", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    # The PJSIP endpoints that are supervisors' desk phones (the dialplan's [supervisors]).
    phones: list[str] = ["sup1"]


class HaSettings(_Section):
    """Active/standby daemons (docs/cluster.md): leadership on PostgreSQL. Off: this daemon is
    the only one and always active."""

    enabled: bool = False
    # This daemon's name in the leadership row, the logs and MQTT: unique per daemon.
    node: str = Field(default="a", pattern=r"^[A-Za-z0-9_-]{1,32}$")
    # The active writes a heartbeat this often; a standby takes over only when it holds the
    # leadership lock and has watched the heartbeat stand still for `lease` seconds without
    # losing the database in between (an outage never counts towards the lease).
    heartbeat_interval: float = Field(default=1.0, gt=0, le=60)
    lease: float = Field(default=3.0, gt=0, le=600)

    @model_validator(mode="after")
    def _lease_covers_beats(self) -> HaSettings:
        if self.lease < 2 * self.heartbeat_interval:
            raise ValueError("ha.lease must be at least twice ha.heartbeat_interval")
        return self


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
    # The daemon's event loop: uvloop (5% less CPU a call than asyncio's own at 10 calls/s,
    # docs/load-testing.md), or Python's own should uvloop ever misbehave.
    event_loop: Literal["uvloop", "asyncio"] = "uvloop"
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
    supervision: SupervisionSettings = SupervisionSettings()
    ha: HaSettings = HaSettings()
    agencies: list[Agency] = DEFAULT_DIRECTORY

    @model_validator(mode="after")
    def _desks_known(self) -> Settings:
        for tok in self.api.tokens:
            if tok.desk is not None and tok.desk not in self.queue.operators:
                raise ValueError(f"api token {tok.name!r}: desk {tok.desk} is not one of "
                                 "queue.operators")
        return self

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
        toml_file = config_file()
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_file.is_file():
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_file))
        return tuple(sources)


class SettingsError(ValueError):
    """Settings the daemon cannot run with; the message names each setting, never a value."""


def config_file() -> Path:
    """The settings file: SIAGA112_CONFIG, or siaga112.toml in the working directory."""
    return Path(os.environ.get("SIAGA112_CONFIG", CONFIG_DEFAULT))


def describe(exc: ValidationError | SourceError) -> str:
    """One line per problem, `setting: what is wrong`, without the value that was given."""
    if isinstance(exc, SourceError):
        # pydantic-settings names the field and its source (say, an environment variable that
        # is not valid JSON); what follows the first colon may quote the value: left out.
        return f"  {str(exc).split(':', 1)[0]}"
    lines = []
    for err in exc.errors(include_url=False, include_input=False, include_context=False):
        where = ".".join(str(part) for part in err["loc"]) or "(settings)"
        lines.append(f"  {where}: {err['msg']}")
    return "\n".join(lines)


def load() -> Settings:
    """Settings() for the command line: a SettingsError with `describe`'s message if wrong."""
    try:
        return Settings()
    except (ValidationError, SourceError) as exc:
        raise SettingsError(f"bad settings:\n{describe(exc)}") from None


def daemon_refusals(settings: Settings) -> list[str]:
    """What the daemon will not start with, one line each, naming the setting (no values)."""
    problems = []
    if settings.ari.password.get_secret_value() == ARI_PASSWORD_PLACEHOLDER:
        problems.append(
            f"ari.password: is the placeholder {ARI_PASSWORD_PLACEHOLDER!r} of the sample "
            "ari.conf; set the password of the PBX's ari.conf (SIAGA112_ARI__PASSWORD or "
            "[ari] password)")
    for i, tok in enumerate(settings.api.tokens):
        if len(tok.token.get_secret_value()) < TOKEN_MIN_LENGTH:
            problems.append(
                f"api.tokens.{i}.token ({tok.name!r}): shorter than {TOKEN_MIN_LENGTH} "
                "characters; use a long random string (python3 -c 'import secrets; "
                "print(secrets.token_urlsafe(32))')")
    return problems


def load_for_daemon(defaults: bool = False) -> Settings:
    """The settings `siaga112 run` starts with, or a SettingsError naming every refusal.

    With no settings file the daemon would run on defaults (no API tokens, /var/lib/siaga112,
    the sample ARI password): it refuses unless told `defaults`. A SIAGA112_CONFIG naming a
    missing file is always refused (a typo in the path)."""
    path = config_file()
    if not path.is_file():
        if "SIAGA112_CONFIG" in os.environ:
            raise SettingsError(f"SIAGA112_CONFIG names {path}, which is not a file")
        if not defaults:
            raise SettingsError(
                f"no settings file ({path.resolve()} does not exist and SIAGA112_CONFIG is not "
                "set): give one, or run with --defaults to use the defaults and SIAGA112_* "
                "environment variables only")
    settings = load()
    problems = daemon_refusals(settings)
    if problems:
        raise SettingsError("refused settings:\n" + "\n".join(f"  {p}" for p in problems))
    return settings
