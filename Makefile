# Fleetforge build. `make` builds every program into build/bin/.
#
#   make up | down    start / stop the farm on this machine (deploy/farm)
#   make test         install what is missing, build with -Werror, run every test
#   make asan         the same under AddressSanitizer + UBSan (build-asan/)
#   make fuzz         libFuzzer binaries with clang (build-fuzz/fuzz/)
#   make lint         cppcheck, clang-tidy and the banned-function check
#
# Targets that install packages (up, test, asan, lint, fuzz) run
# deploy/install-deps first and then a sub-make, so that pkg-config is asked
# only once the libraries are there.

BUILD ?= build
CC ?= cc
PYTHON ?= /usr/bin/python3

PKGS := openssl libgit2 libssh libarchive libcurl sqlite3 libmicrohttpd jansson \
        inih zlib libzstd libdeflate libseccomp
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS))
PKG_LIBS = $(shell pkg-config --libs $(PKGS))
CMOCKA_LIBS = $(shell pkg-config --libs cmocka)

WARN := -std=c11 -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
        -Wmissing-prototypes -Wformat=2 -Wno-format-zero-length -Wvla \
        -Wpointer-arith -Wundef -Wimplicit-fallthrough
HARDEN := -fstack-protector-strong -fstack-clash-protection -fcf-protection -fPIE
CPPFLAGS += -D_GNU_SOURCE -Ilib
LDFLAGS += -pie -Wl,-z,relro,-z,now -Wl,--as-needed

ifeq ($(SAN),1)
OPT := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
LDFLAGS += -fsanitize=address,undefined
else ifeq ($(FUZZ),1)
OPT := -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address,undefined
LDFLAGS += -fsanitize=address,undefined
else
OPT := -O2 -g -D_FORTIFY_SOURCE=2
endif

CFLAGS += $(OPT) $(WARN) $(HARDEN)
COMPILE = $(CC) $(CPPFLAGS) $(CFLAGS) $(PKG_CFLAGS) -MMD -MP

# component = folder:program. Each folder's main.c makes the program; its
# other files also go into build/lib/lib<name>.a for unit tests and fuzzers.
COMPONENTS := registry:ff-registry builder:ff-builder builder/cli:ff gitd:ff-gitd \
              workers:ff-worker device:ff-device base-images:ff-base-images

comp_dir = $(word 1,$(subst :, ,$(1)))
comp_prog = $(word 2,$(subst :, ,$(1)))
comp_name = $(subst /,_,$(call comp_dir,$(1)))

LIB_SRC := $(wildcard lib/*.c)
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
LIBFF := $(BUILD)/lib/libff.a

PROGRAMS :=
ARCHIVES :=

define component_rules
$(2)_SRC := $(wildcard $(1)/*.c)
$(2)_OBJ := $$($(2)_SRC:%.c=$(BUILD)/obj/%.o)
$(2)_LIBOBJ := $$(filter-out %/main.o,$$($(2)_OBJ))
ifneq ($$(strip $$($(2)_SRC)),)
ifneq ($$(wildcard $(1)/main.c),)
PROGRAMS += $(BUILD)/bin/$(3)
$(BUILD)/bin/$(3): $$($(2)_OBJ) $(LIBFF)
	@mkdir -p $$(@D)
	$$(CC) $$(CFLAGS) $$(LDFLAGS) -o $$@ $$^ $$(PKG_LIBS) -lm
endif
ARCHIVES += $(BUILD)/lib/lib$(2).a
$(BUILD)/lib/lib$(2).a: $$($(2)_LIBOBJ)
	@mkdir -p $$(@D)
	rm -f $$@
	$$(if $$^,ar rcs $$@ $$^,ar rcs $$@)
endif
endef
$(foreach c,$(COMPONENTS),$(eval $(call component_rules,$(call comp_dir,$(c)),$(call comp_name,$(c)),$(call comp_prog,$(c)))))

# Unit tests: tests/unit/<folder>/test_*.c, linked with that folder's archive.
UNIT_SRC := $(wildcard tests/unit/*/*.c tests/unit/*/*/*.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/unit/%)
unit_archive = $(if $(filter lib,$(1)),,$(BUILD)/lib/lib$(subst /,_,$(1)).a)

define unit_rule
$(BUILD)/tests/unit/$(1): $(BUILD)/obj/tests/unit/$(1).o $(call unit_archive,$(patsubst %/,%,$(dir $(1)))) $(LIBFF)
	@mkdir -p $$(@D)
	$$(CC) $$(CFLAGS) $$(LDFLAGS) -o $$@ $$^ $$(PKG_LIBS) $$(CMOCKA_LIBS) -lm
