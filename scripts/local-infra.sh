#!/usr/bin/env bash
# Makes Postgres and RabbitMQ ready at DATABASE_URL and AMQP_URL without
# Docker: `make infra` runs this where no Docker engine answers.
#
# A server on this machine that is installed but stopped is started; the
# database named in DATABASE_URL is created if missing; RabbitMQ's
# management plugin is enabled. A remote server is only checked: when it does
# not answer, this says what to do and fails. Running it twice is harmless.
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DATABASE_URL=${DATABASE_URL:-postgres://postgres:postgres@localhost:5432/customers?sslmode=disable}
AMQP_URL=${AMQP_URL:-amqp://guest:guest@localhost:5672/}

ensure_postgres() {
	local host port
	read -r host port < <(url_hostport "$DATABASE_URL" 5432)
	if pg_answers "$host" "$port"; then
		say "postgres: answering at $host:$port"
		return 0
	fi
	if is_local "$host" && command -v pg_ctlcluster >/dev/null; then
		local version
		for version in $(pg_versions); do
			say "postgres: starting cluster $version/main"
			pg_ctlcluster --skip-systemctl-redirect "$version" main start ||
				warn "pg_ctlcluster $version main start failed (run as root or as the postgres user?)"
		done
		if wait_for 30 "postgres at $host:$port" pg_answers "$host" "$port"; then
			say "postgres: answering at $host:$port"
			return 0
		fi
	fi
	die "postgres does not answer at $host:$port.
  Start it (sudo pg_ctlcluster --skip-systemctl-redirect <version> main start,
  or sudo apt-get install postgresql), or point DATABASE_URL at a server:
  make infra DATABASE_URL=postgres://user:pass@host:5432/customers"
}

ensure_database() {
	local db admin
	db=$(url_dbname "$DATABASE_URL")
	[[ -n $db ]] || die "DATABASE_URL names no database: $(url_redacted "$DATABASE_URL")"
	command -v psql >/dev/null || {
		warn "psql not found: cannot check that database $db exists (apt-get install postgresql-client)"
		return 0
	}
	# The server's maintenance database: ours may not exist yet. With trust
	# authentication the password in the URL is simply not asked for, so the
	# same URL works against a trust server and a password one.
	admin=$(url_with_db "$DATABASE_URL" postgres)
	local exists err
	if ! exists=$(psql "$admin" -XAtq -v ON_ERROR_STOP=1 \
		-c "SELECT 1 FROM pg_database WHERE datname = '${db//\'/\'\'}'" 2>&1); then
		err=$exists
		die "postgres: cannot connect as $(url_redacted "$admin"):
  $err
  Fix the user or password in DATABASE_URL, or allow it in pg_hba.conf
  (for a local demo: ALTER USER postgres PASSWORD 'postgres')."
	fi
	if [[ $exists == 1 ]]; then
		say "postgres: database $db exists"
		return 0
	fi
	say "postgres: creating database $db"
	psql "$admin" -Xq -v ON_ERROR_STOP=1 -c "CREATE DATABASE \"${db//\"/\"\"}\"" ||
		die "postgres: could not create database $db"
}

ensure_rabbitmq() {
	local host port
	read -r host port < <(url_hostport "$AMQP_URL" 5672)
	if ! tcp_open "$host" "$port"; then
		if is_local "$host" && command -v rabbitmq-server >/dev/null; then
			if rabbit_local_running; then
				say "rabbitmq: node running, waiting for its listener on $port"
			else
				say "rabbitmq: starting rabbitmq-server -detached"
				rabbitmq-server -detached ||
					warn "rabbitmq-server -detached failed (run as root or as the rabbitmq user?)"
			fi
			wait_for 60 "rabbitmq at $host:$port" tcp_open "$host" "$port" || true
		fi
		tcp_open "$host" "$port" || die "rabbitmq does not answer at $host:$port.
  Start it (sudo rabbitmq-server -detached, or sudo apt-get install rabbitmq-server),
  or point AMQP_URL at a broker: make infra AMQP_URL=amqp://user:pass@host:5672/"
	fi
	say "rabbitmq: answering at $host:$port"

	if is_local "$host" && command -v rabbitmq-plugins >/dev/null; then
		if rabbitmq-plugins -q enable rabbitmq_management >/dev/null 2>&1; then
			if wait_for 20 "rabbitmq management UI" tcp_open "$host" 15672; then
				say "rabbitmq: management UI at http://localhost:15672 (guest/guest)"
			fi
		else
			warn "rabbitmq: could not enable the management plugin (try: sudo rabbitmq-plugins enable rabbitmq_management)"
		fi
	elif tcp_open "$host" 15672; then
		say "rabbitmq: management UI at http://$host:15672"
	else
		say "rabbitmq: no management UI on $host:15672 (enable it there: rabbitmq-plugins enable rabbitmq_management)"
	fi
}

ensure_postgres
ensure_database
ensure_rabbitmq
say "infra ready: DATABASE_URL=$(url_redacted "$DATABASE_URL") AMQP_URL=$(url_redacted "$AMQP_URL")"
say "next: make start (applies the migrations, starts mockcrm and ${CONSUMERS:-2} consumers, imports FILE)"
