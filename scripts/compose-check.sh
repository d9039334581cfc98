#!/usr/bin/env bash
# Fails, saying what to install, unless `docker compose` is Compose v2.
#
# docker-compose.yml uses what only Compose v2 reads: the top-level `name:`
# (docker-compose 1.x, Debian's 1.29 included, rejects the file for it) and
# `up --wait`. The make targets that drive compose run this first, so that an
# old docker-compose is named rather than failing on the file.
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if version=$(docker compose version --short 2>/dev/null) && [[ ${version#v} =~ ^([2-9]|[1-9][0-9]+)\. ]]; then
	exit 0
fi
old=
if command -v docker-compose >/dev/null; then
	old=$(docker-compose version --short 2>/dev/null || docker-compose --version 2>/dev/null || true)
fi
if [[ -n $old && $old != *v2.* && $old != 2.* ]]; then
	die "found docker-compose $old, but this project needs Docker Compose v2 (\`docker compose\`):
  docker-compose 1.x rejects docker-compose.yml (top-level name:) and has no \`up --wait\`.
  Install Compose v2 (Docker's docker-compose-plugin package, or docker-compose 2.x from
  Debian 13), or run without Docker: make infra USE_DOCKER=0"
fi
die "\`docker compose\` is not available: this project needs Docker Compose v2 (the compose plugin).
  Install it, or run without Docker: make infra USE_DOCKER=0"
