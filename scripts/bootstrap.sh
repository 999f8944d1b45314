#!/usr/bin/env bash
# First-time set-up on a fresh Debian 12 machine: what the Makefile needs before Python runs.
# Idempotent: a second run only checks. Root or sudo.
set -euo pipefail
say() { echo "[siaga112] $*" >&2; }
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

need=()
command -v python3 >/dev/null || need+=(python3)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
command -v sipp >/dev/null || need+=(sip-tester)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v espeak-ng >/dev/null || need+=(espeak-ng)
command -v sox >/dev/null || need+=(sox)
command -v mosquitto >/dev/null || need+=(mosquitto)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v curl >/dev/null || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
  say "installing Debian packages: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# Debian's mosquitto and postgresql packages start system services on some machines; ours run
# on their own ports' defaults, so stop the packaged ones if they just started and hold them.
for svc in mosquitto postgresql; do
  if command -v systemctl >/dev/null && systemctl is-active --quiet "$svc" 2>/dev/null; then
    say "stopping the system $svc service: the project runs its own on loopback"
    $SUDO systemctl stop "$svc" || true
  fi
done
