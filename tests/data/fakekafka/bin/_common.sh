# Shared by the fake Kafka scripts: a broker is a directory ($KAFKA_LOG_DIRS) holding its
# state; the cluster is the directory above the brokers' (events.log lives there).
set -u
broker_dir="${KAFKA_LOG_DIRS:?KAFKA_LOG_DIRS is not set}"
cluster_dir=$(dirname "$broker_dir")
broker=$(basename "$broker_dir")
now() { date +%s.%N; }
log() {  # atomically append "EVENT BROKER TIME" to the cluster's log
    mkdir -p "$cluster_dir"
    (flock 9; echo "$1 $broker $(now)" >> "$cluster_dir/events.log") 9>>"$cluster_dir/events.lock"
}
