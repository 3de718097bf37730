# Persys Compute. `make demo` runs a dev cluster with a real workload;
# `make test` runs every test against real parts (etcd, Docker, mTLS).

GO            ?= go
BIN           := $(CURDIR)/bin
TOOLS         := $(CURDIR)/.tools
DEV_DIR       ?= $(CURDIR)/.persys-dev
# Generator versions are pinned here and fetched from the Go module proxy.
PROTOC_GEN_GO_VERSION      := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.0

export CGO_ENABLED ?= 0

.PHONY: all help build proto deps test test-short vet fmt demo demo-down images bench dist clean

all: build

help:
	@echo "make build       persys and persysctl into bin/"
	@echo "make test        gofmt, go vet, every test with -race (installs what tests need)"
	@echo "make demo        a dev cluster of one with the example workload; make demo-down stops it"
	@echo "make bench       latency, memory and placement benchmarks"
	@echo "make dist        release artifacts in dist/: static persys and persysctl for linux/amd64"
	@echo "                 and linux/arm64 stamped with version, commit and date, SHA256SUMS, SPDX SBOM"
	@echo "                 (VERSION=v1.2.3 make dist; PLATFORMS=linux/amd64 for one platform)"
	@echo "make proto       regenerate api/ with the pinned generators"

build:
	$(GO) build -o $(BIN)/persys ./cmd/persys
	$(GO) build -o $(BIN)/persysctl ./cmd/persysctl

deps:
	bash scripts/install-deps.sh

$(TOOLS)/protoc-gen-go:
	GOBIN=$(TOOLS) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)

$(TOOLS)/protoc-gen-go-grpc:
	GOBIN=$(TOOLS) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)

# Regenerates api/ from the .proto files. Each file goes to the Go package
# its go_package names: the messages to api/persys/v1 (persysv1), the
# services (*_service.proto) and their gRPC stubs to api/persys/v1/persysv1grpc,
# so that code using only the messages links no gRPC. api/google only
# declares google.rpc.Status for the import (its Go code is genproto's).
proto: $(TOOLS)/protoc-gen-go $(TOOLS)/protoc-gen-go-grpc
	bash scripts/install-deps.sh proto
	PATH=$(TOOLS):$$PATH protoc -I api -I /usr/include \
		--go_out=. --go_opt=module=github.com/persys-dev/compute \
		--go-grpc_out=. --go-grpc_opt=module=github.com/persys-dev/compute \
		api/persys/v1/*.proto

vet:
	$(GO) vet ./...

fmt:
	gofmt -l -w .

images: build
	bash scripts/build-images.sh

test: deps
	bash scripts/test.sh

demo:
	bash scripts/demo.sh up

demo-down:
	bash scripts/demo.sh down

bench: build
	bash scripts/bench.sh

# Release artifacts: see scripts/dist.sh.
dist:
	bash scripts/dist.sh

clean:
	rm -rf $(BIN) $(TOOLS) $(CURDIR)/dist
