# Shared by the fake database scripts: a node is a directory ($PGDATA) holding its role
# and version; the cluster is the directory above the nodes' (events.log lives there).
set -u
node_dir="${PGDATA:?PGDATA is not set}"
cluster_dir=$(dirname "$node_dir")
node=$(basename "$node_dir")
log() {
    (flock 9; echo "$1 $node $(date +%s.%N)" >> "$cluster_dir/events.log") 9>>"$cluster_dir/events.lock"
}
