#!/bin/sh
# Installs what clients/cpp needs to build and test, from Debian 12 (bookworm), pinned:
# gRPC C++ 1.51.1 and protobuf 3.21.12 (headers, libraries, protoc and grpc_cpp_plugin),
# CMake, GoogleTest, a C++17 compiler, make and pkg-config. Idempotent: when every package
# is already installed at its pinned version it does nothing (and needs no network).
# Runs apt-get as root, or through sudo. `make clients` at the root runs it.
set -eu

# package=version, as in `apt-cache policy` on bookworm: the libraries the client is built
# against, pinned.
PINS="
libgrpc++-dev=1.51.1-3+b1
protobuf-compiler-grpc=1.51.1-3+b1
libprotobuf-dev=3.21.12-3+deb12u1
protobuf-compiler=3.21.12-3+deb12u1
libgtest-dev=1.12.1-0.2
"
# Build tools: any installed version will do (never downgrade a machine's compiler).
TOOLS="cmake g++ make pkg-config"

missing=""
for pin in $PINS; do
    package=${pin%%=*}
    version=${pin#*=}
    installed=$(dpkg-query -W -f='${Status} ${Version}' "$package" 2>/dev/null || true)
    if [ "$installed" != "install ok installed $version" ]; then
        missing="$missing $pin"
    fi
done
for package in $TOOLS; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $package"
    fi
done

if [ -z "$missing" ]; then
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
else
    echo "install-deps.sh: need root (or sudo) to install:$missing" >&2
    exit 1
fi

echo "install-deps.sh: installing$missing" >&2
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
# shellcheck disable=SC2086 # one word per package
if ! $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    --allow-downgrades $missing >/dev/null; then
    # A pinned version superseded in the archive (a point release) is no longer served:
    # take the archive's current one rather than fail every build, and say so.
    unpinned=$(echo "$missing" | sed 's/=[^ ]*//g')
    echo "install-deps.sh: a pinned version is not in the archive any more; installing the" \
        "current ones of:$unpinned (update PINS from \`apt-cache policy <package>\`)" >&2
    # shellcheck disable=SC2086
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        $unpinned >/dev/null
fi
