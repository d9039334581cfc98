#!/usr/bin/env bash
# Waits until the customers of FILE have all been through the CRM step, then
# shows what landed (make demo, after make start).
#
# "Done" is read from Postgres: no customer left in crm_state 'pending', and
# at least as many non-pending customers as FILE has distinct valid emails
# (go run ./data/gen --count FILE, by the producer's own validation rules).
# The wait is bounded by WAIT_TIMEOUT seconds (default 120): a customer whose
# CRM call waits in a long retry step stays pending longer, and the report
# then shows it as such rather than failing the demo.
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

: "${DATABASE_URL:?}" "${CRM_URL:?}"
FILE=${FILE:-data/customers_sample.csv}
WAIT_TIMEOUT=${WAIT_TIMEOUT:-120}

summary=$(go run ./data/gen --count "$FILE")
expected=$(sed -nE 's/.*"unique_emails":([0-9]+).*/\1/p' <<<"$summary")
[[ -n $expected ]] || die "could not count $FILE: $summary"
say "$FILE: $summary"
say "waiting up to ${WAIT_TIMEOUT}s for $expected customers to leave crm_state 'pending'"

query="SELECT count(*) FILTER (WHERE crm_state <> 'pending') || ' ' || count(*) FILTER (WHERE crm_state = 'pending') FROM customers"
done_count=0 pending=0
for ((s = 0; s <= WAIT_TIMEOUT; s += 2)); do
	if out=$(run_psql "$DATABASE_URL" -Atq -c "$query" 2>/dev/null); then
		read -r done_count pending <<<"$out"
		if ((done_count >= expected && pending == 0)); then
			say "all $done_count customers processed after ${s}s"
			break
		fi
		((s % 10 == 0)) && say "  ${s}s: $done_count processed, $pending pending"
	fi
	sleep 2
done
if ((done_count < expected || pending > 0)); then
	warn "after ${WAIT_TIMEOUT}s: $done_count processed, $pending still pending (see make logs)"
fi

echo
echo "Postgres: customers by CRM state"
run_psql "$DATABASE_URL" -q -c "SELECT crm_state, count(*) AS customers FROM customers GROUP BY crm_state ORDER BY crm_state"
echo "mockcrm: $CRM_URL/stats"
curl -fsS --max-time 5 "$CRM_URL/stats" || warn "no answer from $CRM_URL/stats"
echo
