# userstream: make up runs the stack, make test tests it. Both install what
# they need (PostgreSQL from Debian's packages, Go modules) on a fresh machine.
SHELL := bash
.DEFAULT_GOAL := help

.PHONY: help up down test faults bench build lint clean query

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

up: ## run PostgreSQL, the broker, the API, the streamer and the archiver in the foreground (Ctrl-C stops)
	@scripts/up.sh

down: ## stop everything make up started
	@scripts/down.sh

test: ## gofmt, vet, staticcheck, then the whole suite against a private PostgreSQL and broker
	@scripts/test.sh

faults: ## the fault suite at full size; writes docs/reliability.md
	@scripts/faults.sh

query: ## SQL over the archiver's lake with DuckDB: make query Q="SELECT country_code, count(*) FROM users_created GROUP BY 1"
	@scripts/query.sh "$(Q)"

bench: ## streamer and API benchmarks beside their ceilings; writes docs/benchmarks.md
	@scripts/bench.sh

build: ## build every program into bin/
	@. scripts/lib.sh && ensure_build_deps && build_programs bin

lint: ## gofmt, vet and staticcheck only
	@test -z "$$(gofmt -l $$(git ls-files --cached --others --exclude-standard '*.go'))" || { gofmt -l $$(git ls-files --cached --others --exclude-standard '*.go'); exit 1; }
	go vet ./...
	go tool staticcheck ./...

clean: down ## stop the stack and delete its data (.data/) and bin/
	rm -rf .data bin
