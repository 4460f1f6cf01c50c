# One Makefile for the whole product. Objects go to build/<variant>/, binaries to bin/ (or
# build/asan/bin/ for the sanitizer variant). Each process folder declares itself in a prog.mk:
#
#   PROGRAMS += bus-publisher
#   bus-publisher_DIR := bus/publisher
#
# and every .c file in that folder is linked with lib/ into bin/<name>.

CC       ?= cc
VARIANT  ?= release
PKGS     := rdkafka libpq libmaxminddb libcurl jansson libjwt libcrypto libsystemd zlib
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

WARN     := -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wno-format-nonliteral -Wstrict-prototypes \
            -Wmissing-prototypes -Wno-missing-field-initializers
CFLAGS_BASE := -std=c11 -D_GNU_SOURCE -g $(WARN) -Ilib $(PKG_CFLAGS) -include lib/banned.h
LDLIBS   := $(PKG_LIBS) -lpthread -lm

ifeq ($(VARIANT),asan)
  BUILD    ?= build/asan
  BINDIR   ?= $(BUILD)/bin
  CFLAGS   := $(CFLAGS_BASE) -O1 -fno-omit-frame-pointer -fsanitize=address,undefined \
              -fno-sanitize-recover=undefined
  LDFLAGS  := -fsanitize=address,undefined
else
  BUILD    ?= build/release
  BINDIR   ?= bin
  CFLAGS   := $(CFLAGS_BASE) -O2
  LDFLAGS  :=
  # jemalloc for the programs of release builds: events are allocated on one thread and freed
  # on another (HTTP thread -> Kafka delivery thread), where glibc's arenas contend; 20-30 %
  # more throughput for the publisher's batches and the dispatcher (docs/performance.md).
  # The sanitizer build keeps glibc's malloc, which ASan replaces, and so do the unit tests
  # (test_jschema counts allocations by wrapping glibc's).
  MALLOC_LIBS := -Wl,--no-as-needed -ljemalloc -Wl,--as-needed
endif

# `make` alone: set-up (quick when all is there), then every program and unit test. Set here,
# before the prog.mk files and their rules, which would otherwise make bin/<first program> the goal.
.DEFAULT_GOAL := all

PROGRAMS :=
include $(wildcard bus/*/prog.mk services/*/prog.mk tools/*/prog.mk)
# The bench programs (bench/*/prog.mk) build with `make bench` (and `make test`, whose broker
# tests drive bus-kclient), not with `make`.
MAIN_PROGRAMS := $(PROGRAMS)
include $(wildcard bench/*/prog.mk)
BENCH_PROGRAMS := $(filter-out $(MAIN_PROGRAMS),$(PROGRAMS))

LIB_SRCS := $(wildcard lib/*.c lib/*/*.c)
LIB_OBJS := $(patsubst %.c,$(BUILD)/%.o,$(LIB_SRCS))
LIB_A    := $(BUILD)/libbus.a

UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRCS))

