#!/usr/bin/env bash
# Chat load benchmark: 1000 members online with live streams; reports send → arrival
# latency (p50, p99) and messages/s. Builds in release (the bench profile).
#
#   scripts/bench-chat.sh
#   GC_BENCH_MEMBERS=200 GC_BENCH_MESSAGES=1000 scripts/bench-chat.sh
#
# Each member holds a live stream: two file descriptors per member (client and server
# side, both in this one process), so the open-files limit is raised first.
set -euo pipefail
cd "$(dirname "$0")/.."
want=8192
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$want" ]; then
    hard=$(ulimit -Hn)
    if [ "$hard" = unlimited ] || [ "$hard" -ge "$want" ]; then
        ulimit -n "$want"
    else
        ulimit -n "$hard"
    fi
fi
exec cargo bench --locked --bench chat_load -- "$@"
