# The two commands of README: `make run` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint typecheck pytest install clean bench

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	# MicroPython stubs for type-checking the firmware, kept out of the venv (they
	# replace the standard library's stubs)
	# Debian's Chromium for the page tests (root with apt-get only; otherwise they skip)
	command -v chromium >/dev/null || ! command -v apt-get >/dev/null || [ "$$(id -u)" != 0 ] || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)
	# Debian's docker-compose and caddy validate docker-compose.yml and the Caddyfile (tests/test_deploy.py)
	{ command -v docker-compose >/dev/null && command -v caddy >/dev/null; } || ! command -v apt-get >/dev/null || \
	  [ "$$(id -u)" != 0 ] || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	  apt-get install -y -qq --no-install-recommends docker-compose caddy >/dev/null)
	rm -rf .mpy-stubs
	$(BIN)/python -m pip install --quiet --target .mpy-stubs 'micropython-esp32-stubs==1.29.*'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/gridtokenx up

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy platform/gridtokenx gateway-hub/gridtokenx simulator/gridtokenx programs/gridtokenx firmware/linux
	$(BIN)/mypy --config-file firmware/mypy.ini firmware/gtx firmware/main.py firmware/bootslot.py

pytest: $(STAMP)
	$(BIN)/pytest -q

test: lint typecheck pytest

bench: $(STAMP)
	$(BIN)/gridtokenx bench clearing --orders 1000000 --json
	$(BIN)/gridtokenx bench cda --orders 1000000 --json

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
