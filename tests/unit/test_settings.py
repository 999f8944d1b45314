"""What the daemon refuses to start with, and that a settings error names the setting without
repeating the value given (a value may be a token or a password)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from siaga112 import cli
from siaga112.settings import (
    ARI_PASSWORD_PLACEHOLDER,
    TOKEN_MIN_LENGTH,
    ApiToken,
    Settings,
    SettingsError,
    load,
    load_for_daemon,
)

GOOD_TOKEN = "t" * TOKEN_MIN_LENGTH
GOOD_ARI = "a-real-ari-password-from-ari-conf"
SECRET = "s3cret-do-not-print-me"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No SIAGA112_* from the caller (make exports SIAGA112_CONFIG), a working directory
    without siaga112.toml, and the umask back as it was (cli.main sets its own)."""
    for name in list(os.environ):
        if name.startswith("SIAGA112_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    umask = os.umask(0o022)
    os.umask(umask)
    yield
    os.umask(umask)


def settings_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str) -> Path:
    path = tmp_path / "siaga112.toml"
    path.write_text(f'state_dir = "{tmp_path / "state"}"\n' + body)
    monkeypatch.setenv("SIAGA112_CONFIG", str(path))
    return path


ARI = f'[ari]\npassword = "{GOOD_ARI}"\n'


def token(value: str, name: str = "desk") -> str:
    return f'[[api.tokens]]\ntoken = "{value}"\nrole = "operator"\nname = "{name}"\n'


def test_good_settings_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings_file(tmp_path, monkeypatch, ARI + token(GOOD_TOKEN))
    settings = load_for_daemon()
    assert settings.ari.password.get_secret_value() == GOOD_ARI
    assert [t.name for t in settings.api.tokens] == ["desk"]


def test_the_placeholder_ari_password_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings_file(tmp_path, monkeypatch, token(GOOD_TOKEN))  # no [ari]: the default
    with pytest.raises(SettingsError, match=r"ari\.password: is the placeholder"):
        load_for_daemon()
    settings_file(tmp_path, monkeypatch, f'[ari]\npassword = "{ARI_PASSWORD_PLACEHOLDER}"\n')
    with pytest.raises(SettingsError, match=r"ari\.password"):
        load_for_daemon()


def test_the_placeholder_is_refused_from_the_environment_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings_file(tmp_path, monkeypatch, ARI)
    monkeypatch.setenv("SIAGA112_ARI__PASSWORD", ARI_PASSWORD_PLACEHOLDER)
    with pytest.raises(SettingsError, match=r"ari\.password"):
        load_for_daemon()


def test_no_settings_file_is_refused_unless_told_defaults(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(SettingsError, match="no settings file.*--defaults"):
        load_for_daemon()
    monkeypatch.setenv("SIAGA112_ARI__PASSWORD", GOOD_ARI)
    with pytest.raises(SettingsError, match="no settings file"):
        load_for_daemon()
    assert load_for_daemon(defaults=True).ari.password.get_secret_value() == GOOD_ARI


def test_defaults_still_refuse_the_placeholder() -> None:
    with pytest.raises(SettingsError, match=r"ari\.password"):
        load_for_daemon(defaults=True)


def test_a_settings_path_that_is_not_a_file_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIAGA112_CONFIG", str(tmp_path / "typo.toml"))
    monkeypatch.setenv("SIAGA112_ARI__PASSWORD", GOOD_ARI)
    with pytest.raises(SettingsError, match="SIAGA112_CONFIG names .*typo.toml"):
        load_for_daemon(defaults=True)


def test_a_short_token_is_refused_by_name_without_its_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    short = "x" * (TOKEN_MIN_LENGTH - 1)
    settings_file(tmp_path, monkeypatch, ARI + token(GOOD_TOKEN, "ok") + token(short, "night"))
    with pytest.raises(SettingsError) as err:
        load_for_daemon()
    message = str(err.value)
    assert "api.tokens.1.token ('night'): shorter than 24 characters" in message
    assert "api.tokens.0" not in message
    assert short not in message


def test_a_one_character_token_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings_file(tmp_path, monkeypatch, ARI + token("x"))
    with pytest.raises(SettingsError, match=r"api\.tokens\.0\.token"):
        load_for_daemon()


def test_every_refusal_is_said_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings_file(tmp_path, monkeypatch, token("short"))
    with pytest.raises(SettingsError) as err:
        load_for_daemon()
    assert "ari.password" in str(err.value) and "api.tokens.0.token" in str(err.value)


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ("colour = 1\n" + ARI, "colour"),
        (ARI + "colour = 1\n", "ari.colour"),
        (ARI + "[queue]\nring_timout = 3\n", "queue.ring_timout"),
        (ARI + "[database]\nurll = 'x'\n", "database.urll"),
        (ARI + token(GOOD_TOKEN) + "agnecy = '01'\n", "api.tokens.0.agnecy"),
        (ARI + "[api]\nmetrics_publik = true\n", "api.metrics_publik"),
        (ARI + "[[agencies]]\ncode = '01'\nname = 'x'\nscope = 'city'\nlines = ['a']\n"
         "fallbak = 1\n", "agencies.0.fallbak"),
    ],
)
def test_unknown_fields_are_refused_anywhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str, where: str
) -> None:
    settings_file(tmp_path, monkeypatch, body)
    with pytest.raises(SettingsError) as err:
        load_for_daemon()
    assert f"  {where}: Extra inputs are not permitted" in str(err.value)


