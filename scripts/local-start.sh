#!/usr/bin/env bash
# Runs the pipeline on this machine without Docker (`make start` where no
# Docker engine answers): migrations, then mockcrm, CONSUMERS consumers and
# the web service (on 127.0.0.1:WEB_PORT, its token from
# scripts/web-token.sh) in the background, then the producer on FILE in the
# foreground.
#
# Background processes log to volumes/logs/<name>.log and keep their pid in
# volumes/run/<name>.pid; `make stop` (scripts/local-stop.sh) ends them. A
# process whose pid file points at a live process is left running, so running
# this twice imports another file with the same consumers. Afterwards exactly
# CONSUMERS consumers run, as with compose's --scale: consumer-1..N are kept or
# started, and those numbered above N are stopped (they hand back their work).
#
# Expects the binaries in bin/ (make build) and the services of
# scripts/local-infra.sh. stdout carries only the producer's JSON summary.
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

: "${AMQP_URL:?}" "${DATABASE_URL:?}" "${CRM_URL:?}"
CONSUMERS=${CONSUMERS:-2}
FILE=${FILE:-data/customers_sample.csv}
PARALLEL=${PARALLEL:-4}
LOGS=volumes/logs
RUN=volumes/run
export AMQP_URL DATABASE_URL CRM_URL

[[ $CONSUMERS =~ ^[0-9]+$ ]] || die "CONSUMERS must be a number, got $CONSUMERS"
[[ -r $FILE ]] || die "FILE=$FILE is not a readable file (make data writes the samples)"
for b in producer consumer mockcrm web; do
	[[ -x bin/$b ]] || die "bin/$b is missing: run make build"
done
mkdir -p "$LOGS" "$RUN"

running() { # running NAME: does NAME's pid file point at a live process?
	local pid
	[[ -s $RUN/$1.pid ]] || return 1
	pid=$(<"$RUN/$1.pid")
	kill -0 "$pid" 2>/dev/null
}

# start NAME CMD...: start CMD in the background unless NAME already runs,
# then make sure it survived its first second (bad flags, port in use).
start() {
	local name=$1
	shift
	if running "$name"; then
		say "$name: already running (pid $(<"$RUN/$name.pid"))"
		return 0
	fi
	nohup "$@" </dev/null >>"$LOGS/$name.log" 2>&1 &
	echo $! >"$RUN/$name.pid"
	sleep 1
	if ! running "$name"; then
		rm -f "$RUN/$name.pid"
		tail -n 20 "$LOGS/$name.log" >&2 || true
		die "$name exited at once; its log is $LOGS/$name.log"
	fi
	say "$name: started (pid $(<"$RUN/$name.pid"), log $LOGS/$name.log)"
}

say "migrations"
bin/consumer migrate >&2

read -r crm_host crm_port < <(url_hostport "$CRM_URL" 80)
start mockcrm bin/mockcrm --addr "$crm_host:$crm_port"
wait_for 15 "mockcrm at $crm_host:$crm_port" tcp_open "$crm_host" "$crm_port" ||
	die "mockcrm does not answer; see $LOGS/mockcrm.log"

for ((i = 1; i <= CONSUMERS; i++)); do
	start "consumer-$i" bin/consumer --http-addr "127.0.0.1:$((9100 + i))"
done
extra=()
shopt -s nullglob
for f in "$RUN"/consumer-*.pid; do
	name=$(basename "$f" .pid)
	n=${name#consumer-}
	[[ $n =~ ^[0-9]+$ ]] && ((n > CONSUMERS)) && extra+=("$name")
done
shopt -u nullglob
if ((${#extra[@]} > 0)); then
	say "CONSUMERS=$CONSUMERS: stopping ${extra[*]}"
	"$(dirname "${BASH_SOURCE[0]}")/local-stop.sh" "${extra[@]}"
fi

WEB_API_TOKEN=$("$(dirname "${BASH_SOURCE[0]}")/web-token.sh")
export WEB_API_TOKEN
start web bin/web --addr "127.0.0.1:${WEB_PORT:-8080}"

say "producer: $FILE (--parallel $PARALLEL)"
bin/producer --file "$FILE" --parallel "$PARALLEL"
