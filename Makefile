# Two entry points for a fresh machine: `make demo` and `make test`. Both build .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_OUT ?= demo_out

.PHONY: demo test test-fast lint install

# torch goes first and pinned, through pip, which finds the CPU wheel where the machine keeps one: anything
# else would pull a multi-GB CUDA build. uv then resolves and installs the rest about four times faster
# than pip, keeping the installed torch; pip stays the fallback where uv cannot run. Byte-compiling is left
# to first import, which touches a fraction of the files.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --no-compile -c constraints.txt torch==2.13.0 uv==0.13.9
	$(BIN)/uv pip install -q --python $(BIN)/python -c constraints.txt -e '.[dev]' \
		|| $(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/anatomy-r1 demo --out $(DEMO_OUT)

test: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
