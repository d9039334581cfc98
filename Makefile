# Run `make` (or `make help`) for the list of targets.
#
# Where a Docker engine answers, infra/start/logs/stop drive docker compose
# (Compose v2, `docker compose`); elsewhere they use the services at the URLs
# below (scripts/local-*.sh). Force one or the other with USE_DOCKER=1 or
# USE_DOCKER=0.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

# Host ports of the compose services (docker-compose.yml reads the same
# variables): change one when this machine already uses it. The URLs below
# follow them.
POSTGRES_PORT ?= 5432
RABBITMQ_PORT ?= 5672
RABBITMQ_MANAGEMENT_PORT ?= 15672
MOCKCRM_PORT ?= 8081
PROMETHEUS_PORT ?= 9090
GRAFANA_PORT ?= 3000
WEB_PORT ?= 8080
AMQP_URL ?= amqp://guest:guest@localhost:$(RABBITMQ_PORT)/
DATABASE_URL ?= postgres://postgres:postgres@localhost:$(POSTGRES_PORT)/customers?sslmode=disable
CRM_URL ?= http://localhost:$(MOCKCRM_PORT)
RABBITMQ_MANAGEMENT_URL ?= http://guest:guest@localhost:$(RABBITMQ_MANAGEMENT_PORT)
CONSUMERS ?= 2
FILE ?= data/customers_sample.csv
ROWS ?= 1000000
USE_DOCKER ?= auto
# The producer container runs as the user who runs make, so that the rejects
# report and checkpoint it writes to volumes/producer are that user's files.
PRODUCER_UID ?= $(shell id -u)
PRODUCER_GID ?= $(shell id -g)
export AMQP_URL DATABASE_URL CRM_URL RABBITMQ_MANAGEMENT_URL CONSUMERS FILE \
	POSTGRES_PORT RABBITMQ_PORT RABBITMQ_MANAGEMENT_PORT MOCKCRM_PORT PROMETHEUS_PORT GRAFANA_PORT WEB_PORT \
	PRODUCER_UID PRODUCER_GID

# A shell condition, true when docker compose should be used.
have_docker = { [ "$(USE_DOCKER)" = 1 ] || { [ "$(USE_DOCKER)" = auto ] && docker info >/dev/null 2>&1; }; }
# A shell command that fails, saying why, unless `docker compose` is Compose
# v2: docker-compose 1.x (Debian's 1.29) rejects docker-compose.yml.
need_compose_v2 = scripts/compose-check.sh

.PHONY: help
help: ## Print this message
	@awk 'BEGIN { FS = ":.*## "; printf "Usage: make <target> [VAR=value ...]\n\nTargets:\n" } \
		/^[a-zA-Z0-9_-]+:.*## / { printf "  %-12s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)
	@printf '\nVariables (override from the environment or the command line):\n'
	@printf '  %-25s %s\n' AMQP_URL '$(AMQP_URL)' DATABASE_URL '$(DATABASE_URL)' CRM_URL '$(CRM_URL)' \
		RABBITMQ_MANAGEMENT_URL '$(RABBITMQ_MANAGEMENT_URL)' \
		CONSUMERS '$(CONSUMERS)' FILE '$(FILE)' ROWS '$(ROWS)' USE_DOCKER '$(USE_DOCKER) (auto, 1 or 0)' \
		POSTGRES_PORT '$(POSTGRES_PORT)' RABBITMQ_PORT '$(RABBITMQ_PORT)' \
		RABBITMQ_MANAGEMENT_PORT '$(RABBITMQ_MANAGEMENT_PORT)' MOCKCRM_PORT '$(MOCKCRM_PORT)' \
		PROMETHEUS_PORT '$(PROMETHEUS_PORT)' GRAFANA_PORT '$(GRAFANA_PORT)' WEB_PORT '$(WEB_PORT)' \
		QUEUE_PREFIX '$(or $(QUEUE_PREFIX),customers) (queue names, for everything make starts)' \
		PRODUCER_UID '$(PRODUCER_UID):$(PRODUCER_GID) (PRODUCER_UID:PRODUCER_GID, the producer container user)'

.PHONY: build
build: ## Build producer, consumer, mockcrm and web into bin/
	go build -buildvcs=auto -o bin/ ./producer ./consumer ./mockcrm ./web

.PHONY: infra
infra: ## Start Postgres, RabbitMQ, mockcrm, Prometheus and Grafana with compose, or ready local Postgres and RabbitMQ
	@if $(have_docker); then \
		$(need_compose_v2); \
		mkdir -p volumes/producer; \
		docker compose up -d --wait postgres rabbitmq mockcrm prometheus grafana; \
		echo "RabbitMQ management UI: http://localhost:$(RABBITMQ_MANAGEMENT_PORT) (guest/guest); mockcrm: http://localhost:$(MOCKCRM_PORT)"; \
		echo "Prometheus: http://localhost:$(PROMETHEUS_PORT); Grafana: http://localhost:$(GRAFANA_PORT) (dashboard custimport)"; \
		echo "next: make start (applies the migrations, starts $(CONSUMERS) consumers, imports FILE)"; \
	else \
		echo "No Docker engine: using the services at DATABASE_URL and AMQP_URL (make start starts mockcrm)"; \
		scripts/local-infra.sh; \
	fi

