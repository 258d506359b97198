# The two commands of the README: `make demo` (the main job) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
DEMO_ARGS ?=

.PHONY: setup demo test test-unit lint bench clean

$(VENV)/.installed: pyproject.toml scripts/setup.sh
	bash scripts/setup.sh "$(VENV)" "$(PYTHON)"
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(PY) -m trunkline.demo $(DEMO_ARGS)

test: setup
	bash scripts/system-deps.sh
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q
	# the compiled hot loops off: the same integrity, fault and resume tests on the Python
	# loop, and the collector's receive process on its recvfrom loop
	TRUNKLINE_NATIVE=0 $(PY) -m pytest -q tests/integration/test_mover_hostile.py \
	  tests/integration/test_mover_faults.py tests/integration/test_mover_resume.py \
	  tests/integration/test_direct_io.py tests/integration/test_flows_udp.py

test-unit: setup
	$(PY) -m pytest -q tests/unit

lint: setup
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/lint-imports

bench: setup
	$(PY) bench/mover.py

clean:
	rm -rf $(VENV) build dist .pytest_cache
