#!/usr/bin/env bash
# One-shot job in docker-compose.yml (apache/kafka image), run after the broker is healthy
# and before the workers start; safe to run again (every step is idempotent).
#
# - SCRAM credentials of the workers' principal and the producers' principal;
# - the topics, with the retention the contract requires (longest window + attribution
#   window + 1 day; customers compacted), also applied to topics that already exist;
# - ACLs: the workers read their source topics and their consumer groups, write the
#   dead-letter topic and own Faust's internal topics (APP_ID-__*); producers write the
#   source topics. Nothing else: the broker denies what no ACL allows.
set -euo pipefail

bin=${KAFKA_HOME:-/opt/kafka}/bin
secrets=${SECRETS_PATH:-/run/secrets}
: "${KAFKA_BOOTSTRAP:?}" "${APP_ID:?}" "${WORKER_USER:?}" "${PRODUCER_USER:?}" "${SOURCE_TOPICS:?}"
: "${CUSTOMERS_TOPIC:?}" "${DLQ_TOPIC:?}" "${TOPIC_PARTITIONS:?}" "${TOPIC_RETENTION_MS:?}"

admin=$(mktemp)
trap 'rm -f "$admin"' EXIT
cat > "$admin" <<PROPS
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$(cat "$secrets/kafka-admin-password")";
ssl.truststore.type=PEM
ssl.truststore.location=$secrets/kafka-ca.pem
PROPS
kafka() { "$bin/$1" --bootstrap-server "$KAFKA_BOOTSTRAP" --command-config "$admin" "${@:2}"; }

for pair in "$WORKER_USER:kafka-worker-password" "$PRODUCER_USER:kafka-producer-password"; do
  user=${pair%%:*}
  password=$(cat "$secrets/${pair#*:}")
  [[ $password =~ ^[A-Za-z0-9._-]+$ ]] || { echo "${pair#*:}: use letters, digits, . _ -" >&2; exit 2; }
  kafka kafka-configs.sh --alter --entity-type users --entity-name "$user" \
    --add-config "SCRAM-SHA-512=[iterations=8192,password=$password]"
done

topic() {  # name, configs...
  local name=$1; shift
  local create=() alter=()
  for config in "$@"; do create+=(--config "$config"); alter+=("$config"); done
  kafka kafka-topics.sh --create --if-not-exists --topic "$name" --partitions "$TOPIC_PARTITIONS" \
    --replication-factor 1 "${create[@]}"
  kafka kafka-configs.sh --alter --entity-type topics --entity-name "$name" \
    --add-config "$(IFS=,; echo "${alter[*]}")"
}
for name in $SOURCE_TOPICS "$DLQ_TOPIC"; do
  topic "$name" "retention.ms=$TOPIC_RETENTION_MS" cleanup.policy=delete
done
topic "$CUSTOMERS_TOPIC" cleanup.policy=compact retention.ms=-1

acl() { kafka kafka-acls.sh --add --force "$@"; }
for name in $SOURCE_TOPICS "$CUSTOMERS_TOPIC"; do
  acl --allow-principal "User:$WORKER_USER" --operation Read --operation Describe \
    --operation DescribeConfigs --topic "$name"
  acl --allow-principal "User:$PRODUCER_USER" --operation Write --operation Describe --topic "$name"
done
acl --allow-principal "User:$WORKER_USER" --operation Write --operation Describe \
  --operation DescribeConfigs --topic "$DLQ_TOPIC"
acl --allow-principal "User:$PRODUCER_USER" --operation Describe --topic "$DLQ_TOPIC"
# Faust's own topics (its leader topic, APP_ID-__assignor-__leader)
acl --allow-principal "User:$WORKER_USER" --operation All \
  --resource-pattern-type prefixed --topic "$APP_ID-__"
# the consumer groups: APP_ID, and APP_ID-... of a replay (python -m stream replay)
acl --allow-principal "User:$WORKER_USER" --operation Read --operation Describe \
  --resource-pattern-type prefixed --group "$APP_ID"

echo "kafka-init: users, topics (retention ${TOPIC_RETENTION_MS} ms) and ACLs in place"
