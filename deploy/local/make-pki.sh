#!/bin/sh
# Makes the local example's PKI in deploy/local/pki: a CA, certificates for the core, the edge listener and
# the edge's client certificate toward the core, the edge's Ed25519 signing key and the backend HMAC key.
# For local use only.
set -eu
d=deploy/local/pki
mkdir -p "$d"
cd "$d"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.crt -days 30 \
  -subj /CN=mcpgw-local-ca -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n' > leaf.ext
for n in core edge edge-client; do
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$n.key" -out "$n.csr" -subj "/CN=$n" 2>/dev/null
  openssl x509 -req -in "$n.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -out "$n.crt" -days 30 -extfile leaf.ext 2>/dev/null
done
openssl genpkey -algorithm ed25519 -out edge-signing.key.pem
openssl pkey -in edge-signing.key.pem -pubout -out edge-signing.pub.pem
openssl rand -hex 32 > backend-hmac.key
echo "PKI in $d"
