#!/bin/bash
# Stand-in for Kafka's kafka-server-stop.sh (tests): the broker goes down.
. "$(dirname "$0")/_common.sh"
mkdir -p "$broker_dir"
echo down > "$broker_dir/state"
log stop
echo "stopped $broker"
