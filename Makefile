# multifd — GNU Make build.  `make` builds build/multifd, the libraries and the tests.
# Quiet unless V=1.  SANITIZE=address,undefined or SANITIZE=thread for sanitizer builds
# (they go to their own build directory so they never mix objects with the normal build).

# The version lives in one place, include/multifd.h (MFD_VERSION_MAJOR/MINOR/PATCH), as zstd
# keeps it in zstd.h: the installed header must carry it anyway.
version_of = $(shell sed -n 's/^\#define MFD_VERSION_$(1)[[:blank:]]*\([0-9][0-9]*\).*/\1/p' include/multifd.h)
VERSION_MAJOR := $(call version_of,MAJOR)
VERSION_MINOR := $(call version_of,MINOR)
VERSION_PATCH := $(call version_of,PATCH)
VERSION := $(VERSION_MAJOR).$(VERSION_MINOR).$(VERSION_PATCH)

CC       ?= cc
# pkg-config packages the code links (none yet: zlib, zstd and lz4 come with the codecs).
PKG_DEPS :=
SANITIZE ?=
ifeq ($(SANITIZE),)
BUILD    ?= build
else
BUILD    ?= build-$(subst $(comma),-,$(SANITIZE))
endif
comma := ,

OPT      ?= -O2 -g
WERROR   ?= -Werror
CFLAGS   ?=
ifneq ($(PKG_DEPS),)
DEP_CFLAGS := $(shell pkg-config --cflags $(PKG_DEPS) 2>/dev/null)
DEP_LIBS   := $(shell pkg-config --libs $(PKG_DEPS) 2>/dev/null)
endif
BASE_CFLAGS := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wshadow -Wstrict-prototypes -Wno-unused-parameter -Wno-format-truncation \
	$(WERROR) $(OPT) -fPIC -fvisibility=hidden -pthread -MMD -MP -Iinclude -Isrc $(DEP_CFLAGS)
LDLIBS   := $(DEP_LIBS) -pthread -lm
ifneq ($(SANITIZE),)
# GCC 12 reports false stringop-overflow warnings on atomics when sanitizers instrument them.
BASE_CFLAGS += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -DMFD_SANITIZE=1 -Wno-stringop-overflow
LDFLAGS  += -fsanitize=$(SANITIZE)
endif
ALL_CFLAGS = $(BASE_CFLAGS) $(CFLAGS)
# The shared library must not leave a symbol undefined (sanitizer runtimes do, by design).
NO_UNDEFINED := $(if $(SANITIZE),,-Wl,-z,defs)

ifeq ($(V),1)
Q :=
say :=
else
Q := @
say = @printf '  %-6s %s\n' $(1) $(2);
endif