.PHONY: migrate-db
migrate-db: ## Apply database migrations to DATABASE_URL
	go run ./consumer migrate

.PHONY: start
start: ## Migrate, run exactly CONSUMERS consumers (and mockcrm, and web on WEB_PORT), then import FILE with the producer
	@if $(have_docker); then \
		$(need_compose_v2); \
		case "$(FILE)" in data/*) ;; *) echo "FILE must be under data/ (mounted at /data in the producer)" >&2; exit 2 ;; esac; \
		mkdir -p volumes/producer volumes/web/uploads; \
		WEB_API_TOKEN=$$(scripts/web-token.sh) docker compose up -d --build --scale consumer=$(CONSUMERS); \
		docker compose --profile producer run --rm producer producer --file "/data/$${FILE#data/}" --parallel 4; \
	else \
		go build -buildvcs=auto -o bin/ ./producer ./consumer ./mockcrm ./web; \
		scripts/local-start.sh; \
	fi

.PHONY: demo
demo: ## infra + start on data/customers_sample.csv, wait for the CRM step, show what landed
	@$(MAKE) infra
	@$(MAKE) start FILE=data/customers_sample.csv
	FILE=data/customers_sample.csv scripts/demo-report.sh
	@echo "Web page and API: http://localhost:$(WEB_PORT)/ (API token in volumes/web/api-token)"

.PHONY: logs
logs: ## Follow the logs of every service
	@if $(have_docker); then \
		$(need_compose_v2); \
		docker compose logs -f; \
	else \
		shopt -s nullglob; logs=(volumes/logs/*.log); \
		if (( $${#logs[@]} == 0 )); then echo "no logs in volumes/logs: make start first" >&2; exit 1; fi; \
		tail -n 50 -F "$${logs[@]}"; \
	fi

.PHONY: status
status: ## Show queue depths and customers per CRM state
	go run ./consumer status

.PHONY: stop
stop: ## Stop the consumers and mockcrm (compose down, or SIGTERM the local processes)
	@if $(have_docker); then $(need_compose_v2); docker compose --profile producer down; fi
	scripts/local-stop.sh

.PHONY: test
test: ## Run all tests (services from TEST_DATABASE_URL/TEST_AMQP_URL, local ports, or testcontainers)
	go test -race -count=1 -timeout 10m ./...

.PHONY: lint
lint: ## Run golangci-lint (version pinned in go.mod); waits for another run instead of failing
	go tool golangci-lint run --allow-serial-runners ./...

.PHONY: bench
bench: ## End-to-end throughput benchmark on ROWS generated rows
	go run ./bench --rows $(ROWS)

.PHONY: chaos
chaos: ## Kill and restart consumers, broker and CRM mid-import; check exactly-once
	go run ./chaos

.PHONY: cluster
cluster: ## Start a 3-node RabbitMQ cluster beside the default broker (AMQP 5681-5683) and print its AMQP_URL list
	@scripts/cluster.sh up

.PHONY: chaos-cluster
chaos-cluster: ## make chaos through the 3-node cluster (make cluster), stopping and starting the import queue's leader node twice
	@scripts/cluster.sh up >/dev/null
	go run ./chaos --amqp-url "$$(scripts/cluster.sh urls)" --cluster-nodes "$$(scripts/cluster.sh nodes)"

.PHONY: cluster-down
cluster-down: ## Stop the 3-node cluster and remove its data (volumes/cluster)
	@scripts/cluster.sh down

.PHONY: data
data: ## Generate data/customers_sample.csv (committed) and data/customers_100k.csv
	go run ./data/gen --rows 200 --dups 0.02 --invalid 0.015 --seed 1 --out data/customers_sample.csv
	go run ./data/gen --rows 100000 --dups 0.02 --invalid 0.01 --seed 1 --out data/customers_100k.csv

.PHONY: drop-db
drop-db: ## Drop the database named in DATABASE_URL (asks first; FORCE=1 does not)
	scripts/drop-db.sh

.PHONY: prune
prune: ## stop, then remove compose volumes and everything under volumes/
	@$(MAKE) stop
	@if $(have_docker); then docker compose --profile producer down -v; fi
	find volumes -mindepth 1 -maxdepth 1 ! -name .gitkeep ! -name producer -exec rm -rf {} +
	find volumes/producer -mindepth 1 -maxdepth 1 ! -name .gitkeep -exec rm -rf {} +

.PHONY: clean
clean: ## Remove bin/ and the test cache
	rm -rf bin/
	go clean -testcache
