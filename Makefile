# The two commands of the README: `make demo` (the main job) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
DEMO_ARGS ?=

.PHONY: setup demo test test-unit lint bench clean

$(VENV)/.installed: pyproject.toml scripts/setup.sh
	bash scripts/setup.sh "$(VENV)" "$(PYTHON)"
	touch $@

# the source tree's bytecode, refreshed at each make (only what changed is compiled
# again): an editable install imports from src/, and where PYTHONDONTWRITEBYTECODE is
# set, as on this project's machines, no process writes it, so each one compiled every
# module it imported from source: ~50 ms of a one-object `cp` that takes ~0.1 s without
# it (bench/RESULTS.md). A wheel's install compiles its own.
setup: $(VENV)/.installed
	@$(PY) -m compileall -q -j 0 src

demo: setup
	$(PY) -m trunkline.demo $(DEMO_ARGS)

# the integration and system files whose checks read no clock: they run two at a time
# beside the pure cores (one file per worker)
BATCH := tests/integration/test_flows_rollups.py tests/integration/test_flows_lake.py \
  tests/integration/test_flows_elephant_table.py tests/integration/test_flows_lens_exact.py \
  tests/system/test_flows_lens_enrich.py tests/integration/test_mover_roundtrip.py \
  tests/integration/test_objects_verbs.py tests/integration/test_cp_auto_processes.py

test: setup
	bash scripts/system-deps.sh
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/lint-imports
	# two at a time where no check reads a clock (one process leaves CI's second core
	# idle), in one run so that the short files fill in beside the long ones: the pure
	# cores, the flow lens's batch tests (lake, rollups, elephant table, report), the
	# round trips and the object verbs; one file per worker. The tests with caps timed on
	# sockets, live collectors, kill loops and Ray one at a time
	$(PY) -m pytest -q -n 2 --dist loadfile tests/unit $(BATCH)
	$(PY) -m pytest -q tests/integration tests/system $(addprefix --ignore=,$(BATCH))
	# the compiled hot loops off: the same integrity, fault and resume tests on the Python
	# loop, and the collector's receive process on its recvfrom loop (8 kill -9 points per
	# direction instead of 20: the resume logic is the same, only the receive loop differs)
	TRUNKLINE_NATIVE=0 TRUNKLINE_RESUME_KILLS=8 $(PY) -m pytest -q \
	  tests/integration/test_mover_hostile.py \
	  tests/integration/test_mover_faults.py tests/integration/test_mover_resume.py \
	  tests/integration/test_direct_io.py tests/integration/test_flows_udp.py

test-unit: setup
	$(PY) -m pytest -q -n 2 tests/unit

lint: setup
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/lint-imports

bench: setup
	$(PY) bench/mover.py

clean:
	rm -rf $(VENV) build dist .pytest_cache
