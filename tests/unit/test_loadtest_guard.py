"""The load test and the bench refuse a PBX that is not the local test PBX (their drain hangs
up every channel of the PBX they load) unless told so explicitly."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from siaga112_testkit import cli
from siaga112_testkit.loadtest.cli import NOT_TEST_PBX_FLAG, not_the_test_pbx

LOCAL_ARI = "http://127.0.0.1:8088/ari"
PASSWORD = "generated-for-the-local-test-pbx"


def test_the_local_test_pbx_is_accepted() -> None:
    assert not_the_test_pbx(LOCAL_ARI, PASSWORD, "127.0.0.1:5060", PASSWORD, True) == []


@pytest.mark.parametrize(
    ("ari_url", "password", "sip", "local_password", "running", "reason"),
    [
        ("http://10.0.0.5:8088/ari", PASSWORD, "127.0.0.1:5060", PASSWORD, True, "ari.url"),
        (LOCAL_ARI, PASSWORD, "10.0.0.5:5060", PASSWORD, True, "--pbx 10.0.0.5:5060"),
        # a production Asterisk on this very host: ARI on loopback, its own password
        (LOCAL_ARI, "the-centre-s-password", "127.0.0.1:5060", PASSWORD, True, "ari.password"),
        (LOCAL_ARI, PASSWORD, "127.0.0.1:5060", None, True, "ari.password"),
        (LOCAL_ARI, PASSWORD, "127.0.0.1:5060", PASSWORD, False, "not running"),
    ],
)
def test_anything_else_is_refused_with_the_reason(
    ari_url: str, password: str, sip: str, local_password: str | None, running: bool,
    reason: str,
) -> None:
    reasons = not_the_test_pbx(ari_url, password, sip, local_password, running)
    assert len(reasons) == 1 and reason in reasons[0]


@pytest.mark.parametrize("command", ["load-test", "bench"])
def test_the_commands_refuse_before_touching_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    command: str,
) -> None:
    config = tmp_path / "prod.toml"
    config.write_text(f'state_dir = "{tmp_path}"\n[ari]\nurl = "http://10.0.0.5:8088/ari"\n'
                      'password = "the-centre-s-real-password"\n')
    monkeypatch.setenv("SIAGA112_CONFIG", str(config))
    monkeypatch.setattr("siaga112.logs.configure", lambda *a: None)  # keep pytest's logging
    umask = os.umask(0o022)
    try:
        with pytest.raises(SystemExit) as exit_:
            cli.main([command, "--reports", str(tmp_path / "reports")])
    finally:
        os.umask(umask)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "refusing to load a PBX that is not the local test PBX" in err
    assert "ari.url http://10.0.0.5:8088/ari is not on loopback" in err
    assert NOT_TEST_PBX_FLAG in err
    assert "the-centre-s-real-password" not in err
    assert not (tmp_path / "reports").exists()
