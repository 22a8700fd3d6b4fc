# The project's commands. `make test` installs everything and runs every test; CI calls it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install tools run test proto bench

install: $(VENV)/.installed node_modules/.installed tools

tools:  ## grpcurl, grpc_health_probe and ghz, pinned, built with Go into .tools/bin
	bash scripts/install_tools.sh

$(VENV)/.installed: pyproject.toml clients/python/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e clients/python -e '.[test]'
	touch $@

# buf is pinned exactly in package.json and its only dependencies are its exact-pinned
# platform binaries; no lock file, because `npm ci` insists on entries for every platform.
node_modules/.installed: package.json
	npm install --no-package-lock --no-audit --no-fund --loglevel=error
	touch $@

run: $(VENV)/.installed  ## run the sidecar: 127.0.0.1:50051, state in ./state/ess.db
	$(BIN)/ess-sidecar serve

test: install tools  ## install everything and run every test
	$(BIN)/pytest

proto: $(VENV)/.installed  ## regenerate the Python and Go stubs from proto/
	$(BIN)/python scripts/gen_proto.py
	PYTHON=$(abspath $(BIN))/python scripts/gen_go.sh

bench: $(VENV)/.installed  ## latency benchmark against a bare grpcio server
	$(BIN)/python benchmarks/check_latency.py
