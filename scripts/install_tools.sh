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
set -euo pipefail

# binary name | `go install` package | its module | version
TOOLS=(
  "grpcurl           github.com/fullstorydev/grpcurl/cmd/grpcurl       github.com/fullstorydev/grpcurl            v1.9.4"
  "grpc_health_probe github.com/grpc-ecosystem/grpc-health-probe       github.com/grpc-ecosystem/grpc-health-probe v0.4.62"
  "ghz               github.com/bojand/ghz/cmd/ghz                     github.com/bojand/ghz                      v0.120.0"
)

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="$ROOT/.tools/bin"

if ! command -v go >/dev/null 2>&1; then
  echo "error: scripts/install_tools.sh: \`go\` is not on PATH; install Go (1.26) to build" \
       "grpcurl, grpc_health_probe and ghz for the interop tests" >&2
  exit 1
fi

# The module version $1 (a binary) was built from, if it was built from module $2.
built_version() {
  go version -m "$1" 2>/dev/null | awk -v module="$2" '$1 == "mod" && $2 == module { print $3 }'
}

mkdir -p "$BIN"
for tool in "${TOOLS[@]}"; do
  read -r name package module version <<<"$tool"
  target="$BIN/$name"
  if [[ -x "$target" ]] && [[ "$(built_version "$target" "$module")" == "$version" ]]; then
    continue
  fi
  echo "installing $package@$version into .tools/bin/$name" >&2
  scratch="$(mktemp -d "$BIN/.install.XXXXXX")"
  # Static binaries, no C compiler needed; the package's own go.mod and go.sum decide
  # every dependency, checked against the checksum database.
  if ! GOBIN="$scratch" CGO_ENABLED=0 go install "$package@$version"; then
    rm -rf "$scratch"
    echo "error: scripts/install_tools.sh: go install $package@$version failed" >&2
    exit 1
  fi
  built=("$scratch"/*)  # go names the binary after the package's last path element
  if [[ ${#built[@]} -ne 1 || ! -x "${built[0]}" ]]; then
    rm -rf "$scratch"
    echo "error: scripts/install_tools.sh: go install $package@$version made no binary" >&2
    exit 1
  fi
  mv -f "${built[0]}" "$target"
  rm -rf "$scratch"
done
