"""The whole local stack on loopback: prompts, test PBX, PostgreSQL (migrated), Mosquitto.

`up` is idempotent and quick when everything already runs; `down` stops each part by its pid.
It also writes the dev settings file (state_dir/siaga112.toml, 0600) with a fresh admin API token
(and, for the web console, op1's desk token and a supervisor token: var/api-token-op1,
var/api-token-supervisor),
the test PBX's generated ARI password and the database URL with the project role's generated
password, so that `siaga112 run` with SIAGA112_CONFIG pointing there talks to this stack.

The test kit has its own data: the database ``siaga112_test`` (migrated here too) and the settings
file state_dir/siaga112-test.toml (that database, the MQTT prefix ``test/siaga112``, its own state
dir), which the test session puts in SIAGA112_CONFIG. The operator's ``siaga112`` sees real calls
only.
"""

from __future__ import annotations

import secrets
import sys
from pathlib import Path

from pydantic import SecretStr

from siaga112.settings import AriSettings
from siaga112_testkit.checkout import repo_root
from siaga112_testkit.devstack import procs
from siaga112_testkit.devstack.mosquitto import MosquittoServer, ensure_mosquitto
from siaga112_testkit.devstack.pbx import Pbx
from siaga112_testkit.devstack.postgres import (
    ensure_postgres,
    postgres_status,
    stop_postgres,
    test_database_url,
)
from siaga112_testkit.devstack.procs import say

PG_PORT = 5432
MQTT_PORT = 1883
TEST_SETTINGS = "siaga112-test.toml"
TEST_TOPIC_PREFIX = "test/siaga112"


def build_sounds(repo: Path) -> None:
    from siaga112.prompts import build_prompts

    procs.apt_install(["espeak-ng", "sox"])  # the product only says they are missing
    made = build_prompts(repo / "build/sounds")
    if made:
        say(f"generated {len(made)} voice prompts (espeak-ng, Bahasa Indonesia)")


def up(repo: Path, state_dir: Path) -> Path:
    state_dir.mkdir(parents=True, exist_ok=True)
    steps = 5
    say(f"[1/{steps}] voice prompts")
    procs.apt_install(["espeak-ng", "sox", "sip-tester"])
    build_sounds(repo)
    say(f"[2/{steps}] test PBX")
    pbx = Pbx(repo=repo, state_dir=state_dir)
    pbx.up()
    say(f"[3/{steps}] PostgreSQL on 127.0.0.1:{PG_PORT}")
    url = ensure_postgres(state_dir, PG_PORT)
    say(f"[4/{steps}] database schema (siaga112, and siaga112_test for the tests)")
    from siaga112.records.migrate import upgrade

    test_url = test_database_url(state_dir, PG_PORT)
    upgrade(url)
    upgrade(test_url)
    say(f"[5/{steps}] Mosquitto on 127.0.0.1:{MQTT_PORT}")
    ensure_mosquitto(state_dir, MQTT_PORT)
    conf = write_dev_settings(state_dir, url, pbx)
    write_dev_settings(state_dir, test_url, pbx, test=True)
    tighten(state_dir, pbx)
    say(f"stack up; settings in {conf}")
    return conf


def tighten(state_dir: Path, pbx: Pbx) -> None:
    """Files holding callers' numbers that an older siaga112 left readable by everyone: logs,
    the fallback journal, recordings. New ones are made 0640 (procs.UMASK); servers started
    before that keep writing to these with the mode set here."""
    logs = [*state_dir.glob("*.log"), *state_dir.glob("*/*.log"), pbx.fallback_journal]
    for path in logs:
        if path.is_file() and path.stat().st_mode & 0o007:
            path.chmod(0o640)
    for directory in (pbx.recordings, pbx.fallback_journal.parent):
        if directory.is_dir():
            directory.chmod(0o750)
            for f in directory.iterdir():
                if f.is_file() and f.stat().st_mode & 0o007:
                    f.chmod(0o640)


