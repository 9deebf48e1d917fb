# fastgate: the everyday commands.
#
#   make run         build (release) and serve `hello` over FastCGI on 127.0.0.1:9000
#   make test        install missing test tools (root + apt-get only), build, test, lint
#   make lint        clippy with warnings as errors, rustfmt check
#   make bench       nginx + fastgate throughput and memory figures (docs/BENCHMARKS.md)
#   make fuzz-build  check that the fuzz targets compile (needs cargo-fuzz's nightly setup)

CARGO ?= cargo
LISTEN ?= fastcgi://127.0.0.1:9000

# nginx, haproxy, lighttpd and apache2 live in /usr/sbin on Debian, which is
# not on an ordinary user's PATH; the tests look the tools up on PATH.
export PATH := $(PATH):/usr/sbin:/sbin

.PHONY: all run build test test-deps lint bench fuzz-build clean

all: build

build:
	$(CARGO) build --release

run: build
	./target/release/fastgate serve --listen $(LISTEN) --mount /=hello

test-deps:
	./scripts/install-test-deps.sh

test: test-deps
	$(CARGO) build --all-targets
	$(CARGO) test --no-fail-fast
	@echo "== the library alone, without the cli feature (no clap, no env_logger)"
	$(CARGO) test --no-default-features --test library --test allocations
	@echo "== the protocol suites again on the poll(2) backend"
	FASTGATE_POLLER=poll $(CARGO) test --no-fail-fast --test fastcgi --test scgi --test bad_input --test lifecycle --test half_close --test limits --test spool --test pubsub --test async_handlers --test status --test notify --test prefork --test cgi
	$(MAKE) lint
	$(MAKE) fuzz-build

lint:
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) fmt --all -- --check

bench: build
	./bench/run.sh

fuzz-build:
	@if [ -d fuzz ]; then cd fuzz && $(CARGO) check; else echo "no fuzz/ directory yet"; fi

clean:
	$(CARGO) clean
