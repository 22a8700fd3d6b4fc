#!/usr/bin/env bash
# Generate the Go stubs clients/go/essv1/{guard.pb.go,guard_grpc.pb.go} from proto/.
#
# protoc is grpcio-tools' (`python -m grpc_tools.protoc`, the same one scripts/gen_proto.py
# uses); the two Go plugins are pinned below and installed into clients/go/.tools/bin
# (git-ignored) when missing or at another version, so a clean machine with Go and
# grpcio-tools can run this. Idempotent: the same inputs give byte-identical files.
#
#     scripts/gen_go.sh [OUT]      # OUT defaults to clients/go; PYTHON=... picks grpc_tools
set -euo pipefail

PROTOC_GEN_GO_VERSION=v1.36.10
PROTOC_GEN_GO_GRPC_VERSION=v1.5.1
GO_MODULE=github.com/ess-sidecar/ess-sidecar/clients/go

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$(mkdir -p "${1:-$ROOT/clients/go}" && cd "${1:-$ROOT/clients/go}" && pwd)"
TOOLS="$ROOT/clients/go/.tools/bin"
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "$ROOT/.venv/bin/python" ]]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi

# $1 binary name, $2 `go install` package, $3 version, $4 what `--version` prints.
ensure_plugin() {
  local bin="$TOOLS/$1"
  if [[ ! -x "$bin" ]] || [[ "$("$bin" --version 2>/dev/null)" != "$4" ]]; then
    echo "installing $2@$3 into ${TOOLS#"$ROOT"/}" >&2
    GOBIN="$TOOLS" GOFLAGS=-mod=mod go install "$2@$3"
  fi
}
ensure_plugin protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go \
  "$PROTOC_GEN_GO_VERSION" "protoc-gen-go $PROTOC_GEN_GO_VERSION"
ensure_plugin protoc-gen-go-grpc google.golang.org/grpc/cmd/protoc-gen-go-grpc \
  "$PROTOC_GEN_GO_GRPC_VERSION" "protoc-gen-go-grpc ${PROTOC_GEN_GO_GRPC_VERSION#v}"

WELL_KNOWN="$("$PYTHON" -c 'import grpc_tools, os; print(os.path.join(os.path.dirname(grpc_tools.__file__), "_proto"))')"
cd "$ROOT/proto"  # paths relative to the include root, so the files say "source: ess/v1/..."
mapfile -t PROTOS < <(find . -name '*.proto' | sed 's|^\./||' | LC_ALL=C sort)
"$PYTHON" -m grpc_tools.protoc \
  -I. -I"$WELL_KNOWN" \
  --plugin=protoc-gen-go="$TOOLS/protoc-gen-go" \
  --plugin=protoc-gen-go-grpc="$TOOLS/protoc-gen-go-grpc" \
  --go_out="$OUT" --go_opt=module="$GO_MODULE" \
  --go-grpc_out="$OUT" --go-grpc_opt=module="$GO_MODULE" \
  "${PROTOS[@]}"
echo "generated: $(cd "$OUT" && ls essv1/*.go | tr '\n' ' ')" >&2