LIB_SRCS  := $(sort $(wildcard src/*/*.c))
CLI_SRCS  := $(sort $(wildcard cli/*.c))
VMM_SRCS  := $(sort $(wildcard vmm/*.c))
VMM_ASM   := $(sort $(wildcard vmm/guest/*.S))
TEST_SRCS := $(sort $(wildcard tests/t_*.c))
FUZZ_SRCS := $(sort $(wildcard fuzz/fuzz_*.c))

LIB_OBJS  := $(LIB_SRCS:%.c=$(BUILD)/%.o)
CLI_OBJS  := $(CLI_SRCS:%.c=$(BUILD)/%.o) $(VMM_SRCS:%.c=$(BUILD)/%.o) $(VMM_ASM:%.S=$(BUILD)/%.o)
TEST_BINS := $(TEST_SRCS:tests/%.c=$(BUILD)/tests/%)
FUZZ_BINS := $(FUZZ_SRCS:fuzz/%.c=$(BUILD)/fuzz/%)

# The shared library as liburing and zstd ship theirs: the file carries the full version, the
# soname the major one, and an unversioned development link makes `-lmultifd` (with -L build,
# or installed) take the shared library rather than the archive.
STATIC_LIB := $(BUILD)/libmultifd.a
SONAME     := libmultifd.so.$(VERSION_MAJOR)
SHARED_LIB := $(BUILD)/libmultifd.so.$(VERSION)
SHARED_LINKS := $(BUILD)/$(SONAME) $(BUILD)/libmultifd.so
PC_FILE    := $(BUILD)/multifd.pc
CLI_BIN    := $(BUILD)/multifd

# Installation (make install / uninstall): GNU directory variables, DESTDIR for staging.
PREFIX     ?= /usr/local
LIBDIR     ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
BINDIR     ?= $(PREFIX)/bin
MANDIR     ?= $(PREFIX)/share/man
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
DESTDIR    ?=
MAN1       := $(sort $(wildcard man/*.1))
MAN3       := $(sort $(wildcard man/*.3))

.PHONY: all lib cli tests fuzz test demo deps deps-check clean fuzz-libfuzzer install uninstall
all: deps-check lib cli tests fuzz

lib: $(STATIC_LIB) $(SHARED_LIB) $(SHARED_LINKS) $(PC_FILE)
cli: $(CLI_BIN)
tests: $(TEST_BINS)
fuzz: $(FUZZ_BINS)

# Order: `make test` and `make demo` install what is missing (deps) before anything checks
# (deps-check) or compiles (every object waits for deps-check), so `make -j2 test` works on a
# fresh machine.
deps-check:
	@scripts/deps.sh --check

deps:
	@scripts/deps.sh

ifneq ($(filter deps test demo,$(MAKECMDGOALS)),)
deps-check: deps
endif

$(BUILD)/%.o: %.c | deps-check
	@mkdir -p $(dir $@)
	$(call say,CC,$<)$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(BUILD)/%.o: %.S | deps-check
	@mkdir -p $(dir $@)
	$(call say,AS,$<)$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(STATIC_LIB): $(LIB_OBJS)
	$(call say,AR,$@)rm -f $@ && ar rcs $@ $^

$(SHARED_LIB): $(LIB_OBJS) src/multifd.map
	$(call say,LD,$@)$(CC) -shared -Wl,-soname,$(SONAME) $(NO_UNDEFINED) \
		-Wl,--version-script=src/multifd.map $(LDFLAGS) -o $@ $(LIB_OBJS) $(LDLIBS)

$(SHARED_LINKS): $(SHARED_LIB)
	$(call say,LN,$@)ln -sf $(notdir $(SHARED_LIB)) $@

# multifd.pc for the build tree's prefix; install writes the installed one.
pc_for = sed -e 's|@PREFIX@|$(1)|' -e 's|@LIBDIR@|$(2)|' -e 's|@INCLUDEDIR@|$(3)|' \
	-e 's|@VERSION@|$(VERSION)|' -e 's|@REQUIRES@|$(PKG_DEPS)|' src/multifd.pc.in
$(PC_FILE): src/multifd.pc.in include/multifd.h Makefile
	@mkdir -p $(dir $@)
	$(call say,GEN,$@)$(call pc_for,$(CURDIR),$(CURDIR)/$(BUILD),$(CURDIR)/include) > $@

$(CLI_BIN): $(CLI_OBJS) $(STATIC_LIB)
	$(call say,LD,$@)$(CC) $(LDFLAGS) -o $@ $(CLI_OBJS) $(STATIC_LIB) $(LDLIBS)

# Tests link the static library so they can reach internal (mfd__) symbols too.
$(BUILD)/tests/%: tests/%.c $(STATIC_LIB) tests/tutil.h
	@mkdir -p $(dir $@)
	$(call say,CC,$@)$(CC) $(ALL_CFLAGS) -Itests $(LDFLAGS) -o $@ $< $(STATIC_LIB) $(LDLIBS)

# Fuzz targets as plain programs that replay a corpus (fuzz/replay.c supplies main()).
$(BUILD)/fuzz/%: fuzz/%.c fuzz/replay.c $(STATIC_LIB)
	@mkdir -p $(dir $@)
	$(call say,CC,$@)$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $< fuzz/replay.c $(STATIC_LIB) $(LDLIBS)

# fuzz_ctl includes the CLI's parser sources (two sources in one -MMD command leave only the
# second one's dependencies in the .d file, so these are listed here).
$(BUILD)/fuzz/fuzz_ctl: cli/ctl_json.c cli/ctl_json.h cli/ctl_request.c cli/ctl_request.h

# libFuzzer builds (clang): make fuzz-libfuzzer; binaries in build-libfuzzer/.  The library is
# instrumented for coverage too (fuzzer-no-link), so the fuzzer sees inside the decoders.
CLANG_FUZZ_FLAGS := -Wno-unknown-warning-option -fsanitize=fuzzer-no-link
fuzz-libfuzzer:
	$(MAKE) CC=clang BUILD=build-libfuzzer SANITIZE=address,undefined CFLAGS="$(CLANG_FUZZ_FLAGS)" lib
	@mkdir -p build-libfuzzer/fuzz
	@for f in $(FUZZ_SRCS); do n=$$(basename $$f .c); \
	  echo "  FUZZ   build-libfuzzer/fuzz/$$n"; \
	  clang $(BASE_CFLAGS) -Wno-unknown-warning-option -fsanitize=fuzzer,address,undefined \
	    -o build-libfuzzer/fuzz/$$n $$f build-libfuzzer/libmultifd.a $(LDLIBS) || exit 1; done

test: deps all
	@scripts/runtests.sh $(BUILD)

# The demo needs the command only (not the tests or fuzz targets).
demo: deps cli
	$(CLI_BIN) demo

# Header, libraries (file, soname link, development link, archive), multifd.pc, the command
# and the man pages (section 1 for the command, 3 for the API; pages that only point to
# another one are .so links).
install: lib cli
	install -d $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(PKGCONFIGDIR) \
		$(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man3
	install -m 644 include/multifd.h $(DESTDIR)$(INCLUDEDIR)/multifd.h
	install -m 755 $(SHARED_LIB) $(DESTDIR)$(LIBDIR)/$(notdir $(SHARED_LIB))
	ln -sf $(notdir $(SHARED_LIB)) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(notdir $(SHARED_LIB)) $(DESTDIR)$(LIBDIR)/libmultifd.so
	install -m 644 $(STATIC_LIB) $(DESTDIR)$(LIBDIR)/libmultifd.a
	$(call pc_for,$(PREFIX),$(LIBDIR),$(INCLUDEDIR)) > $(DESTDIR)$(PKGCONFIGDIR)/multifd.pc
	install -m 755 $(CLI_BIN) $(DESTDIR)$(BINDIR)/multifd
	$(if $(MAN1),install -m 644 $(MAN1) $(DESTDIR)$(MANDIR)/man1/)
	install -m 644 $(MAN3) $(DESTDIR)$(MANDIR)/man3/

uninstall:
	rm -f $(DESTDIR)$(INCLUDEDIR)/multifd.h $(DESTDIR)$(PKGCONFIGDIR)/multifd.pc \
		$(DESTDIR)$(LIBDIR)/$(notdir $(SHARED_LIB)) $(DESTDIR)$(LIBDIR)/$(SONAME) \
		$(DESTDIR)$(LIBDIR)/libmultifd.so $(DESTDIR)$(LIBDIR)/libmultifd.a \
		$(DESTDIR)$(BINDIR)/multifd \
		$(addprefix $(DESTDIR)$(MANDIR)/man1/,$(notdir $(MAN1))) \
		$(addprefix $(DESTDIR)$(MANDIR)/man3/,$(notdir $(MAN3)))

clean:
	rm -rf build build-* 

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