def write_dev_settings(state_dir: Path, db_url: str, pbx: Pbx, test: bool = False) -> Path:
    """state_dir/siaga112.toml; with test, the test kit's state_dir/siaga112-test.toml (its own
    database, MQTT prefix and state dir, the same PBX and admin token)."""
    conf = state_dir / (TEST_SETTINGS if test else "siaga112.toml")
    token = _token(state_dir / "api-token")
    # The web console's: op1's desk (an operator token bound to its desk phone), a supervisor.
    op1_token = _token(state_dir / "api-token-op1")
    supervisor_token = _token(state_dir / "api-token-supervisor")
    procs.write_private(conf, (
        "# Written by `siaga112-testkit stack up` for the local stack. Do not edit: it is "
        "rewritten.\n"
        "# 0600: it holds the admin token and the stack's passwords.\n"
        f'state_dir = "{state_dir / "test" if test else state_dir}"\n'
        f'fallback_journal = "{pbx.fallback_journal}"\n'
        'log_format = "json"\n\n'
        "[ari]\n"
        f'password = "{pbx.ari_password()}"\n\n'
        "[database]\n"
        f'url = "{db_url}"\n\n'
        + (f'[mqtt]\ntopic_prefix = "{TEST_TOPIC_PREFIX}"\n\n' if test else "") +
        "[recording]\n"
        f'dir = "{pbx.recordings}"\n\n'
        "[queue]\n"
        "# The loopback topology's desk phones are SIPp, which sends no media unless told: "
        "unwatched.\n"
        "# A real centre keeps the default (queue.desk_media_timeout, settings.py).\n"
        "desk_media_timeout = 0\n\n"
        "[[api.tokens]]\n"
        f'token = "{token}"\n'
        'role = "admin"\n'
        'name = "local admin"\n\n'
        "[[api.tokens]]\n"
        f'token = "{op1_token}"\n'
        'role = "operator"\n'
        'name = "op1 desk"\n'
        'desk = "op1"\n\n'
        "[[api.tokens]]\n"
        f'token = "{supervisor_token}"\n'
        'role = "supervisor"\n'
        'name = "local supervisor"\n'
    ))
    return conf


def _token(path: Path) -> str:
    """The API token kept in `path` (0600), made once."""
    if not path.exists():
        procs.write_private(path, secrets.token_urlsafe(24) + "\n")
    path.chmod(0o600)
    return path.read_text().strip()


def dev_ari_settings(state_dir: Path) -> AriSettings:
    """The ARI user of the test PBX started from state_dir (its generated password)."""
    password = Pbx(repo=repo_root(), state_dir=state_dir).ari_password()
    return AriSettings(password=SecretStr(password))


def down(repo: Path, state_dir: Path) -> None:
    daemon_pid = state_dir / "siaga112.pid"
    if procs.stop_pid(daemon_pid, timeout=15):
        say("daemon stopped")
    if MosquittoServer(state_dir, MQTT_PORT).stop():
        say("Mosquitto stopped")
    if stop_postgres(state_dir):
        say("PostgreSQL stopped")
    if Pbx(repo=repo, state_dir=state_dir).down():
        say("test PBX stopped")


def status(repo: Path, state_dir: Path) -> int:
    pbx = Pbx(repo=repo, state_dir=state_dir)
    print(pbx.status().splitlines()[0])
    pg = postgres_status(state_dir)
    print(f"PostgreSQL: up (pid {pg.pid}) on 127.0.0.1:{pg.port}" if pg.running
          else "PostgreSQL: down")
    mq = MosquittoServer(state_dir, MQTT_PORT)
    print(f"Mosquitto: {f'up (pid {mq.pid})' if mq.running else 'down'}")
    pid = procs.read_pid(state_dir / "siaga112.pid")
    print(f"daemon: {f'up (pid {pid})' if pid else 'down'}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(status(repo_root(), repo_root() / "var"))
