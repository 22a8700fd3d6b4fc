#!/usr/bin/env bash
# Install the third-party gRPC tools the interop tests (tests/e2e/test_interop_tools.py)
# drive against a real sidecar: grpcurl, grpc_health_probe and ghz, into .tools/bin
# (git-ignored).
#
# Built from source with `go install module@version` through the Go module proxy (no
# release downloads), pinned below. Idempotent: a binary already there is kept when
# `go version -m` says it was built from the pinned module version, so a warm run only
# reads three binaries' build info. A missing or different binary is rebuilt into a
# scratch directory and renamed into place, so an interrupted build never leaves a
# half-written tool behind.
#
#     scripts/install_tools.sh          # `make tools` runs this
#
# Sourced (benchmarks/peers/install_opa.sh does), it only defines require_go and
# install_go_tool, for another pinned tool built the same way into .tools/bin.
set -euo pipefail

# binary name | `go install` package | its module | version
TOOLS=(
  "grpcurl           github.com/fullstorydev/grpcurl/cmd/grpcurl       github.com/fullstorydev/grpcurl            v1.9.4"
  "grpc_health_probe github.com/grpc-ecosystem/grpc-health-probe       github.com/grpc-ecosystem/grpc-health-probe v0.4.62"
  "ghz               github.com/bojand/ghz/cmd/ghz                     github.com/bojand/ghz                      v0.120.0"
)

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="$ROOT/.tools/bin"
ME="${0#"$ROOT"/}"  # the script run, for the error lines

# Exits unless go is on PATH; $1: what it is needed for.
require_go() {
  if ! command -v go >/dev/null 2>&1; then
    echo "error: $ME: \`go\` is not on PATH; install Go (1.26) to build $1" >&2
    exit 1
  fi
}

# The module version $1 (a binary) was built from, if it was built from module $2.
built_version() {
  go version -m "$1" 2>/dev/null | awk -v module="$2" '$1 == "mod" && $2 == module { print $3 }'
}

# install_go_tool NAME PACKAGE MODULE VERSION [NOTE]: .tools/bin/NAME built by
# `go install PACKAGE@VERSION`, unless it is there already built from MODULE VERSION. NOTE
# is added to the "installing" line (e.g. how long a build takes).
install_go_tool() {
  local name="$1" package="$2" module="$3" version="$4" note="${5:-}"
  local target="$BIN/$name" scratch built
  mkdir -p "$BIN"
  if [[ -x "$target" ]] && [[ "$(built_version "$target" "$module")" == "$version" ]]; then
    return 0
  fi
  echo "installing $package@$version into .tools/bin/$name${note:+ ($note)}" >&2
  scratch="$(mktemp -d "$BIN/.install.XXXXXX")"
  # Static binaries, no C compiler needed; the package's own go.mod and go.sum decide
  # every dependency, checked against the checksum database.
  if ! GOBIN="$scratch" CGO_ENABLED=0 go install "$package@$version"; then
    rm -rf "$scratch"
    echo "error: $ME: go install $package@$version failed" >&2
    exit 1
  fi
  built=("$scratch"/*)  # go names the binary after the package's last path element
  if [[ ${#built[@]} -ne 1 || ! -x "${built[0]}" ]]; then
    rm -rf "$scratch"
    echo "error: $ME: go install $package@$version made no binary" >&2
    exit 1
  fi
  mv -f "${built[0]}" "$target"
  rm -rf "$scratch"
}

if [[ "${BASH_SOURCE[0]}" != "$0" ]]; then
  return 0  # sourced: the functions only
fi

require_go "grpcurl, grpc_health_probe and ghz for the interop tests"
for tool in "${TOOLS[@]}"; do
  read -r name package module version <<<"$tool"
  install_go_tool "$name" "$package" "$module" "$version"
done
