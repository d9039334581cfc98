#!/usr/bin/env bash
# A three-node RabbitMQ cluster on this machine, beside the default broker,
# from the local rabbitmq-server installation (no container engine):
#
#   scripts/cluster.sh up      start custimport-1..3@<short host name>, cluster
#                              them, print the AMQP URL list (idempotent)
#   scripts/cluster.sh down    stop the three nodes and remove their data
#   scripts/cluster.sh urls    print the AMQP URL list
#   scripts/cluster.sh nodes   print the node names, in the same order
#   scripts/cluster.sh status  which nodes run and whom they see
#
# Node i listens on 127.0.0.1 only: AMQP 568i, management 1568i, Erlang
# distribution 2568i. Its config, data, logs and pid file live under
# volumes/cluster/custimport-i/ (or /var/tmp/custimport-cluster/ when the
# broker's user cannot enter this checkout, a clone in a private folder),
# owned by the user the broker runs as. The
# nodes use the Erlang cookie of that user, the one the default node uses, so
# one rabbitmqctl reaches them all. The default node (rabbit@..., port 5672)
# is never touched. Needs root (or sudo) to run the nodes as that user.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

NODES=(1 2 3)
BROKER_USER=${RABBITMQ_USER:-rabbitmq}
BASE=
SERVER=/usr/lib/rabbitmq/bin/rabbitmq-server
CTL=/usr/lib/rabbitmq/bin/rabbitmqctl
HOST=$(hostname -s)

# as_broker runs a command as the broker's user, from its home: Erlang
# looks for modules in the working folder first, and hangs on one that user
# cannot read (a clone in a private folder).
as_broker() {
	local home
	home=$(getent passwd "$BROKER_USER" | cut -d: -f6)
	(
		cd "${home:-/}"
		if [[ $(id -un) == "$BROKER_USER" ]]; then
			env HOME="$home" "$@"
		elif ((EUID == 0)); then
			runuser -u "$BROKER_USER" -- env HOME="$home" "$@"
		elif command -v sudo >/dev/null; then
			sudo -n -u "$BROKER_USER" env HOME="$home" "$@"
		else
			die "run as root (or with sudo): the nodes run as $BROKER_USER"
		fi
	)
}

# The nodes' folder: in the checkout where the broker's user can reach it.
if as_broker test -x "$PWD/volumes" 2>/dev/null; then
	BASE=$PWD/volumes/cluster
else
	BASE=/var/tmp/custimport-cluster
fi

as_root() {
	if ((EUID == 0)); then
		"$@"
	else
		sudo -n "$@"
	fi
}

node() { printf 'custimport-%s@%s' "$1" "$HOST"; }
amqp_port() { printf '%s' $((5680 + $1)); }
urls() {
	local i out=()
	for i in "${NODES[@]}"; do
		out+=("amqp://guest:guest@127.0.0.1:$(amqp_port "$i")/")
	done
	(
		IFS=,
		printf '%s\n' "${out[*]}"
	)
}

ctl() {
	local i=$1
	shift
	as_broker "$CTL" -q -n "$(node "$i")" "$@"
}
running() { ctl "$1" ping >/dev/null 2>&1; }
app_running() { running "$1" && [[ $(ctl "$1" eval 'rabbit:is_running().' 2>/dev/null) == true ]]; }

check_prerequisites() {
	[[ -x $SERVER && -x $CTL ]] || die "rabbitmq-server is not installed (apt-get install rabbitmq-server)"
	getent passwd "$BROKER_USER" >/dev/null || die "no user $BROKER_USER: the broker's user (set RABBITMQ_USER)"
	local addr
	addr=$(getent hosts "$HOST" | awk '{print $1; exit}')
	[[ $addr == 127.* ]] || die "the short host name $HOST resolves to '${addr:-nothing}', not a loopback address:
  the nodes' names must reach them on 127.0.0.1. Add '127.0.1.1 $HOST' to /etc/hosts."
}

# write_node I writes node I's config and environment files, fresh each time.
write_node() {
	local i=$1 dir=$BASE/custimport-$1
	mkdir -p "$dir"/{mnesia,log}
	cat >"$dir/rabbitmq.conf" <<-EOF
		# custimport cluster node $i: every listener on loopback.
		listeners.tcp.local = 127.0.0.1:$(amqp_port "$i")
		management.tcp.ip = 127.0.0.1
		management.tcp.port = $((15680 + i))
		cluster_partition_handling = pause_minority
	EOF
	printf '[rabbitmq_management].\n' >"$dir/enabled_plugins"
	# Read by rabbitmq-server instead of /etc/rabbitmq/rabbitmq-env.conf,
	# whose NODENAME is the default node's.
	cat >"$dir/rabbitmq-env.conf" <<-EOF
		NODENAME=$(node "$i")
		DIST_PORT=$((25680 + i))
		ERL_EPMD_ADDRESS=127.0.0.1
		SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
	EOF
	if [[ $(id -un) != "$BROKER_USER" ]]; then
		as_root chown -R "$BROKER_USER:" "$dir"
	fi
}

