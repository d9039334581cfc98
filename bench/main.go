// Command bench measures the pipeline end to end on this machine's RabbitMQ
// and PostgreSQL, next to the broker's own limits measured in the same run:
//
//	go run ./bench --rows 200000        (make bench ROWS=200000)
//
// It builds producer, consumer, mockcrm and the CSV generator, generates
// the CSV (cached under --data-dir), then measures:
//
//   - the broker's ceilings with raw persistent messages of the producer's
//     size on the same quorum queue: publish-only with confirms (the best of
//     --windows), drain-only with a large prefetch, and pass-through (both at
//     once, which is the ceiling of the whole pipeline on one machine);
//   - the producer alone, the consumers alone draining the full queue, both
//     together, and both together against a CRM failing 15 % of calls with
//     5 ms latency;
//   - both together with each CRM batch size of --crm-batch-sizes (the
//     consumers' CRM_BATCH_SIZE);
//   - when every node of --cluster-amqp-url answers (make cluster), the
//     producer alone, the consumers alone and both together again on the
//     cluster, next to the same on one broker: the cost of replication;
//     otherwise one line says the cluster was not measured;
//   - the consumers alone with each count of --scale;
//   - a file a quarter of the size, to show memory flat in file size.
//
// Every run gets its own schema (in the database --database, created and
// dropped by the bench) and its own queue prefix, deleted afterwards. One
// table goes to stdout and to --json; logs go to stderr.
package main

import "github.com/custimport/custimport/libs/cli"

func main() { cli.Main("bench", run) }
