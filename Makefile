# pyair: `make dev` runs the demo under pyair, `make test` is what CI runs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
CODE   := supervisor tests benchmarks

.PHONY: dev test lint typecheck pytest browser bench soak clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

dev: $(STAMP)  ## run the bundled demo under pyair: http://127.0.0.1:8000
	$(BIN)/pyair -c .air.toml

lint: $(STAMP)
	$(BIN)/ruff check $(CODE)
	$(BIN)/ruff format --check $(CODE)

typecheck: $(STAMP)
	$(BIN)/mypy --strict supervisor

pytest: $(STAMP) browser
	$(BIN)/pytest

# The browser tests drive Debian's chromium through Playwright (Playwright's own browser
# download does not run here). CI runs as root on a clean Debian: install it there.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else \
	    echo "chromium is missing and this is not root: browser tests will be skipped" \
	         "(sudo apt-get install chromium)"; \
	  fi; }

test: lint typecheck pytest  ## what CI runs

bench: $(STAMP) browser  ## save->served latency vs peers; prints tables (takes a few minutes)
	$(BIN)/python -m benchmarks

soak: $(STAMP)
	$(BIN)/pytest -m soak -p no:cacheprovider

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