start_node() {
	local i=$1 dir=$BASE/custimport-$1
	write_node "$i"
	say "starting $(node "$i") (AMQP $(amqp_port "$i"), management $((15680 + i)), distribution $((25680 + i)))"
	as_broker env \
		RABBITMQ_CONF_ENV_FILE="$dir/rabbitmq-env.conf" \
		RABBITMQ_NODENAME="$(node "$i")" \
		RABBITMQ_DIST_PORT=$((25680 + i)) \
		RABBITMQ_CONFIG_FILE="$dir/rabbitmq.conf" \
		RABBITMQ_MNESIA_BASE="$dir/mnesia" \
		RABBITMQ_LOG_BASE="$dir/log" \
		RABBITMQ_PID_FILE="$dir/pid" \
		RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins" \
		ERL_EPMD_ADDRESS=127.0.0.1 \
		"$SERVER" -detached
}

await_node() {
	local i=$1
	wait_for 60 "$(node "$i") to answer" running "$i" || die "$(node "$i") did not start: see $BASE/custimport-$i/log"
	ctl "$i" await_startup --timeout 120 || die "$(node "$i") did not boot: see $BASE/custimport-$i/log"
}

# members I lists the disc nodes node I knows of.
members() { ctl "$1" eval 'rabbit_nodes:all().' 2>/dev/null; }

join_node() {
	local i=$1
	if members "$i" | grep -q "custimport-1@$HOST"; then
		return 0
	fi
	say "$(node "$i") joins $(node 1)"
	local log=$BASE/join-$i.log
	# The CLI reports the join's transient noise (feature flags, tracking
	# tables of a node restarting) on stderr: kept in a file unless it fails.
	if ! {
		ctl "$i" stop_app &&
			ctl "$i" reset &&
			ctl "$i" join_cluster "$(node 1)" &&
			ctl "$i" start_app &&
			ctl "$i" await_startup --timeout 120
	} >"$log" 2>&1; then
		cat "$log" >&2
		die "$(node "$i") could not join $(node 1)"
	fi
}

clustered() {
	local i
	for i in "${NODES[@]}"; do
		app_running "$i" || return 1
	done
	local seen
	seen=$(ctl 1 eval 'rabbit_nodes:all_running().' 2>/dev/null)
	for i in "${NODES[@]}"; do
		grep -q "custimport-$i@$HOST" <<<"$seen" || return 1
	done
}

up() {
	check_prerequisites
	if clustered; then
		say "the cluster is already running: $(node 1), $(node 2), $(node 3)"
		urls
		return 0
	fi
	mkdir -p "$BASE"
	local i
	for i in "${NODES[@]}"; do
		if running "$i"; then
			app_running "$i" || ctl "$i" start_app
		else
			start_node "$i"
		fi
	done
	for i in "${NODES[@]}"; do
		await_node "$i"
	done
	join_node 2
	join_node 3
	wait_for 30 "the three nodes to see each other" clustered || die "the nodes did not form a cluster: see $BASE/*/log"
	say "cluster running: $(node 1), $(node 2), $(node 3); management http://127.0.0.1:15681 (guest/guest)"
	say "point the pipeline at it with AMQP_URL=$(urls)"
	urls
}

down() {
	local i
	for i in "${NODES[@]}"; do
		if running "$i"; then
			say "stopping $(node "$i")"
			# stop with the pid file returns once the process has exited.
			ctl "$i" stop "$BASE/custimport-$i/pid" >/dev/null || true
		fi
	done
	for i in "${NODES[@]}"; do
		if running "$i"; then
			die "$(node "$i") still runs"
		fi
	done
	as_root rm -rf "$BASE"
	say "cluster stopped, $BASE removed"
}

status() {
	local i
	for i in "${NODES[@]}"; do
		if app_running "$i"; then
			printf '%s running, sees %s\n' "$(node "$i")" "$(ctl "$i" eval 'rabbit_nodes:all_running().' 2>/dev/null | tr -d '\n ')"
		elif running "$i"; then
			printf '%s up, app stopped\n' "$(node "$i")"
		else
			printf '%s not running\n' "$(node "$i")"
		fi
	done
}

case ${1:-} in
up) up ;;
down) down ;;
urls) urls ;;
nodes)
	printf '%s,%s,%s\n' "$(node 1)" "$(node 2)" "$(node 3)"
	;;
status) status ;;
*)
	printf 'usage: %s up|down|urls|nodes|status\n' "$0" >&2
	exit 2
	;;
esac
