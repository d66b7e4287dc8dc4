#!/bin/sh
# auto/demo-cert.sh: a throwaway self-signed certificate for localhost in
# conf/certs/demo.pem + conf/certs/demo.key, which conf/hamlyn.json uses so
# that a fresh checkout serves https://localhost:8443/ at once.  Not for
# production: replace it with your own certificate.  Does nothing when both
# files exist.  An optional argument names another folder (make install uses
# DESTDIR/etc/hamlyn/certs).  Without an argument it also runs
# auto/example-certs.sh (conf/examples/certs/, for conf/examples/mtls.json).
set -eu
if [ $# -ge 1 ]; then
    d=$1
else
    cd "$(dirname "$0")/.."
    d=conf/certs
fi
if [ $# -eq 0 ]; then
    # the throwaway certificates of conf/examples/mtls.json
    sh auto/example-certs.sh
fi
if [ -s "$d/demo.pem" ] && [ -s "$d/demo.key" ]; then
    exit 0
fi
mkdir -p "$d"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 \
    -subj "/O=Hamlyn demo/CN=localhost" \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1" \
    -addext "extendedKeyUsage=serverAuth" \
    -keyout "$d/demo.key" -out "$d/demo.pem" 2>/dev/null
chmod 600 "$d/demo.key"
echo "demo-cert: wrote $d/demo.pem and $d/demo.key (self-signed, localhost)"
