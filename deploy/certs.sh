#!/bin/sh
# A certificate recipe (OpenSSL 3): a private CA and a server certificate it signs.
#
#   deploy/certs.sh OUT_DIR HOST [HOST...]
#   deploy/certs.sh certs auth.internal.example 10.0.0.5
#
# Writes to OUT_DIR:
#   ca.crt   the CA certificate (CA:TRUE). Clients trust it: channelgate's
#            `session.jwt.ca_file` for a private identity provider, curl --cacert, ...
#   ca.key   the CA's private key: keep it offline, it signs certificates
#   tls.crt  the server certificate (CA:FALSE, serverAuth) for every HOST given
#            (names become DNS SANs, addresses IP SANs): `tls.cert`
#   tls.key  its private key: `tls.key`
#
# Why two certificates: TLS clients (rustls/webpki, browsers) refuse a server
# certificate that is itself a CA (`CaUsedAsEndEntity`). A self-signed
# certificate made with `openssl req -x509` is CA:TRUE by default, so serving
# it and trusting it as `ca_file` fails; serve tls.crt and trust ca.crt.
set -eu
if [ $# -lt 2 ]; then
  echo "usage: $0 OUT_DIR HOST [HOST...]" >&2
  exit 2
fi
out=$1
shift
mkdir -p "$out"
san=""
for host in "$@"; do
  case $host in
    *[!0-9.]*) case $host in *:*) san="$san,IP:$host" ;; *) san="$san,DNS:$host" ;; esac ;;
    *) san="$san,IP:$host" ;;
  esac
done
san=${san#,}

# 1. The CA: a key and a self-signed certificate that may sign others.
openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
  -subj "/CN=channelgate private CA" -keyout "$out/ca.key" -out "$out/ca.crt" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null

# 2. The server: a key, a request, and a certificate signed by the CA.
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$1" \
  -keyout "$out/tls.key" -out "$out/tls.csr" 2>/dev/null
printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=%s\n' \
  "$san" >"$out/tls.ext"
openssl x509 -req -in "$out/tls.csr" -CA "$out/ca.crt" -CAkey "$out/ca.key" -CAcreateserial \
  -days 825 -extfile "$out/tls.ext" -out "$out/tls.crt" 2>/dev/null
rm -f "$out/tls.csr" "$out/tls.ext" "$out/ca.srl"
chmod 600 "$out/ca.key" "$out/tls.key"
echo "wrote $out/ca.crt $out/ca.key $out/tls.crt $out/tls.key (hosts: $san)"