define PROG_RULES
$(1)_SRCS := $$(wildcard $$($(1)_DIR)/*.c)
$(1)_OBJS := $$(patsubst %.c,$(BUILD)/%.o,$$($(1)_SRCS))
$(BINDIR)/$(1): $$($(1)_OBJS) $(LIB_A)
	@mkdir -p $$(dir $$@)
	$$(CC) $$(LDFLAGS) -o $$@ $$($(1)_OBJS) $(LIB_A) $$($(1)_LIBS) $$(LDLIBS) $$(MALLOC_LIBS)
$(if $(filter $(1),$(BENCH_PROGRAMS)),BENCH_BINS,ALL_BINS) += $(BINDIR)/$(1)
endef
ALL_BINS :=
BENCH_BINS :=
$(foreach p,$(PROGRAMS),$(eval $(call PROG_RULES,$(p))))

.PHONY: all build asan deps test unit run bench bench-build fmt fmt-check clean docs-config fuzz install deb compdb chaos compat
all: deps
	@$(MAKE) --no-print-directory build
build: $(ALL_BINS) $(UNIT_BINS)
bench-build: $(BENCH_BINS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c -o $@ $<

# The version (git describe) goes into buildinfo.o alone, which is rebuilt when it changes: a
# stamp file is rewritten only when the text differs, so other objects never rebuild for it.
BUS_VERSION := $(shell git describe --always --dirty --tags 2>/dev/null || echo unknown)
$(BUILD)/version.stamp: FORCE
	@mkdir -p $(dir $@)
	@echo '$(BUS_VERSION)' | cmp -s - $@ || echo '$(BUS_VERSION)' > $@
$(BUILD)/lib/buildinfo.o: $(BUILD)/version.stamp
$(BUILD)/lib/buildinfo.o: CFLAGS += -DBUS_VERSION='"$(BUS_VERSION)"'
.PHONY: FORCE
FORCE:

$(LIB_A): $(LIB_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/tests/%: tests/unit/%.c $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LIB_A) -lcmocka $(LDLIBS)

asan:
	$(MAKE) VARIANT=asan build

# Installs Debian packages and the GeoIP database when missing; quick when all is there.
deps:
	@tools/deps.sh

# make test [TESTS=pattern] [ASAN=0] [JOBS=n]: every test, then once more under ASan+UBSan
# (docs/testing.md), in JOBS parallel workers (default: twice the cores). Prints the time of each
# phase (run.py, before its last line, `N passed, N failed`).
test: deps
	@t0=$$(date +%s); \
	$(MAKE) -j2 --no-print-directory build bench-build || exit 1; \
	t1=$$(date +%s); echo "phase build: $$((t1 - t0))s"; \
	$(if $(filter 0,$(ASAN)),,$(MAKE) -j2 --no-print-directory VARIANT=asan build bench-build || exit 1;) \
	$(MAKE) -j2 --no-print-directory fuzz || exit 1; \
	t2=$$(date +%s); echo "phase asan+fuzz build: $$((t2 - t1))s"; \
	MAKE_TEST_START=$$t0 MAKE_TEST_BUILD="build $$((t1 - t0))s, asan+fuzz build $$((t2 - t1))s" \
	/usr/bin/python3 tests/run.py --bin bin --build build/release --asan-bin build/asan/bin \
	    --asan-build build/asan $(if $(TESTS),--filter '$(TESTS)') \
	    $(if $(filter 0,$(ASAN)),--no-asan) $(if $(JOBS),--jobs $(JOBS))

# make fuzz: libFuzzer targets (clang, ASan+UBSan) into build/fuzz/. Each tests/fuzz/fuzz_X.c
# is linked with the sources listed in FUZZ_X_SRCS and lib/. A short run is part of the tests
# (tests/integration/test_broker.py); longer: build/fuzz/fuzz_broker_decode -max_total_time=600.
# Every lib/ (and broker) file is compiled once into build/fuzz/obj/ (instrumented for the
# fuzzer: fuzzer-no-link), and each target links those objects.
FUZZ_CFLAGS := -std=c11 -D_GNU_SOURCE -g -O1 -Ilib $(PKG_CFLAGS) -include lib/banned.h \
               -fsanitize=fuzzer-no-link,address,undefined
FUZZ_LDFLAGS := -fsanitize=fuzzer,address,undefined
FUZZ_OBJ := build/fuzz/obj
FUZZ_LIB_OBJS := $(patsubst %.c,$(FUZZ_OBJ)/%.o,$(LIB_SRCS))
$(FUZZ_OBJ)/%.o: %.c
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -MMD -MP -c -o $@ $<
FUZZ_broker_decode_SRCS := $(filter-out bus/broker/main.c,$(wildcard bus/broker/*.c))
FUZZ_jschema_SRCS :=
FUZZ_http_request_SRCS :=
FUZZ_TARGETS := broker_decode jschema http_request
define FUZZ_RULES
build/fuzz/fuzz_$(1): $(FUZZ_OBJ)/tests/fuzz/fuzz_$(1).o $$(patsubst %.c,$(FUZZ_OBJ)/%.o,$$(FUZZ_$(1)_SRCS)) $(FUZZ_LIB_OBJS)
	clang $(FUZZ_LDFLAGS) -o $$@ $$^ $(LDLIBS)
fuzz: build/fuzz/fuzz_$(1)
endef
$(foreach t,$(FUZZ_TARGETS),$(eval $(call FUZZ_RULES,$(t))))

# make chaos [TESTS=pattern]: the full fault suite (tests/chaos/ with CHAOS=full: every process
# killed and stopped, PostgreSQL killed and stopped, an endpoint down for two minutes, the
# broker's disk filled); `make test` runs its short form. Some faults need root (a tmpfs).
# One fault at a time (JOBS=1 unless given): the long faults measure recovery times.
chaos: deps build bench-build
	@CHAOS=full /usr/bin/python3 tests/run.py --bin bin --build build/release --no-asan \
	    --only chaos --jobs $(or $(JOBS),1) $(if $(TESTS),--filter '$(TESTS)')

# make compat [TESTS=pattern]: the long form of the compatibility suite (tests/compat/ with
# COMPAT=full); `make test` runs its short form.
compat: deps build bench-build
	@COMPAT=full /usr/bin/python3 tests/run.py --bin bin --build build/release --no-asan \
	    --only compat --jobs $(or $(JOBS),1) $(if $(TESTS),--filter '$(TESTS)')

unit: build
	@/usr/bin/python3 tests/run.py --bin bin --build build/release --no-asan --only unit

# make install [PREFIX=/usr/local] [DESTDIR=] [SYSCONFDIR=/etc]: programs, units, the release
# tree (config, SQL, web assets, templates) and example configuration (tools/install.sh).
install: build
	@PREFIX='$(or $(PREFIX),/usr/local)' DESTDIR='$(DESTDIR)' SYSCONFDIR='$(or $(SYSCONFDIR),/etc)' \
	    $(if $(UNITDIR),UNITDIR='$(UNITDIR)') tools/install.sh

# make deb: build/deb/bus-account-security_<version>_<arch>.deb (tools/mkdeb.sh).
deb: build
	@tools/mkdeb.sh

run: deps build
	@tools/run.sh

bench: deps build bench-build
	@bench/run.sh

# make docs-config: rewrites the configuration tables in docs/ from each binary's --config-doc.
docs-config: build
	@/usr/bin/python3 tools/config_docs.py --bin $(BINDIR) --write

# make compdb: compile_commands.json (clangd, clang-tidy) from the Makefile's own commands.
compdb:
	@/usr/bin/python3 tools/compdb.py

fmt:
	clang-format-16 -i $$(git ls-files '*.c' '*.h')

fmt-check:
	clang-format-16 --dry-run --Werror $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build bin

-include $(shell find build -name '*.d' 2>/dev/null)
