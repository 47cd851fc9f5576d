# Two entry points for a fresh machine: `make demo` and `make test`.
# Both create .venv with the package and its test extras on first use.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: demo test lint typecheck format bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	@# An editable install leaves the sources uncompiled; where PYTHONDONTWRITEBYTECODE
	@# is set every start would compile them again (~0.25 s of each `rolldeck run`).
	$(BIN)/python -m compileall -q console screens inventory themes >/dev/null
	touch $@

# A demo that ends rolled back (4), aborted (5) or paused (6) did what the operator chose.
demo: $(VENV)/.installed
	@$(BIN)/rolldeck demo || test $$? -ge 4

# Two workers, each test file whole on one (its module fixtures, sshd, Prometheus):
# the suite waits on real servers and timers far more than it computes.
test: $(VENV)/.installed lint
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

# ruff, then the type checker and the import contracts (docs/architecture.md, "Layers").
lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

format: $(VENV)/.installed
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
