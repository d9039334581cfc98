// Command chaos imports a generated customer file through the real producer,
// consumers and mockcrm while it kills processes, cuts the connections to
// RabbitMQ and PostgreSQL and makes the CRM fail, then checks that every
// valid customer is in Postgres once and was created in the CRM once.
//
//	go run ./chaos                 # 50,000 rows, 3 consumers, about 16 faults
//	go run ./chaos --short         # 5,000 rows, fewer faults, under a minute
//	go run ./chaos --seed 7 --keep # replay a run and keep its schema and queues
//
// Logs go to stderr, the result table to stdout; the exit status is non-zero
// when a check fails.
package main

import "github.com/custimport/custimport/libs/cli"

// main exits 1 when a check failed, 2 when the run could not be made.
func main() { cli.Main("chaos", run) }
