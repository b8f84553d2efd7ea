# Quick start: `make run` (fetch what is missing, build, serve) and `make test`.
CARGO ?= cargo
MODEL := models/e5-small-q4.bin
TEST_MODEL := models/minilm/config.json

.PHONY: run build test models test-models bench eval clippy fmt clean

run: models build
	./target/release/otklik serve

build:
	$(CARGO) build --release

models: $(MODEL)

$(MODEL):
	models/fetch

# A small standard Hugging Face sentence encoder, for the loader's tests.
test-models: $(TEST_MODEL)

$(TEST_MODEL):
	models/fetch minilm

test: models test-models
	$(CARGO) test --benches   # each criterion benchmark once, as a smoke test
	$(CARGO) test --lib --bins --tests -- --test-threads=2

bench: models
	$(CARGO) bench --bench nlu

eval: models build
	./target/release/otklik eval
	./target/release/otklik eval --test tests/data/heldout.tsv

clippy:
	$(CARGO) clippy --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --check

clean:
	rm -rf target data
