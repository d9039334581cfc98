#!/usr/bin/env bash
# Prints the web service's API token (make start passes it to web as
# WEB_API_TOKEN): WEB_API_TOKEN when it is set, else the token kept in
# volumes/web/api-token, made at random (readable by its owner only) the
# first time. Use it with curl:
#   curl -H "Authorization: Bearer $(scripts/web-token.sh)" http://localhost:8080/api/v1/imports
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ -n ${WEB_API_TOKEN:-} ]]; then
	printf '%s\n' "$WEB_API_TOKEN"
	exit 0
fi
file=volumes/web/api-token
if [[ ! -s $file ]]; then
	mkdir -p "$(dirname "$file")"
	(
		umask 077
		head -c 24 /dev/urandom | base64 | tr '+/' '-_' >"$file.tmp"
	)
	mv "$file.tmp" "$file"
fi
cat "$file"
