# The two commands of the README: `make demo` and `make test`. Each creates or refreshes the
# local .venv from constraints.txt when needed.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-slow lint lock clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt scripts/setup.sh
	scripts/setup.sh "$(VENV)" "$(PYTHON)"
	@touch $@

demo: $(STAMP)
	$(BIN)/icportrait demo --out icportrait-demo

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q --runslow

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/lint-imports
	$(BIN)/ruff format --check src tests benchmarks

# Re-pin every package in constraints.txt from the current environment.
lock: $(STAMP)
	@{ echo "# Pinned dependency set, made by 'make lock' from a working .venv (Python 3.11)."; \
	   echo "# torch==2.13.0 is the CPU build; the set-up installs it first (scripts/setup.sh)."; \
	   $(BIN)/python -m pip freeze --exclude-editable | sed -e 's/+cpu$$//'; } > constraints.txt.tmp
	mv constraints.txt.tmp constraints.txt

clean:
	rm -rf $(VENV) icportrait-demo .pytest_cache .ruff_cache
