# tablemover developer commands. `make demo` and `make test` work on a fresh Debian machine:
# they create .venv, install the Python dependencies and, when mariadbd is missing, mariadb-server.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=
DEMO_ARGS ?=

.PHONY: setup test unit lint demo demo-replica bench drill dist clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@command -v mariadbd >/dev/null 2>&1 || test -x /usr/sbin/mariadbd || { \
		echo ">>> mariadbd not found: installing mariadb-server from Debian packages"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mariadb-server >/dev/null; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

# The full suite: unit tests, integration tests against real mariadbd servers, crash drills.
# pytest exits 5 when it collected nothing; that is a failure here, never a silent pass.
test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "no tests were collected: failing"; exit 1; fi; exit $$rc

unit: setup
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check src tests bench drill loadkit compose
	$(BIN)/ruff format --check src tests bench drill loadkit compose
	$(BIN)/mypy --strict src

# The whole mission on local throwaway servers: copy under live writes, crash + resume, cutover, verify.
# DEMO_ARGS go to `tablemover demo` (make reads `make demo --replica` as its own option):
# `make demo DEMO_ARGS=--replica`, or `make demo-replica`, reads the move from a replica of the source.
demo: setup
	$(BIN)/tablemover demo $(DEMO_ARGS)

demo-replica: setup
	$(BIN)/tablemover demo --replica $(DEMO_ARGS)

# Benchmarks: JSON figures next to same-run server references (bench-results/bench.json).
bench: setup
	$(BIN)/python -m bench.run

# Crash drill: ROUNDS full moves under sysbench write load, SIGKILLed at random instants and in
# every cutover state, each checked by verify, an ordered dump diff and the binlog's RENAME count.
# Every other round keeps a rollback window open: writes on the target, a kill in a window state,
# then a rollback (source must equal the target's rolled-back tables) or the window elapsing.
ROUNDS ?= 20
drill: setup
	$(BIN)/python -m drill.run --rounds $(ROUNDS)

# The wheel that `deploy/install.sh` installs into /opt/tablemover (README: Installing as a service).
# Only pip is needed (no `setup`, no mariadbd); dependencies are resolved when the wheel is installed.
DIST ?= dist
dist:
	test -x $(BIN)/pip || $(PYTHON) -m venv $(VENV)
	rm -f $(DIST)/tablemover-*.whl
	$(BIN)/pip wheel -q --no-deps -w $(DIST) .
	@ls $(DIST)/tablemover-*.whl

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
