#!/bin/sh
# auto/example-certs.sh: throwaway certificates for conf/examples/mtls.json
# in conf/examples/certs/ (or DIR): internal-ca.pem (the CA the example's
# upstream servers use), clients-ca.pem (the CA of the client certificates
# the site requires), api-ecdsa.pem/.key (the site's server certificate,
# api.example.com) and proxy-client.pem/.key (Hamlyn's own client
# certificate towards the upstream, signed by the internal CA).  In
# production these come from your PKI; this only lets `hamlyn -t -c
# conf/examples/mtls.json` pass in a checkout.  auto/demo-cert.sh runs it.
# Does nothing when every file exists.
set -eu
if [ $# -ge 1 ]; then
    d=$1
else
    cd "$(dirname "$0")/.."
    d=conf/examples/certs
fi
done=1
for f in internal-ca.pem clients-ca.pem api-ecdsa.pem api-ecdsa.key \
         proxy-client.pem proxy-client.key; do
    [ -s "$d/$f" ] || done=0
done
[ $done = 1 ] && exit 0
mkdir -p "$d"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ca() {  # ca NAME SUBJECT
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -days 365 -subj "$2" -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -keyout "$tmp/$1.key" -out "$d/$1.pem" 2>/dev/null
}
leaf() {  # leaf NAME CA CN SAN EKU
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -subj "/O=Hamlyn example/CN=$3" -keyout "$d/$1.key" \
        -out "$tmp/$1.csr" 2>/dev/null
    printf 'subjectAltName=%s\nextendedKeyUsage=%s\nbasicConstraints=CA:FALSE\n' \
        "$4" "$5" > "$tmp/$1.ext"
    openssl x509 -req -in "$tmp/$1.csr" -CA "$d/$2.pem" -CAkey "$tmp/$2.key" \
        -CAcreateserial -CAserial "$tmp/$2.srl" -days 365 \
        -extfile "$tmp/$1.ext" -out "$d/$1.pem" 2>/dev/null
    chmod 600 "$d/$1.key"
}
ca internal-ca "/O=Hamlyn example/CN=Example internal CA"
ca clients-ca "/O=Hamlyn example/CN=Example client CA"
leaf api-ecdsa internal-ca api.example.com "DNS:api.example.com" serverAuth
leaf proxy-client internal-ca proxy.example.com "DNS:proxy.example.com" clientAuth
echo "example-certs: wrote $d/{internal-ca,clients-ca,api-ecdsa,proxy-client}.pem (throwaway)"
