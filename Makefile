# SynergAI Gateway: two commands on a fresh machine.
#   make demo   -> creates .venv, installs, runs the demo stack
#   make test   -> creates .venv, installs, runs lint + types + native + tests
#   make native -> compiles the hot modules with mypyc into build/native/ (used only while
#                  their sources are unchanged; a failed build leaves pure Python: gateway/native.py)
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint types native browser-deps test-slow loadtest clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel
	$(BIN)/pip install -q -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/synergai demo $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check gateway workers loadtest tests
	$(BIN)/ruff format --check gateway workers loadtest tests

types: $(STAMP)
	$(BIN)/mypy

# A failed build is reported and ignored: the tree then runs (and is tested) as pure Python.
native: $(STAMP)
	-$(BIN)/python -m gateway.native_build

test: lint types native browser-deps
	$(BIN)/pytest -q $(PYTEST_ARGS)

# Browser tests need Debian's chromium; install it when we can (root + apt), else they skip.
browser-deps:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
	  && (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) \
	  || echo "chromium not installed: browser tests will be skipped"; }

test-slow: $(STAMP)
	$(BIN)/pytest -q -m slow $(PYTEST_ARGS)

loadtest: $(STAMP)
	$(BIN)/synergai loadtest $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build/native
