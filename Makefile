# The project's commands. `make test` installs everything and runs every test; CI calls it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install compile tools clients test-clients run test proto confusables bench bench-clients bench-peers

# Every client with a Makefile of its own (clients/python needs no build: its launchers run
# the venv's ess_client).
CLIENTS := $(patsubst clients/%/Makefile,%,$(wildcard clients/*/Makefile))

install: $(VENV)/.compiled node_modules/.installed tools

tools:  ## grpcurl, grpc_health_probe, ghz and OPA, pinned, built with Go into .tools/bin
	bash scripts/install_tools.sh
	bash benchmarks/peers/install_opa.sh

# Editable installs; the decision domain is compiled apart (below), so ESS_NO_MYPYC here.
$(VENV)/.installed: pyproject.toml setup.py clients/python/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	ESS_NO_MYPYC=1 $(BIN)/pip install --quiet -e clients/python -e '.[test]'
	$(BIN)/pip install --quiet $$($(BIN)/python -c "import tomllib; print(*(r for r in \
	  tomllib.load(open('pyproject.toml', 'rb'))['build-system']['requires'] if 'mypy' in r))")
	touch $@

# The decision domain (ess_sidecar/domain) compiled with mypyc next to its sources, as
# `pip install` of the repository compiles it (setup.py); again whenever a source changes.
# An extension module shadows its .py, so tests refuse a stale one (tests/conftest.py).
$(VENV)/.compiled: $(VENV)/.installed setup.py $(wildcard ess_sidecar/domain/*.py)
	$(BIN)/python setup.py --quiet build_ext --inplace
	# current now, even where the build found nothing to redo (none with ESS_NO_MYPYC=1)
	touch -c ess_sidecar/domain/*.so
	touch $@

compile: $(VENV)/.compiled  ## compile the decision domain in place (mypyc)

# buf is pinned exactly in package.json and its only dependencies are its exact-pinned
# platform binaries; no lock file, because `npm ci` insists on entries for every platform.
node_modules/.installed: package.json
	npm install --no-package-lock --no-audit --no-fund --loglevel=error
	touch $@

run: $(VENV)/.compiled  ## run the sidecar: 127.0.0.1:50051, state in ./state/ess.db
	$(BIN)/ess-sidecar serve

clients: $(VENV)/.installed node_modules/.installed  ## build each client's ess-check, ess-smoke, ess-bench
	@set -e; for lang in $(CLIENTS); do start=$$(date +%s); \
	  $(MAKE) --no-print-directory -C clients/$$lang; \
	  echo "clients/$$lang built in $$(( $$(date +%s) - start )) s"; done

test-clients: clients  ## each client's own unit tests, in its ecosystem's runner
	@set -e; for lang in $(CLIENTS); do start=$$(date +%s); \
	  $(MAKE) --no-print-directory -C clients/$$lang test; \
	  echo "clients/$$lang tested in $$(( $$(date +%s) - start )) s"; done

test: install tools clients  ## install everything and run every test
	$(MAKE) --no-print-directory test-clients
	$(BIN)/pytest

proto: $(VENV)/.installed node_modules/.installed  ## regenerate every committed stub from proto/
	$(BIN)/python scripts/gen_proto.py
	PYTHON=$(abspath $(BIN))/python scripts/gen_go.sh
	$(MAKE) -C clients/typescript proto

confusables: $(VENV)/.installed  ## rewrite ess_sidecar/domain/confusables.json from Unicode's data
	$(BIN)/python scripts/gen_confusables.py

bench: $(VENV)/.compiled  ## latency benchmark against a bare grpcio server
	$(BIN)/python benchmarks/check_latency.py

bench-clients: clients  ## every language's client, stream p50/p99 over UDS, 1 and 8 in flight
	$(BIN)/python benchmarks/clients.py

bench-peers: $(VENV)/.compiled tools  ## the sidecar beside bare grpcio and OPA: benchmarks/results/
	$(BIN)/pip install --quiet -r benchmarks/peers/requirements.txt
	$(BIN)/python benchmarks/peers/run.py $(PEERS_ARGS)
