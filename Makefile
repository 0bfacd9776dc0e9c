# authchain — every target creates .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# CometBFT drives multi-validator networks (authchain abci). The version is pinned in one place,
# authchain/chain/abci/gen.py; `go install` builds it into ./bin and puts its .proto files in the
# Go module cache, from which the ABCI protobuf classes are generated (never committed).
COMETBFT_VERSION := $(shell sed -n 's/^COMETBFT_VERSION = "\(.*\)"/\1/p' src/authchain/chain/abci/gen.py)
COMETBFT := bin/cometbft
PROTO    := src/authchain/chain/abci/pb/.generated
# The load generator the CometBFT benchmark and flood tests send with (Go, standard library only).
REPLAY   := bin/replay
# CometBFT's example app as a process of its own (the benchmark's socket anchor).
ABCI_CLI := bin/abci-cli

.PHONY: demo devnet testnet test lint typecheck unit bench bench-cometbft cometbft replay abci-cli proto clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[ml,dev,cometbft]'
	touch $(STAMP)

$(COMETBFT): src/authchain/chain/abci/gen.py
	GOBIN=$(CURDIR)/bin go install github.com/cometbft/cometbft/cmd/cometbft@$(COMETBFT_VERSION)
	touch $(COMETBFT)

$(PROTO): $(STAMP) $(COMETBFT)
	$(BIN)/python -m authchain.chain.abci.gen

$(REPLAY): tools/replay/main.go tools/replay/go.mod
	cd tools/replay && GOBIN=$(CURDIR)/bin go install .

cometbft: $(COMETBFT)

replay: $(REPLAY)

$(ABCI_CLI): src/authchain/chain/abci/gen.py
	GOBIN=$(CURDIR)/bin go install github.com/cometbft/cometbft/abci/cmd/abci-cli@$(COMETBFT_VERSION)
	touch $(ABCI_CLI)

abci-cli: $(ABCI_CLI)

proto: $(PROTO)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks expts
	$(BIN)/ruff format --check src tests benchmarks expts

typecheck: $(STAMP) $(PROTO)
	$(BIN)/mypy

test: lint typecheck $(REPLAY)
	$(BIN)/pytest -q

unit: $(STAMP) $(PROTO)
	$(BIN)/pytest -q tests/unit

bench-cometbft: $(STAMP) $(PROTO) $(REPLAY) $(ABCI_CLI)
	$(BIN)/python benchmarks/cometbft.py $(BENCH_ARGS)

# The quick versions (a few minutes); each writes CSV and PNG under data/bench/. The README's
# tables come from the full ones: drop the arguments (and see each script's --help).
bench: $(STAMP)
	$(BIN)/python benchmarks/verify.py --tiny $(BENCH_ARGS)
	$(BIN)/python benchmarks/derivative.py --counts 1 100 10000 --repeats 3
	$(BIN)/python benchmarks/state.py --accounts 1000 10000 50000 --blocks 5
	$(BIN)/python benchmarks/claims.py --records 1000 10000 --repeats 20
	$(BIN)/python benchmarks/throughput.py --txs 2000
	$(BIN)/python benchmarks/timm_verify.py --models efficientnet_b0 resnet18 --epochs 1 --repeats 2

demo: $(STAMP)
	$(BIN)/authchain demo $(DEMO_ARGS)

devnet: $(STAMP)
	$(BIN)/authchain devnet

testnet: $(STAMP) $(PROTO)
	$(BIN)/authchain testnet --validators 4 --dir data/testnet

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache src/*.egg-info bin \
		src/authchain/chain/abci/pb
