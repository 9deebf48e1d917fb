# fastgate: the everyday commands.
#
#   make run         build (release) and serve `hello` over FastCGI on 127.0.0.1:9000
#   make test        install missing test tools (root + apt-get only), build, test, lint
#   make lint        clippy with warnings as errors, rustfmt check, cargo deny
#                    (licenses, banned crates, sources: deny.toml)
#   make bench       nginx + fastgate throughput and memory figures (docs/BENCHMARKS.md)
#   make fuzz        run every fuzz target SECONDS each (60), from a scratch copy of
#                    fuzz/corpus; fails on any crash (scripts/fuzz.sh, cargo-fuzz)
#   make fuzz-build  check that the fuzz targets compile (cargo check, no sanitizer)
#   make install     the binary, the man page and deploy/ under $(DESTDIR)$(PREFIX)
#   make uninstall   removes exactly what make install put there

CARGO ?= cargo
LISTEN ?= fastcgi://127.0.0.1:9000
# make fuzz: seconds per target.
SECONDS ?= 60

# make install: $(DESTDIR)$(PREFIX)/bin/fastgate, .../share/man/man1/fastgate.1
# and every file of deploy/ under .../share/fastgate/. BIN is the binary
# installed; given on the command line (`make install BIN=path`), nothing is
# built.
PREFIX ?= /usr/local
DESTDIR ?=
BIN ?= target/release/fastgate
BINDIR = $(DESTDIR)$(PREFIX)/bin
MAN1DIR = $(DESTDIR)$(PREFIX)/share/man/man1
SHAREDIR = $(DESTDIR)$(PREFIX)/share/fastgate
# Every file under deploy/, as paths relative to it (no spaces in them).
DEPLOY_FILES := $(shell cd deploy && find . -type f | sed 's|^\./||' | LC_ALL=C sort)
# `make install` builds the release binary only when BIN is the default.
ifeq ($(origin BIN),file)
INSTALL_BIN_DEP = build
endif

# nginx, haproxy, lighttpd and apache2 live in /usr/sbin on Debian, which is
# not on an ordinary user's PATH; the tests look the tools up on PATH.
export PATH := $(PATH):/usr/sbin:/sbin

.PHONY: all run build test test-deps lint bench fuzz fuzz-build clean install uninstall

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
	FASTGATE_POLLER=poll $(CARGO) test --no-fail-fast --test fastcgi --test scgi --test bad_input --test lifecycle --test half_close --test limits --test spool --test pubsub --test async_handlers --test status --test notify --test prefork --test cgi --test http
	$(MAKE) lint
	$(MAKE) fuzz-build

lint:
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) fmt --all -- --check
	./scripts/check-deps.sh

bench: build
	./scripts/install-bench-deps.sh
	./bench/run.sh

fuzz:
	./scripts/fuzz.sh $(SECONDS)

fuzz-build:
	@if [ -d fuzz ]; then cd fuzz && $(CARGO) check; else echo "no fuzz/ directory yet"; fi

clean:
	$(CARGO) clean

# Files keep their mode class: executables (deploy/spawn-fcgi/*.sh) 755,
# the rest 644.
install: $(INSTALL_BIN_DEP)
	install -d $(BINDIR) $(MAN1DIR) $(SHAREDIR)
	install -m 755 $(BIN) $(BINDIR)/fastgate
	install -m 644 man/fastgate.1 $(MAN1DIR)/fastgate.1
	@set -e; for f in $(DEPLOY_FILES); do \
		mode=644; [ -x "deploy/$$f" ] && mode=755; \
		echo "install -D -m $$mode deploy/$$f $(SHAREDIR)/$$f"; \
		install -D -m $$mode "deploy/$$f" "$(SHAREDIR)/$$f"; \
	done

# Removes the files install put there, then the directories under
# share/fastgate/ that this leaves empty; nothing else.
uninstall:
	rm -f $(BINDIR)/fastgate $(MAN1DIR)/fastgate.1
	@set -e; for f in $(DEPLOY_FILES); do \
		echo "rm -f $(SHAREDIR)/$$f"; rm -f "$(SHAREDIR)/$$f"; \
	done
	@if [ -d $(SHAREDIR) ]; then \
		find $(SHAREDIR) -depth -type d -empty -exec rmdir {} \; ; \
	fi
