# Siaga112 -- two commands on a fresh Debian 12 machine (root or sudo):
#   make run    everything up on loopback, the daemon in the foreground
#   make test   every test, against a real Asterisk, PostgreSQL and Mosquitto
# Both install what is missing and are idempotent. See README.md.

# Debian's own interpreter, not the first python3 on PATH: apt keeps it patched, and it is built
# with PGO and LTO. On the bench machine a pyenv build (no PGO, shared libpython) came first on
# PATH and cost the daemon 15-56% more CPU per call at 40 calls/s (median 22%, five A/B
# pairs; docs/load-testing.md).
PYTHON ?= /usr/bin/python3
VENV   := .venv
BIN    := $(VENV)/bin

# A venv made by another interpreter (Debian's python3 upgraded to a new version, or another
# PYTHON=) cannot import what was installed in it: it is made again, once, by the next make.
VENV_PYTHON := $(shell sed -n 's/^executable *= *//p' $(VENV)/pyvenv.cfg 2>/dev/null)
WANT_PYTHON := $(shell readlink -f $(PYTHON) 2>/dev/null)
ifneq ($(VENV_PYTHON),)
ifneq ($(WANT_PYTHON),)
ifneq ($(shell readlink -f $(VENV_PYTHON)),$(WANT_PYTHON))
$(info [siaga112] $(VENV) was made with $(VENV_PYTHON), PYTHON is $(WANT_PYTHON): making it again)
$(shell rm -rf $(VENV))
endif
endif
endif
STATE  := $(CURDIR)/var
export SIAGA112_CONFIG := $(STATE)/siaga112.toml

# load-test knobs (see README)
PBX       ?= 127.0.0.1:5060
RATE      ?= 5
CALLS     ?= 100
DURATION  ?= 0
HOLD      ?= 3000
OPERATORS ?= 8

.PHONY: stack run up down status test test-fuzz test-quick lint load-test bench cluster cluster-down cluster-status

$(VENV)/.installed: pyproject.toml setup.py testkit/pyproject.toml scripts/bootstrap.sh
	@scripts/bootstrap.sh
	@test -x $(BIN)/python || { echo "[siaga112] creating the virtual environment"; $(PYTHON) -m venv $(VENV); }
	@echo "[siaga112] installing Python dependencies"
	@$(BIN)/pip install -q --disable-pip-version-check -e '.[dev]' -e ./testkit
	@touch $@

$(STATE)/siaga112.toml: $(VENV)/.installed
	@$(BIN)/siaga112-testkit stack up

stack: $(VENV)/.installed
	@$(BIN)/siaga112-testkit stack up

run: stack
	$(BIN)/siaga112 run

up: stack
	@$(BIN)/siaga112 start

down:
	@if [ -x $(BIN)/siaga112-testkit ]; then $(BIN)/siaga112-testkit stack down; fi

status:
	@$(BIN)/siaga112-testkit stack status

# Lint first: CI runs `make test`, so ruff and mypy (with the unit tests' fakes, checked
# against the real interfaces) are checked on every run. The stack starts meanwhile (its
# servers mostly wait while mypy takes a core: about 10 s of a fresh clone's run saved).
# Then the slowest fuzz tests (10,000 cases an input, no stack: about 85 s of one CPU) run
# beside every other test but the integration tests (the unit, records and MQTT tests and the
# other fuzz tests: about 95 s of the other CPU), never beside the integration tests: their
# timelines are written for the host they have (docs/load-testing.md, seventeenth and
# twenty-first rounds). Every part runs even when one fails; make test fails if any did.
FUZZ_APART := $(addprefix tests/fuzz/,test_api_fuzz.py test_location_fuzz.py test_journal_fuzz.py test_fallback_fuzz.py)

test:
	@$(MAKE) --no-print-directory -j2 stack lint
	@$(MAKE) --no-print-directory -j2 -k -Otarget test-fuzz test-quick; quick=$$?; \
	  $(BIN)/pytest tests/integration; integration=$$?; \
	  [ $$quick -eq 0 ] && [ $$integration -eq 0 ]

test-fuzz:
	@nice -n 10 $(BIN)/pytest $(FUZZ_APART)

test-quick:
	@$(BIN)/pytest --ignore=tests/integration $(addprefix --ignore=,$(FUZZ_APART))

lint: $(VENV)/.installed
	@echo "[siaga112] ruff and mypy"
	@$(BIN)/ruff check -q src testkit/src tests
	@$(BIN)/mypy src testkit/src tests/fakes.py tests/unit

load-test: stack
	@$(BIN)/siaga112-testkit load-test --pbx $(PBX) --rate $(RATE) --calls $(CALLS) --duration $(DURATION) --hold $(HOLD) --operators $(OPERATORS)

bench: stack
	@$(BIN)/siaga112-testkit bench

# The cluster on loopback (docs/cluster.md): Kamailio on 127.0.0.1:5060, Asterisk nodes on
# 127.0.0.11 and 127.0.0.12, daemons a (API :8112) and b (:8113). It takes the single PBX's
# SIP address: run `make down` first; `make cluster-down` stops it again.
cluster: $(STATE)/siaga112.toml
	@$(BIN)/siaga112-testkit pbx down
	@$(BIN)/siaga112-testkit cluster up

cluster-down:
	@if [ -x $(BIN)/siaga112-testkit ]; then $(BIN)/siaga112-testkit cluster down; fi

cluster-status:
	@$(BIN)/siaga112-testkit cluster status
