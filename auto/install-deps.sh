#!/bin/sh
# auto/install-deps.sh: install everything Hamlyn needs to build and test on
# Debian 12 (bookworm), non-interactively.  Shared by README's first command
# and .ci/run.  Run as root (or it uses sudo).
#
# - adds a deb-src entry (apt-get source android-platform-external-boringssl
#   is how ./configure gets the BoringSSL source it builds without
#   OPENSSL_SMALL); it carries signed-by to match Debian's own deb entries;
# - apt-get update, then installs the build, test and fuzz dependencies.
#
# HM_DEPS_MINIMAL=1 skips clang/libFuzzer (only needed for `make fuzz`).
set -eu

export DEBIAN_FRONTEND=noninteractive
SUDO=
if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "install-deps: run as root" >&2; exit 1; }
    SUDO=sudo
fi

list=/etc/apt/sources.list.d/hamlyn-src.list
line='deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main'
if [ ! -f "$list" ] && ! grep -qs '^[[:space:]]*Types:.*deb-src' /etc/apt/sources.list.d/*.sources \
        && ! grep -qs '^[[:space:]]*deb-src .*bookworm main' /etc/apt/sources.list /etc/apt/sources.list.d/*.list; then
    echo "install-deps: adding $list"
    echo "$line" | $SUDO tee "$list" >/dev/null
fi

# Build: compiler, pkg-config, the libraries configure probes for, dpkg-dev
# for `apt-get source` and for `make deb` (dpkg-shlibdeps computes the
# package's Depends; dpkg-deb, gzip and strip of build-essential build it),
# android-libboringssl-dev for --with-boringssl=system.
# Test: Check (unit), perl/prove, python3 (backends), openssl and curl
# (clients), git (CI builds a second copy), adduser and logrotate (the
# package's postinst and its logrotate file, t/pkg-ci.sh).  Fuzz: clang with
# libFuzzer.
pkgs="build-essential pkg-config make libuv1-dev libhttp-parser-dev libjansson-dev
      dpkg-dev ca-certificates check perl python3 openssl curl git
      android-libboringssl-dev adduser logrotate"
if [ -z "${HM_DEPS_MINIMAL:-}" ]; then
    pkgs="$pkgs clang libclang-rt-14-dev"
fi

apt_retry() {
    n=0
    until $SUDO apt-get -o Dpkg::Use-Pty=0 "$@"; do
        n=$((n + 1))
        [ $n -ge 3 ] && return 1
        echo "install-deps: apt-get $1 failed, retrying in 5 s" >&2
        sleep 5
    done
}

apt_retry -qq update
# shellcheck disable=SC2086
apt_retry -y -q --no-install-recommends install $pkgs
echo "install-deps: done"
