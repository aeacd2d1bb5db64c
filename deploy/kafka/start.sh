#!/usr/bin/env bash
# The broker's entry point in docker-compose.yml (apache/kafka image, runs as appuser).
#
# 1. server.properties from the KAFKA_CFG_* variables: KAFKA_CFG_LOG_DIRS -> log.dirs
#    (the image's own naming: "__" stands for "_", "___" for "-");
# 2. the admin's SCRAM login for the inter-broker listener, from /run/secrets (so no
#    password is in the environment or the compose file);
# 3. the storage formatted once, with the admin's SCRAM credential (KRaft keeps SCRAM
#    credentials in the metadata log: the first login needs one there);
# 4. the broker, in the foreground (SIGTERM -> controlled shutdown).
#
# Passwords are hex (deploy/make-secrets.sh): no quoting needed in JAAS or --add-scram.
set -euo pipefail

kafka_home=${KAFKA_HOME:-/opt/kafka}
secrets=${SECRETS_PATH:-/run/secrets}
config_dir=$kafka_home/config/advocacy
admin_password=$(cat "$secrets/kafka-admin-password")
[[ $admin_password =~ ^[A-Za-z0-9._-]+$ ]] || { echo "kafka-admin-password: use letters, digits, . _ -" >&2; exit 2; }
[[ -n ${CLUSTER_ID:-} ]] || { echo "CLUSTER_ID is not set" >&2; exit 2; }

mkdir -p "$config_dir"
umask 077
jaas="org.apache.kafka.common.security.scram.ScramLoginModule required username=\"admin\" password=\"$admin_password\";"
{
  echo "# written by /opt/advocacy/start.sh at $(date -u +%FT%TZ)"
  env | LC_ALL=C sort | while IFS='=' read -r name value; do
    [[ $name == KAFKA_CFG_* ]] || continue
    key=${name#KAFKA_CFG_}
    key=${key//___/-}
    key=${key//__/@}
    key=${key//_/.}
    key=${key//@/_}
    printf '%s=%s\n' "${key,,}" "$value"
  done
  echo "listener.name.internal.scram-sha-512.sasl.jaas.config=$jaas"
  echo "listener.name.host.scram-sha-512.sasl.jaas.config=$jaas"
} > "$config_dir/server.properties"

# the admin's client settings: the health check and the init job's tools use them
cat > "$kafka_home/config/admin-client.properties" <<PROPS
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=$jaas
ssl.truststore.type=PEM
ssl.truststore.location=$secrets/kafka-ca.pem
PROPS

"$kafka_home/bin/kafka-storage.sh" format --ignore-formatted --cluster-id "$CLUSTER_ID" \
  --config "$config_dir/server.properties" \
  --add-scram "SCRAM-SHA-512=[name=admin,password=$admin_password]"

exec "$kafka_home/bin/kafka-server-start.sh" "$config_dir/server.properties"