endef
$(foreach t,$(UNIT_SRC:tests/unit/%.c=%),$(eval $(call unit_rule,$(t))))

# Tests and fuzz targets of a component see its private header.
$(foreach c,$(COMPONENTS),$(eval \
  $(BUILD)/obj/tests/unit/$(call comp_dir,$(c))/%.o $(BUILD)/obj/tests/fuzz/$(call comp_name,$(c))_%.o: \
  CPPFLAGS += -I$(call comp_dir,$(c))))

# Fuzz targets: tests/fuzz/<component>_<what>.c; the prefix names the
# archive to link ("lib_" links only libff). Under gcc they are linked with
# the replay driver so every corpus runs in `make test`.
FUZZ_SRC := $(wildcard tests/fuzz/*.c)
FUZZ_NAMES := $(FUZZ_SRC:tests/fuzz/%.c=%)
# A fuzz target is named <component>_<what>; the longest component name
# that prefixes it wins, so builder_cli_args links builder/cli, not builder.
COMP_NAMES := $(foreach c,$(COMPONENTS),$(call comp_name,$(c)))
fuzz_comp = $(lastword $(sort $(foreach n,$(COMP_NAMES) lib,$(if $(filter $(n)_%,$(1)),$(n)))))
fuzz_archive = $(call unit_archive,$(subst _,/,$(call fuzz_comp,$(1))))
REPLAY_BIN := $(FUZZ_NAMES:%=$(BUILD)/tests/fuzz/%)
FUZZ_BIN := $(FUZZ_NAMES:%=$(BUILD)/fuzz/%)

define fuzz_rule
$(BUILD)/tests/fuzz/$(1): $(BUILD)/obj/tests/fuzz/$(1).o $(BUILD)/obj/tests/fuzz/driver/replay.o $(call fuzz_archive,$(1)) $(LIBFF)
	@mkdir -p $$(@D)
	$$(CC) $$(CFLAGS) $$(LDFLAGS) -o $$@ $$^ $$(PKG_LIBS) -lm
$(BUILD)/fuzz/$(1): $(BUILD)/obj/tests/fuzz/$(1).o $(call fuzz_archive,$(1)) $(LIBFF)
	@mkdir -p $$(@D)
	$$(CC) $$(CFLAGS) $$(LDFLAGS) -fsanitize=fuzzer -o $$@ $$^ $$(PKG_LIBS) -lm
endef
$(foreach f,$(FUZZ_NAMES),$(eval $(call fuzz_rule,$(f))))

# Helper programs used only by integration tests.
TESTBIN_SRC := $(wildcard tests/integration/bin/*.c)
TESTBIN := $(TESTBIN_SRC:tests/integration/bin/%.c=$(BUILD)/tests/bin/%)
$(BUILD)/tests/bin/%: $(BUILD)/obj/tests/integration/bin/%.o $(LIBFF)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(PKG_LIBS) -lm
# worker-*.c drive parts of the build engine from tests.
$(BUILD)/tests/bin/worker-%: $(BUILD)/obj/tests/integration/bin/worker-%.o \
  $(BUILD)/lib/libworkers.a $(LIBFF)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(PKG_LIBS) -lm
$(BUILD)/obj/tests/integration/bin/worker-%.o: CPPFLAGS += -Iworkers

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(@D)
	$(COMPILE) -c -o $@ $<

$(LIBFF): $(LIB_OBJ)
	@mkdir -p $(@D)
	rm -f $@
	ar rcs $@ $^

# Keep objects that pattern rules chain through (the test daemon's).
.SECONDARY:

.PHONY: all build tests deps up down test check asan fuzz fuzzers lint clean

all: build

build: $(LIBFF) $(ARCHIVES) $(PROGRAMS)

tests: build $(UNIT_BIN) $(REPLAY_BIN) $(TESTBIN)

deps:
	@deploy/install-deps

up: deps
	@$(MAKE) --no-print-directory build
	@deploy/farm up

down:
	@deploy/farm down

test: deps
	@$(MAKE) --no-print-directory check

check: tests
	@$(PYTHON) tests/run.py --build $(BUILD)

asan: deps
	@$(MAKE) --no-print-directory BUILD=build-asan SAN=1 check

fuzz: deps
	@$(MAKE) --no-print-directory BUILD=build-fuzz FUZZ=1 CC=clang fuzzers

fuzzers: $(FUZZ_BIN)

lint: deps
	@$(MAKE) --no-print-directory lint-run

lint-run:
	@deploy/lint

clean:
	rm -rf build build-asan build-fuzz

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
