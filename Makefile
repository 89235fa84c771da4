# SPDX-License-Identifier: Apache-2.0
# terok-shield: a thin, self-documenting Makefile. Logic longer than a line lives in scripts/ or Go.

export PATH := /usr/local/go/bin:$(PATH)
GO       ?= go
BIN      := bin/terok-shield
PKGS     := ./...
FUZZTIME ?= 20s
# Privileged tiers (real netns, nftables, podman) must run, never skip, under `make test`.
export TEROK_SHIELD_REQUIRE_PRIVILEGED ?= 1

.DEFAULT_GOAL := help

help: ## Show this help
	@grep -hE '^[a-z][a-z0-9-]*:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

deps: ## Install what the project needs on Debian 12 (root; idempotent)
	bash scripts/install-deps.sh

# On amd64 the binary gets an assembly entry point that joins a rootless container's
# namespaces before the Go runtime starts (control.SocketHelper); elsewhere nsenter is used.
ENTRY_LDFLAGS := $(if $(filter amd64,$(shell $(GO) env GOARCH)),-ldflags=-E=main.nsfdEntry)

build: ## Build bin/terok-shield (static, CGO off)
	CGO_ENABLED=0 $(GO) build -trimpath $(ENTRY_LDFLAGS) -o $(BIN) ./shim

lint: ## gofmt, go vet, staticcheck
	@out=$$(gofmt -l . | grep -v '^internal/genflags/testdata/' || true); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) tool staticcheck $(PKGS)

test-unit: ## Unit tests only (no root needed; privileged tests skip when not root)
	TEROK_SHIELD_REQUIRE_PRIVILEGED= $(GO) test -race -short $(PKGS)

test: deps lint ## All tests: lint, unit, netns and real-podman tiers (run as root)
	@[ "$$(id -u)" -eq 0 ] || { echo "make test: the privileged tiers need root (run: sudo make test)"; exit 1; }
	$(GO) test -race -timeout 40m $(PKGS)

demo: deps build ## The main job: a shielded container on an offline test internet (root)
	bash scripts/demo.sh

flags: ## Regenerate argparse's podman flag tables from podman's own cobra tree
	$(GO) run ./internal/genflags

e2e-report: ## Run the e2e suite and write docs/conformance.md (root)
	bash scripts/e2e-report.sh

bench: ## Benchmarks, side by side with the original's mechanisms (root)
	bash scripts/bench.sh

fuzz: ## Short fuzz runs of every fuzz target (FUZZTIME=$(FUZZTIME))
	bash scripts/fuzz.sh $(FUZZTIME)

tidy: ## go mod tidy, then fail if go.mod or go.sum changed
	$(GO) mod tidy && git diff --exit-code go.mod go.sum

golden: ## Rewrite golden files (review the diff!)
	$(GO) test $(PKGS) -run . -update

.PHONY: help deps build demo flags e2e-report tidy lint test-unit test bench fuzz golden
