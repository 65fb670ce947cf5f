# The two commands: `make run` installs and starts the gateway; `make test` installs and tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# The lowest aiohttp pyproject.toml admits: CI runs the suite against it too (make test-lowest).
AIOHTTP_LOWEST := 3.14.4
LOWEST := .venv-lowest

.PHONY: run test test-lowest test-fallback test-pure-python check format install clean bench-cache bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/parallel-gateway serve $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The suite again, against the lowest aiohttp in range, in a venv of its own.
$(LOWEST)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(LOWEST)
	$(LOWEST)/bin/python -m pip install --quiet --upgrade pip
	$(LOWEST)/bin/python -m pip install --quiet -e '.[test]' 'aiohttp==$(AIOHTTP_LOWEST)'
	touch $(LOWEST)/.installed

test-lowest: $(LOWEST)/.installed
	$(LOWEST)/bin/python -m pytest $(PYTEST_ARGS)

# The suite with the fast path switched off (gateway/http/internals.py): every request goes
# through aiohttp's public stack, as where a private part differs; the answers are the same.
test-fallback: $(STAMP)
	GATEWAY_FAST_PATH=off $(BIN)/python -m pytest $(PYTEST_ARGS)

# The suite on aiohttp's pure-Python parsers: a request gets the same answer as on the C ones.
test-pure-python: $(STAMP)
	AIOHTTP_NO_EXTENSIONS=1 $(BIN)/python -m pytest $(PYTEST_ARGS)

check: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench-cache: $(STAMP)
	$(BIN)/python bench/cache_io.py

# The gateway against a bare aiohttp handler, then pass-through against a bare aiohttp proxy
# (ARGS="--quick" skips the 1,000,000-run case and the 5,000 open calls), then PostgreSQL
# against SQLite and replicas (it starts its own PostgreSQL server).
bench: $(STAMP)
	$(BIN)/python -m bench.serve_bench $(ARGS)
	$(BIN)/python -m bench.passthrough_bench $(ARGS)
	$(BIN)/python -m bench.replicas_bench $(ARGS)

clean:
	rm -rf $(VENV) $(LOWEST) .mypy_cache .ruff_cache .pytest_cache dist build
