#!/usr/bin/env bash
# Compares RedisBackplane publish throughput (64 concurrent publishers, one
# topic, a subscriber on a second node) with what redis-benchmark reports
# for plain SET with 64 clients, against the same Redis in the same run.
# Single-command SET is the ceiling an unbatched client hits; the backplane
# must pass it by batching.
#
# Usage: scripts/bench-backplane.sh [rounds]   (default 3; REDIS_URL or
# 127.0.0.1:6379). Needs redis-benchmark (Debian: redis-tools).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

rounds=${1:-3}
host=127.0.0.1 port=6379
if [ -n "${REDIS_URL:-}" ]; then
	hp=${REDIS_URL#*://}
	hp=${hp#*@}
	hp=${hp%%/*}
	host=${hp%:*} port=${hp##*:}
fi
n=200000

go test -c -o /tmp/rtkit-bench.test . >/dev/null

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

sets=() pubs=()
for r in $(seq "$rounds"); do
	set_rps=$(redis-benchmark -h "$host" -p "$port" -q -t set -c 64 -n "$n" | tr '\r' '\n' | awk '/requests per second/ {print $2}' | tail -1)
	pub_rps=$(/tmp/rtkit-bench.test -test.run '^$' -test.bench 'BenchmarkRedisPublish/publishers=64$' \
		-test.benchtime "${n}x" | awk '/msgs\/s/ {for (i=1;i<=NF;i++) if ($(i+1)=="msgs/s") print $i}')
	printf 'round %d: redis-benchmark SET -c 64: %10.0f req/s   backplane publish, 64 publishers: %10.0f msgs/s   ratio %.2f\n' \
		"$r" "$set_rps" "$pub_rps" "$(awk -v a="$pub_rps" -v b="$set_rps" 'BEGIN {print a/b}')"
	sets+=("$set_rps") pubs+=("$pub_rps")
done
ms=$(printf '%s\n' "${sets[@]}" | median)
mp=$(printf '%s\n' "${pubs[@]}" | median)
printf 'median: SET %.0f req/s, publish %.0f msgs/s, ratio %.2f (goal >= 1.0)\n' "$ms" "$mp" "$(awk -v a="$mp" -v b="$ms" 'BEGIN {print a/b}')"
