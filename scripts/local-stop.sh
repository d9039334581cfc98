#!/usr/bin/env bash
# Stops what scripts/local-start.sh started: SIGTERM to every process with a
# pid file in volumes/run (or only to the NAMEs given: local-stop.sh
# consumer-3 consumer-4), then up to STOP_TIMEOUT seconds (default 30) for
# them to finish their in-flight work, then SIGKILL for any still running.
# Only pids from those files are signalled.
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RUN=volumes/run
STOP_TIMEOUT=${STOP_TIMEOUT:-30}

shopt -s nullglob
if (($# > 0)); then
	pidfiles=()
	for name in "$@"; do
		[[ -f $RUN/$name.pid ]] && pidfiles+=("$RUN/$name.pid")
	done
else
	pidfiles=("$RUN"/*.pid)
fi
if ((${#pidfiles[@]} == 0)); then
	say "nothing to stop: no pid files in $RUN"
	exit 0
fi

declare -A pids=()
for f in "${pidfiles[@]}"; do
	name=$(basename "$f" .pid)
	pid=$(<"$f")
	if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then
		say "$name: SIGTERM (pid $pid)"
		kill -TERM "$pid" 2>/dev/null || true
		pids[$name]=$pid
	else
		say "$name: not running"
		rm -f "$f"
	fi
done

for ((waited = 0; waited < STOP_TIMEOUT && ${#pids[@]} > 0; waited++)); do
	sleep 1
	for name in "${!pids[@]}"; do
		if ! kill -0 "${pids[$name]}" 2>/dev/null; then
			say "$name: stopped"
			rm -f "$RUN/$name.pid"
			unset "pids[$name]"
		fi
	done
done

for name in "${!pids[@]}"; do
	warn "$name: still running after ${STOP_TIMEOUT}s, SIGKILL (pid ${pids[$name]})"
	kill -KILL "${pids[$name]}" 2>/dev/null || true
	rm -f "$RUN/$name.pid"
done
