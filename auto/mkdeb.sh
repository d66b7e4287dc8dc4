#!/bin/sh
# auto/mkdeb.sh: builds the Debian package hamlyn_<version>_<arch>.deb from
# this tree's ./hamlyn (make deb runs it after building).
#
#   sh auto/mkdeb.sh [OUTDIR]        (default: the top of the tree)
#
# Environment: DEB_VERSION (default <HAMLYN_VERSION of src/core/hm_core.h>-1,
# e.g. 0.1.0-1), DEB_MAINTAINER, MAKE.
#
# The contents come from `make install DESTDIR=<stage> PREFIX=/usr
# PACKAGING=deb` (binary, man pages, conf/hamlyn.deb.json as the conffile
# /etc/hamlyn/hamlyn.json, the systemd unit, the logrotate file, the demo
# certificate script), then: the binary stripped as dh_strip does, the man
# pages gzipped (-9n), /usr/share/doc/hamlyn/{README,copyright,
# changelog.Debian.gz}, the maintainer scripts of auto/deb/ and md5sums.  Depends is
# computed by dpkg-shlibdeps (dpkg-dev) from the binary's NEEDED libraries
# (BoringSSL is static by default: no dependency; with --with-boringssl=
# system it names android-libboringssl), plus adduser (postinst creates the
# user hamlyn) and openssl (postinst writes the throwaway certificate).
# Built with dpkg-deb --build --root-owner-group: every file is root:root.
set -eu

cd "$(dirname "$0")/.."
top=$(pwd)
out=${1:-$top}
mkdir -p "$out"
out=$(cd "$out" && pwd)

command -v dpkg-deb >/dev/null 2>&1 || { echo "mkdeb: dpkg-deb not found" >&2; exit 1; }
command -v dpkg-shlibdeps >/dev/null 2>&1 || {
    echo "mkdeb: dpkg-shlibdeps not found: apt-get install dpkg-dev" \
         "(auto/install-deps.sh installs it)" >&2; exit 1; }
[ -x ./hamlyn ] || { echo "mkdeb: build ./hamlyn first (make)" >&2; exit 1; }

upstream=$(sed -n 's/^#define HAMLYN_VERSION "\(.*\)"$/\1/p' src/core/hm_core.h)
[ -n "$upstream" ] || { echo "mkdeb: no HAMLYN_VERSION in src/core/hm_core.h" >&2; exit 1; }
version=${DEB_VERSION:-$upstream-1}
case "$version" in
[0-9]*) ;;
*) echo "mkdeb: DEB_VERSION must start with a digit: $version" >&2; exit 1 ;;
esac
arch=$(dpkg --print-architecture)
maint=${DEB_MAINTAINER:-"Hamlyn maintainers <maintainers@users.noreply.r-seed-e566c28a.example>"}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/hamlyn-deb.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
# dpkg-shlibdeps wants debian/control and the files under debian/<package>
mkdir -p "$tmp/debian"
: > "$tmp/debian/control"
stage=$tmp/debian/hamlyn

${MAKE:-make} --no-print-directory install DESTDIR="$stage" PREFIX=/usr PACKAGING=deb >/dev/null

strip --strip-unneeded --remove-section=.comment --remove-section=.note \
    "$stage/usr/sbin/hamlyn"
find "$stage/usr/share/man" -type f ! -name '*.gz' -exec gzip -9n {} +

doc=$stage/usr/share/doc/hamlyn
install -d -m 755 "$doc"
install -m 644 README "$doc/README"
install -m 644 auto/deb/copyright "$doc/copyright"
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
{
    echo "hamlyn ($version) unstable; urgency=medium"
    echo
    echo "  * Built by auto/mkdeb.sh from the Hamlyn source tree (git $commit);"
    echo "    upstream version $upstream.  The project's history is its git log."
    echo
    echo " -- $maint  $(LC_ALL=C date -R ${SOURCE_DATE_EPOCH:+-d @$SOURCE_DATE_EPOCH})"
} > "$tmp/changelog"
gzip -9n < "$tmp/changelog" > "$doc/changelog.Debian.gz"
chmod 644 "$doc/changelog.Debian.gz"

deps=$(cd "$tmp" && dpkg-shlibdeps -O -e debian/hamlyn/usr/sbin/hamlyn 2>/dev/null \
       | sed -n 's/^shlibs:Depends=//p')
[ -n "$deps" ] || { echo "mkdeb: dpkg-shlibdeps gave no dependencies" >&2; exit 1; }

install -d -m 755 "$stage/DEBIAN"
for s in postinst prerm postrm; do
    install -m 755 "auto/deb/$s" "$stage/DEBIAN/$s"
done
# Every file under /etc is a conffile (as dh_installdeb does)
(cd "$stage" && find etc -type f | sort | sed 's|^|/|') > "$stage/DEBIAN/conffiles"
chmod 644 "$stage/DEBIAN/conffiles"
# md5sums of every other file, for dpkg --verify (as dh_md5sums)
(cd "$stage" && find . -type f ! -path './DEBIAN/*' ! -path './etc/*' | sed 's|^\./||' \
    | LC_ALL=C sort | xargs md5sum) > "$stage/DEBIAN/md5sums"
chmod 644 "$stage/DEBIAN/md5sums"
size=$(du -k -s --exclude=DEBIAN "$stage" | cut -f1)
cat > "$stage/DEBIAN/control" <<CTRL
Package: hamlyn
Version: $version
Architecture: $arch
Maintainer: $maint
Installed-Size: $size
Depends: $deps, adduser, openssl
Section: httpd
Priority: optional
Description: TLS edge proxy: SNI passthrough and TLS termination
 Hamlyn serves, on one port, passthrough sites (it reads the TLS
 ClientHello, picks the site by its SNI and splices the still-encrypted
 bytes to the backend) and terminate sites (it does the TLS handshake with
 BoringSSL and reverse-proxies HTTP/1.1 to plaintext or re-encrypted,
 verified upstreams).
 .
 This package runs it as the systemd service hamlyn.service with one JSON
 configuration file, /etc/hamlyn/hamlyn.json, which serves a demo site on
 https://localhost:8443/ with a throwaway self-signed certificate.
 Installing a newer package upgrades a running hamlyn in place (USR2 binary
 upgrade): the new binary takes over the listening sockets, no connection
 is refused.
CTRL
chmod 644 "$stage/DEBIAN/control"

deb=$out/hamlyn_${version}_${arch}.deb
dpkg-deb --build --root-owner-group -Zxz "$stage" "$deb" >/dev/null
echo "mkdeb: wrote $deb ($(du -k "$deb" | cut -f1) KiB; Depends: $deps, adduser, openssl)"
