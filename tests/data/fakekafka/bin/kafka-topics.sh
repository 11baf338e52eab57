#!/bin/bash
# Stand-in for kafka-topics.sh --describe --under-replicated-partitions (tests): one line
# per under-replicated partition, two for every broker down, one for a broker that
# started less than CATCH_UP seconds ago.
. "$(dirname "$0")/_common.sh"
catch_up="${CATCH_UP:-1}"
t=$(now)
for d in "$cluster_dir"/*/; do
    [ -f "$d/state" ] || continue
    read -r st since < "$d/state"
    name=$(basename "$d")
    if [ "$st" = down ]; then
        echo "topic: orders partition: 1 leader: none isr: ($name out)"
        echo "topic: orders partition: 2 leader: none isr: ($name out)"
    elif awk -v t="$t" -v s="$since" -v c="$catch_up" 'BEGIN { exit !(t - s < c) }'; then
        echo "topic: orders partition: 1 isr: ($name catching up)"
    fi
done
