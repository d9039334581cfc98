#!/usr/bin/env bash
# Drops the database named in DATABASE_URL (make drop-db). Asks first unless
# FORCE=1. Connections still open to it are ended (DROP ... WITH (FORCE)).
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

: "${DATABASE_URL:?}"
db=$(url_dbname "$DATABASE_URL")
[[ -n $db ]] || die "DATABASE_URL names no database: $(url_redacted "$DATABASE_URL")"
case $db in
postgres | template0 | template1) die "refusing to drop the $db database" ;;
esac
read -r host port < <(url_hostport "$DATABASE_URL" 5432)

if [[ ${FORCE:-0} != 1 ]]; then
	[[ -t 0 ]] || die "not a terminal: run with FORCE=1 to drop database $db on $host:$port"
	read -r -p "Drop database $db on $host:$port? Everything in it is lost. [y/N] " answer
	[[ $answer == [yY]* ]] || die "not dropped"
fi

admin=$(url_with_db "$DATABASE_URL" postgres)
run_psql "$admin" -q -v ON_ERROR_STOP=1 -c "DROP DATABASE IF EXISTS \"${db//\"/\"\"}\" WITH (FORCE)"
say "dropped database $db on $host:$port (make infra creates it again)"
