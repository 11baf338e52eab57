#!/bin/bash
# Stand-in for Kafka's kafka-server-start.sh -daemon CONFIG (tests): the broker comes up
# and needs CATCH_UP seconds (default 1) before its replicas are in sync again.
. "$(dirname "$0")/_common.sh"
[ "${1:-}" = -daemon ] && [ -n "${2:-}" ] || { echo "usage: $0 -daemon CONFIG" >&2; exit 2; }
mkdir -p "$broker_dir"
echo "up $(now)" > "$broker_dir/state"
log start
echo "started $broker"
