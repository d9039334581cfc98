# shellcheck shell=bash
# Helpers sourced by the other scripts: URL parsing, service probes, messages.
# Plain bash, no Docker, no tools beyond what a Postgres client install brings.

say() { printf '==> %s\n' "$*" >&2; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() {
	printf 'error: %s\n' "$*" >&2
	exit 1
}

# url_hostport URL DEFAULT_PORT prints "host port" of a URL such as
# postgres://user:pass@host:5432/db?x=y or amqp://guest:guest@[::1]:5672/.
url_hostport() {
	local url=$1 default_port=$2 rest authority hostport host port
	rest=${url#*://}
	authority=${rest%%/*}
	authority=${authority%%\?*}
	hostport=${authority##*@}
	if [[ $hostport == \[* ]]; then # [ipv6]:port
		host=${hostport%%]*}
		host=${host#[}
		port=${hostport##*]}
		port=${port#:}
	elif [[ $hostport == *:* ]]; then
		host=${hostport%:*}
		port=${hostport##*:}
	else
		host=$hostport
		port=
	fi
	printf '%s %s\n' "${host:-localhost}" "${port:-$default_port}"
}

# url_dbname URL prints the database named in a Postgres URL's path.
url_dbname() {
	local url=$1 rest path
	rest=${url#*://}
	rest=${rest%%\?*}
	[[ $rest == */* ]] || return 0
	path=${rest#*/}
	printf '%s\n' "${path%%/*}"
}

# url_with_db URL DB prints URL with its database replaced by DB, query kept:
# how we reach the server's maintenance database to create or drop ours.
url_with_db() {
	local url=$1 db=$2 scheme rest query=
	scheme=${url%%://*}
	rest=${url#*://}
	if [[ $rest == *\?* ]]; then
		query="?${rest#*\?}"
		rest=${rest%%\?*}
	fi
	printf '%s://%s/%s%s\n' "$scheme" "${rest%%/*}" "$db" "$query"
}

# url_redacted URL hides the password, for messages.
url_redacted() {
	sed -E 's#(://[^:/@]*:)[^@/]*@#\1xxxxx@#g' <<<"$1"
}

# is_local HOST: is the server on this machine (so we may start it)?
is_local() {
	case $1 in
	localhost | 127.* | ::1 | '' | "$(hostname 2>/dev/null)") return 0 ;;
	*) return 1 ;;
	esac
}

# tcp_open HOST PORT: does something accept TCP connections there?
tcp_open() {
	timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null
}

# wait_for SECONDS DESCRIPTION COMMAND...: retry COMMAND every second.
wait_for() {
	local seconds=$1 what=$2 i
	shift 2
	for ((i = 0; i < seconds; i++)); do
		if "$@"; then
			return 0
		fi
		sleep 1
	done
	warn "$what: still not ready after ${seconds}s"
	return 1
}

# pg_versions lists the installed Debian/Ubuntu PostgreSQL versions, newest last.
pg_versions() {
	[[ -d /etc/postgresql ]] || return 0
	ls /etc/postgresql | sort -V
}

# pg_answers HOST PORT: is a Postgres server accepting connections?
pg_answers() {
	if command -v pg_isready >/dev/null; then
		pg_isready -q -h "$1" -p "$2" -t 2
	else
		tcp_open "$1" "$2"
	fi
}

# rabbit_local_running: is a local RabbitMQ node up (even if still booting)?
rabbit_local_running() {
	if command -v rabbitmq-diagnostics >/dev/null; then
		timeout 15 rabbitmq-diagnostics -q ping >/dev/null 2>&1
	else
		tcp_open 127.0.0.1 5672
	fi
}

# run_psql URL PSQL_ARGS...: psql against URL; where no psql client is
# installed but the compose stack runs, psql inside the postgres container.
run_psql() {
	local url=$1
	shift
	if command -v psql >/dev/null; then
		psql "$url" -X "$@"
	elif docker info >/dev/null 2>&1; then
		docker compose exec -T postgres psql -U postgres -d "$(url_dbname "$url")" -X "$@"
	else
		die "psql not found (apt-get install postgresql-client)"
	fi
}
