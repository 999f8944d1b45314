#!/usr/bin/env bash
# First-time set-up on a fresh Debian 12 machine: what the Makefile needs before Python runs.
# Idempotent: a second run only checks. Root or sudo.
set -euo pipefail
say() { echo "[siaga112] $*" >&2; }
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

need=()
# Debian's python3 (the Makefile's PYTHON), whatever else PATH has first.
[ -x /usr/bin/python3 ] || need+=(python3)
/usr/bin/python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
command -v sipp >/dev/null || need+=(sip-tester)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v espeak-ng >/dev/null || need+=(espeak-ng)
command -v sox >/dev/null || need+=(sox)
command -v mosquitto >/dev/null || need+=(mosquitto)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v curl >/dev/null || need+=(curl)
[ -x /usr/sbin/kamailio ] || need+=(kamailio)   # the cluster's SIP proxy (docs/cluster.md)
[ -x /usr/bin/chromium ] || need+=(chromium)  # the web console's browser tests (Playwright)
# Services of the packages this run installs that were not running before it.
active() { command -v systemctl >/dev/null && systemctl is-active --quiet "$1" 2>/dev/null; }
was_active=()
for svc in mosquitto postgresql kamailio; do
  if active "$svc"; then was_active+=("$svc"); fi
done
if [ ${#need[@]} -gt 0 ]; then
  say "installing Debian packages: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# Debian's mosquitto, postgresql and kamailio packages start (or enable) system services on
# the ports our own servers use (kamailio: 5060, the PBX's). Only a service that installing the package just now started is
# stopped and disabled, and that is written down; a service the machine already had (or that
# was running before) is the machine's own and is left alone: the stack then says the port is
# taken and by whom.
record="$(cd "$(dirname "$0")/.." && pwd)/var/bootstrap-services.log"
for svc in mosquitto postgresql kamailio; do
  case " ${need[*]-} " in *" $svc "*) ;; *) continue ;; esac
  case " ${was_active[*]-} " in *" $svc "*) continue ;; esac
  if active "$svc"; then
    say "stopping and disabling the system $svc service that installing the $svc package just" \
        "started (the project runs its own on loopback); undo: systemctl enable --now $svc"
    $SUDO systemctl disable --now "$svc" >/dev/null 2>&1 || $SUDO systemctl stop "$svc" || true
    mkdir -p "$(dirname "$record")"
    echo "$(date -u +%FT%TZ) bootstrap installed $svc; its service auto-started; stopped and" \
         "disabled it (undo: systemctl enable --now $svc)" >> "$record"
    say "written to $record"
  elif command -v systemctl >/dev/null && systemctl is-enabled --quiet "$svc" 2>/dev/null; then
    # Installed enabled but not started (no init running, or policy-rc.d): it would take the
    # port at the next boot.
    say "disabling the system $svc service that installing the $svc package just enabled" \
        "(undo: systemctl enable $svc)"
    $SUDO systemctl disable "$svc" >/dev/null 2>&1 || true
    mkdir -p "$(dirname "$record")"
    echo "$(date -u +%FT%TZ) bootstrap installed $svc; its service was enabled, not started;" \
         "disabled it (undo: systemctl enable $svc)" >> "$record"
  fi
done
