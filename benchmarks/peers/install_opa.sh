#!/usr/bin/env bash
# Build OPA, pinned, into .tools/bin/opa for benchmarks/peers (make bench-peers).
#
# By scripts/install_tools.sh's install_go_tool (sourced): `go install module@version` through
# the Go module proxy (no release download), into a scratch directory renamed into place, so
# an interrupted build leaves no half-written binary. Idempotent: a binary already there is
# kept when `go version -m` says it was built from the pinned module version (a warm run
# costs one read of its build info). A cold build takes a few minutes on 2 cores.
#
# It also asks the proxy, once per checkout, whether OPA-Envoy (the ext_authz gRPC API) is
# there (`go list -m -versions`); the answer is written to .tools/opa-envoy.txt, which the
# report quotes. That module is never built here (benchmarks/README.md, "Side by side").
#
#     bash benchmarks/peers/install_opa.sh
set -euo pipefail

MODULE=github.com/open-policy-agent/opa
VERSION=v1.22.3
ENVOY_MODULE=github.com/open-policy-agent/opa-envoy-plugin

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
source "$ROOT/scripts/install_tools.sh"  # require_go, install_go_tool (and BIN)

require_go "OPA $VERSION"
install_go_tool opa "$MODULE" "$MODULE" "$VERSION" "a few minutes"

# OPA-Envoy: asked once, the answer kept (a later run reads the file, no network).
ENVOY_NOTE="$ROOT/.tools/opa-envoy.txt"
if [[ ! -s "$ENVOY_NOTE" ]]; then
  if answer="$(GOFLAGS=-mod=mod go list -m -versions "$ENVOY_MODULE" 2>&1)"; then
    echo "listed: $answer" >"$ENVOY_NOTE"
  else
    echo "refused: go list -m -versions $ENVOY_MODULE: $(echo "$answer" | tail -n 1)" \
      >"$ENVOY_NOTE"
  fi
  echo "OPA-Envoy on the module proxy: $(cat "$ENVOY_NOTE")" >&2
fi
