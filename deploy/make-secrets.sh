#!/usr/bin/env bash
# The secrets docker-compose.yml mounts (see .env.example), made once with openssl:
#
#   deploy/make-secrets.sh [DIR]      # default: deploy/secrets (git-ignored)
#
#   kafka-admin-password     the broker's super user (the init job and the broker itself)
#   kafka-worker-password    SCRAM password of the workers' principal, "advocacy"
#   kafka-producer-password  SCRAM password of the producers' principal, "producer"
#   kafka-ca.pem             a CA of this deployment; clients verify the broker with it
#   kafka-ca.key             its key (mounted nowhere; keep it to renew the broker's certificate)
#   kafka-broker.pem         the broker's key (PKCS#8) and certificate, for kafka and localhost
#   redis-users.acl          Redis users: "advocacy" limited to advocacy* keys (SHA-256 of its
#                            password only), "default" limited to PING (the health check)
#   redis-url                the workers' ADVOCACY_REDIS_URL, with that password
#
# Existing files are kept, so running it again changes nothing; delete a file to renew it.
# The directory is private to you (0700); the files are 0644 so that each container's own
# non-root user can read the ones mounted into it.
set -euo pipefail

dir=${1:-$(dirname "$0")/secrets}
mkdir -p "$dir"
chmod 700 "$dir"
cd "$dir"
umask 022

password() { [[ -s $1 ]] || openssl rand -hex 24 > "$1"; }
password kafka-admin-password
password kafka-worker-password
password kafka-producer-password
password redis-worker-password

if [[ ! -s kafka-ca.pem || ! -s kafka-ca.key ]]; then
  (umask 077; openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:3072 -out kafka-ca.key 2>/dev/null)
  openssl req -x509 -new -key kafka-ca.key -out kafka-ca.pem -days 1825 -sha256 \
    -subj "/CN=advocacy-stream deployment CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
  rm -f kafka-broker.pem
fi
if [[ ! -s kafka-broker.pem ]]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$work/broker.key" 2>/dev/null
  openssl req -new -key "$work/broker.key" -subj "/CN=kafka" -out "$work/broker.csr"
  printf '%s\n' "subjectAltName=DNS:kafka,DNS:localhost" "basicConstraints=CA:FALSE" \
    "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth,clientAuth" \
    > "$work/broker.ext"
  openssl x509 -req -in "$work/broker.csr" -CA kafka-ca.pem -CAkey kafka-ca.key -CAcreateserial \
    -CAserial "$work/ca.srl" -days 825 -sha256 -extfile "$work/broker.ext" -out "$work/broker.crt" 2>/dev/null
  # Kafka's PEM key store: an unencrypted PKCS#8 key, then the certificate chain
  openssl pkcs8 -topk8 -nocrypt -in "$work/broker.key" > kafka-broker.pem
  cat "$work/broker.crt" kafka-ca.pem >> kafka-broker.pem
fi

redis_password=$(cat redis-worker-password)
if [[ ! -s redis-users.acl ]]; then
  hash=$(printf '%s' "$redis_password" | openssl dgst -sha256 -r | cut -d' ' -f1)
  cat > redis-users.acl <<ACL
user default on nopass resetkeys resetchannels -@all +ping
user advocacy on #$hash resetkeys resetchannels ~advocacy* -@all +@read +@write +@connection +evalsha +eval +script|load +script|exists -function -@dangerous +time
ACL
fi
[[ -s redis-url ]] || printf 'redis://advocacy:%s@redis:6379/0\n' "$redis_password" > redis-url

chmod 644 kafka-admin-password kafka-worker-password kafka-producer-password redis-worker-password \
  kafka-ca.pem kafka-broker.pem redis-users.acl redis-url
chmod 600 kafka-ca.key
echo "secrets in $(pwd)"