def test_every_settings_section_forbids_unknown_fields() -> None:
    from pydantic import BaseModel

    def sections(model: type[BaseModel]) -> Iterator[type[BaseModel]]:
        for field in model.model_fields.values():
            for arg in (field.annotation, *getattr(field.annotation, "__args__", ())):
                if isinstance(arg, type) and issubclass(arg, BaseModel):
                    yield arg
                    yield from sections(arg)

    found = set(sections(Settings))
    assert ApiToken in found and len(found) >= 12
    assert {m.__name__ for m in found if m.model_config.get("extra") != "forbid"} == set()


@pytest.mark.parametrize(
    "body",
    [
        # a token where a string is wanted, a wrong role beside it, a password of a wrong type
        f'[[api.tokens]]\ntoken = ["{SECRET}"]\nrole = "operator"\nname = "n"\n',
        f'[[api.tokens]]\ntoken = "{SECRET}"\nrole = "{SECRET}"\nname = "n"\n',
        f'[ari]\npassword = ["{SECRET}"]\n',
        f'[ari]\npassword = "x"\nmax_connections = "{SECRET}"\n',
        f'[database]\nurl = ["{SECRET}"]\n',
        f'[mqtt]\npassword = ["{SECRET}"]\n',
    ],
)
def test_a_settings_error_never_echoes_the_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str
) -> None:
    settings_file(tmp_path, monkeypatch, body)
    with pytest.raises(ValidationError) as raw:
        Settings()
    assert SECRET in str(raw.value), "pydantic's own message echoes the value (the control)"
    with pytest.raises(SettingsError) as err:
        load()
    assert SECRET not in str(err.value)
    assert "bad settings" in str(err.value)


def test_an_unparsable_environment_value_is_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIAGA112_API__TOKENS", f"[{{{SECRET}")  # not JSON
    with pytest.raises(SettingsError) as err:
        load()
    assert SECRET not in str(err.value)
    assert "api" in str(err.value)


def test_the_error_names_the_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings_file(tmp_path, monkeypatch, '[queue]\nring_timeout = -1\n')
    with pytest.raises(SettingsError, match=r"queue\.ring_timeout: Input should be greater"):
        load()


def test_a_desk_media_watch_too_short_to_be_safe_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings_file(tmp_path, monkeypatch, '[queue]\ndesk_media_timeout = 0.5\n')
    with pytest.raises(SettingsError, match=r"queue\.desk_media_timeout: .*at least 2 s"):
        load()
    for fine in ("0", "2", "10"):
        settings_file(tmp_path, monkeypatch, f"[queue]\ndesk_media_timeout = {fine}\n")
        assert load().queue.desk_media_timeout == float(fine)


def test_siaga112_run_exits_2_naming_the_problem_without_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings_file(tmp_path, monkeypatch, token(SECRET[:10]))
    with pytest.raises(SystemExit) as exit_:
        cli.main(["run"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "ari.password" in err and "api.tokens.0.token" in err
    assert SECRET[:10] not in err


def test_siaga112_run_without_a_file_asks_for_defaults(
    capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["start"])
    assert exit_.value.code == 2
    assert "--defaults" in capsys.readouterr().err


def test_the_records_cli_names_a_database_it_cannot_use(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """No traceback: which database (without its password) and why, exit 1."""
    from siaga112.records import cli as records_cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SIAGA112_CONFIG", raising=False)
    monkeypatch.setenv("SIAGA112_DATABASE__URL",
                       "postgresql+asyncpg://siaga112:s3cret@127.0.0.1:1/siaga112")
    assert records_cli.main(["calls", "list"]) == 1
    err = capsys.readouterr().err
    assert "records database postgresql+asyncpg://siaga112:***@127.0.0.1:1/siaga112" in err
    assert "s3cret" not in err and "Traceback" not in err


@pytest.mark.parametrize(("value", "said"), [
    ("-0.1", "greater than or equal to 0"), ("5", "less than or equal to 1"),
    ("'soon'", "valid number")])
def test_an_mqtt_linger_out_of_bounds_is_refused_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str, said: str
) -> None:
    # Every event would wait that long for a window: seconds out of bounds are a typo.
    settings_file(tmp_path, monkeypatch, ARI + f"[mqtt]\nlinger = {value}\n")
    with pytest.raises(SettingsError) as err:
        load_for_daemon()
    assert "mqtt.linger" in str(err.value) and said in str(err.value)


def test_the_mqtt_linger_reaches_the_notifier(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from siaga112.notifier import MqttNotifier

    settings_file(tmp_path, monkeypatch, ARI + "[mqtt]\nlinger = 0.25\n")
    assert MqttNotifier(load_for_daemon().mqtt)._linger == 0.25
    assert MqttNotifier(Settings().mqtt.model_copy(update={"linger": 0.0}))._linger == 0.0


def test_the_event_loop_is_uvloop_unless_told_and_a_wrong_name_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    import uvloop

    settings_file(tmp_path, monkeypatch, ARI + token(GOOD_TOKEN))
    chosen = load_for_daemon().event_loop
    loop = cli._loop_factory(chosen)()
    assert (chosen, isinstance(loop, uvloop.Loop)) == ("uvloop", True)
    loop.close()
    settings_file(tmp_path, monkeypatch, 'event_loop = "asyncio"\n' + ARI + token(GOOD_TOKEN))
    loop = cli._loop_factory(load_for_daemon().event_loop)()
    assert isinstance(loop, asyncio.BaseEventLoop) and not isinstance(loop, uvloop.Loop)
    loop.close()
    settings_file(tmp_path, monkeypatch, 'event_loop = "tokio"\n' + ARI + token(GOOD_TOKEN))
    with pytest.raises(SettingsError, match=r"event_loop"):
        load_for_daemon()
