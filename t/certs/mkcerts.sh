#!/bin/sh
# mkcerts.sh DIR: generate the Hamlyn test PKI into DIR with the openssl CLI.
#
# Where it sits: run once per test run by t/lib/Hamlyn/Test.pm (into
# t/tmp/certs, under a lock); tests and t/lib/hm_backend.py read the files.
# Idempotent: does nothing when DIR/.done exists and matches this script.
#
# Files (leaf files hold the leaf only; the CA is in ca.pem):
#   ca.pem ca.key                      test CA (RSA-2048) for every server cert
#   NAME-ecdsa.pem/.key NAME-rsa.pem/.key NAME.pem/.key (= ECDSA copy) for
#     NAME in a.test b.test wild.test (SAN *.wild.test) backend.test
#     default.test localhost (SAN localhost, 127.0.0.1, ::1)
#   client-ca.pem client-ca.key        CA for client certificates
#   client.pem client.key              CN=client.test, clientAuth, by client-ca
#   proxy-client.pem proxy-client.key  CN=proxy.test, clientAuth, by client-ca
#   expired.pem expired.key            by ca, valid 2020-01-01..2021-01-01,
#                                      SANs expired.test backend.test localhost
#   wrongsan.pem wrongsan.key          by ca, SAN wrong.test only
set -eu

dir=${1:?usage: mkcerts.sh DIR}
# .done holds the checksum of this script: a changed script regenerates.
stamp=$(cksum < "$0")
[ -f "$dir/.done" ] && [ "$(cat "$dir/.done")" = "$stamp" ] && exit 0
mkdir -p "$dir"

# Serialise concurrent runs on the same DIR (parallel tests, several helpers).
if command -v flock >/dev/null 2>&1 && [ -z "${HM_MKCERTS_LOCKED:-}" ]; then
    HM_MKCERTS_LOCKED=1 exec flock "$dir/.lock" sh "$0" "$@"
fi
[ -f "$dir/.done" ] && [ "$(cat "$dir/.done")" = "$stamp" ] && exit 0
rm -f "$dir/.done"

work=$(mktemp -d "$dir/.work.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"

ossl() {
    openssl "$@" 2>>openssl.log || { cat openssl.log >&2; echo "mkcerts: openssl $1 failed" >&2; exit 1; }
}

serial() { echo "0x$(openssl rand -hex 8)"; }

# mkca NAME CN
mkca() {
    ossl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1.key"
    ossl req -x509 -new -key "$1.key" -sha256 -days 3650 -subj "/O=Hamlyn tests/CN=$2" \
        -set_serial "$(serial)" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -addext "subjectKeyIdentifier=hash" -out "$1.pem"
}

# newkey FILE ecdsa|rsa
newkey() {
    case $2 in
    ecdsa) ossl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
               -pkeyopt ec_param_enc:named_curve -out "$1" ;;
    rsa)   ossl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1" ;;
    esac
}

# leaf OUT ALG CA CN SAN EKU
leaf() {
    newkey "$1.key" "$2"
    ossl req -new -key "$1.key" -subj "/O=Hamlyn tests/CN=$4" -out "$1.csr"
    ku="digitalSignature"
    [ "$2" = rsa ] && ku="digitalSignature,keyEncipherment"
    {
        echo "basicConstraints=critical,CA:FALSE"
        echo "keyUsage=critical,$ku"
        echo "extendedKeyUsage=$6"
        echo "subjectKeyIdentifier=hash"
        echo "authorityKeyIdentifier=keyid"
        [ -n "$5" ] && echo "subjectAltName=$5"
    } > "$1.ext"
    ossl x509 -req -in "$1.csr" -CA "$3.pem" -CAkey "$3.key" -set_serial "$(serial)" \
        -sha256 -days 3650 -extfile "$1.ext" -out "$1.pem"
    rm -f "$1.csr" "$1.ext"
}

mkca ca "Hamlyn Test CA"
mkca client-ca "Hamlyn Test Client CA"

for n in a.test b.test wild.test backend.test default.test localhost; do
    case $n in
    wild.test) cn="*.wild.test"; san="DNS:*.wild.test" ;;
    localhost) cn=localhost; san="DNS:localhost,IP:127.0.0.1,IP:::1" ;;
    *)         cn=$n; san="DNS:$n" ;;
    esac
    for alg in ecdsa rsa; do
        leaf "$n-$alg" $alg ca "$cn" "$san" serverAuth,clientAuth
    done
    cp "$n-ecdsa.pem" "$n.pem"
    cp "$n-ecdsa.key" "$n.key"
done

leaf client ecdsa client-ca client.test "DNS:client.test" clientAuth
leaf proxy-client ecdsa client-ca proxy.test "DNS:proxy.test" clientAuth
leaf wrongsan ecdsa ca wrong.test "DNS:wrong.test" serverAuth,clientAuth

# Expired: 'openssl x509 -req' cannot set dates in the past before OpenSSL
# 3.2, so use 'openssl ca' with explicit -startdate/-enddate.
newkey expired.key ecdsa
ossl req -new -key expired.key -subj "/O=Hamlyn tests/CN=expired.test" -out expired.csr
mkdir -p ca.db
: > ca.db/index.txt
cat > ca.db/ca.cnf <<CNF
[ca]
default_ca = hm
[hm]
dir = $work/ca.db
database = \$dir/index.txt
new_certs_dir = \$dir
serial = \$dir/serial
default_md = sha256
policy = any
unique_subject = no
copy_extensions = none
[any]
commonName = supplied
organizationName = optional
[ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth,clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = DNS:expired.test,DNS:backend.test,DNS:localhost,IP:127.0.0.1
CNF
openssl rand -hex 8 > ca.db/serial
ossl ca -batch -config ca.db/ca.cnf -cert ca.pem -keyfile ca.key -in expired.csr \
    -startdate 20200101000000Z -enddate 20210101000000Z -extensions ext \
    -notext -out expired.pem
rm -rf ca.db expired.csr openssl.log

chmod 644 ./*.pem
chmod 600 ./*.key
mv -f ./*.pem ./*.key "$dir"/
echo "$stamp" > "$dir/.done"
