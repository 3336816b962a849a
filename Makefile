# moor - one GNU Makefile (like Redis). `make help` lists the targets.
#
# Builds land in build/release (optimised) and build/debug (ASan + UBSan +
# LSan). The library is every src/*.c except the app files below; the
# app's `moor bench` is the folder src/bench/, `moor soak` src/soak/.

CC       ?= cc
PREFIX   ?= /usr/local
# The version lives in include/moor.h (MOOR_VERSION_MAJOR/MINOR/PATCH);
# the Makefile reads it from there, for -DMOOR_VERSION and libmoor.pc.
VERSION  := $(shell sed -n 's/^\#define MOOR_VERSION_\(MAJOR\|MINOR\|PATCH\) \([0-9]*\)$$/\2/p' include/moor.h | paste -sd.)

APP_SRCS := src/main.c src/serve.c src/config.c src/flags.c src/signals.c \
	src/sdnotify.c $(wildcard src/bench/*.c) $(wildcard src/soak/*.c)
LIB_SRCS := $(filter-out $(APP_SRCS),$(wildcard src/*.c))
UNIT_SRCS := $(wildcard tests/unit/test_*.c)

WARN     := -Wall -Wextra -Wshadow -Werror -Wno-unused-parameter
BASE_CFLAGS := -std=c11 -D_GNU_SOURCE -DMOOR_VERSION=\"$(VERSION)\" \
	-Iinclude -Isrc $(WARN) -fvisibility=hidden -fPIC -g -pthread
LIBS     := -lssl -lcrypto -lcares -lz -lm -pthread
# The `moor` binary alone (src/sdnotify.c) links libsystemd: not libmoor.
APP_LIBS := $(shell pkg-config --libs libsystemd 2>/dev/null || echo -lsystemd)

REL_CFLAGS := $(BASE_CFLAGS) -O2
DBG_CFLAGS := $(BASE_CFLAGS) -O1 -fno-omit-frame-pointer \
	-fsanitize=address,undefined -fno-sanitize-recover=all -DMOOR_DEBUG=1
DBG_LDFLAGS := -fsanitize=address,undefined

# Each compiler gets its own build tree, so `make CC=clang` rebuilds.
SUFFIX := $(if $(filter clang%,$(notdir $(CC))),-clang,)
REL := build/release$(SUFFIX)
DBG := build/debug$(SUFFIX)

lib_objs = $(patsubst src/%.c,$(1)/obj/%.o,$(LIB_SRCS))
app_objs = $(patsubst src/%.c,$(1)/obj/%.o,$(APP_SRCS))
unit_bins = $(patsubst tests/unit/%.c,$(1)/tests/%,$(UNIT_SRCS))

.PHONY: all release debug run test unit integration install uninstall \
	bench soak lint fuzz clean deps docs help format

all: release

help:
	@echo "make            build build/release/moor and libmoor"
	@echo "make run        install missing packages, build, start moor serve on 127.0.0.1:8080"
	@echo "make test       install missing packages, build plain + sanitizer, run every test"
	@echo "make debug      build build/debug/moor with ASan+UBSan+LSan"
	@echo "make install    PREFIX=$(PREFIX): moor, libmoor.a, libmoor.so, moor.h, libmoor.pc,"
	@echo "                moor.service (systemd), moor(1)"
	@echo "make bench      benchmarks (wrk vs nginx); figures go to docs/benchmarks.md"
	@echo "make soak       moor under moor soak, 10 minutes (SOAK_SECONDS): echo, pub/sub, SSE, HTTP, TLS, TCP; reports in build/soak/"
	@echo "make lint       layer rules, no raw malloc/free, struct conn kept private, clang-format"
	@echo "make fuzz       run the libFuzzer targets (FUZZ_SECONDS=60 each; parsers, fuzz_conn, fuzz_http_client)"

deps:
	@scripts/install-deps.sh

EXAMPLES := $(patsubst examples/%.c,$(REL)/examples/%,$(wildcard examples/*.c))
DBG_EXAMPLES := $(patsubst examples/%.c,$(DBG)/examples/%,$(wildcard examples/*.c))

release: $(REL)/moor $(REL)/libmoor.a $(REL)/libmoor.so $(EXAMPLES)
debug: $(DBG)/moor $(DBG_EXAMPLES)

run: deps release
	$(REL)/moor serve $(ARGS)

test: deps
	@$(MAKE) --no-print-directory release debug units
	@echo "== clang build (warnings are errors)"
	@$(MAKE) --no-print-directory CC=clang release >/dev/null
	@tests/run

units: $(call unit_bins,$(REL)) $(call unit_bins,$(DBG))

# --- compilation -----------------------------------------------------------
# Objects mirror src/: src/bench/x.c -> obj/bench/x.o.
HDRS := $(wildcard src/*.h src/*/*.h include/*.h)
$(REL)/obj/%.o: src/%.c $(HDRS) | $(REL)/obj
	@mkdir -p $(dir $@)
	$(CC) $(REL_CFLAGS) -c $< -o $@
$(DBG)/obj/%.o: src/%.c $(HDRS) | $(DBG)/obj
	@mkdir -p $(dir $@)
	$(CC) $(DBG_CFLAGS) -c $< -o $@

# The dashboard page is embedded by .incbin (src/dashboard.c).
$(REL)/obj/dashboard.o $(DBG)/obj/dashboard.o: src/dashboard.html

$(REL)/obj $(DBG)/obj $(REL)/tests $(DBG)/tests:
	@mkdir -p $@

$(REL)/libmoor-objs.a: $(call lib_objs,$(REL))
	@rm -f $@
	ar rcs $@ $^
$(DBG)/libmoor-objs.a: $(call lib_objs,$(DBG))
	@rm -f $@
	ar rcs $@ $^

# The installed static archive is one partially linked object whose
# internal (hidden) symbols are made local, so they cannot clash with a
# user's names.
$(REL)/libmoor.a: $(call lib_objs,$(REL))
	@rm -f $@
	ld -r -o $(REL)/libmoor-all.o $^
	objcopy --localize-hidden $(REL)/libmoor-all.o
	ar rcs $@ $(REL)/libmoor-all.o
$(REL)/libmoor.so: $(call lib_objs,$(REL))
	$(CC) -shared -Wl,-soname,libmoor.so.0 -o $@ $^ $(LIBS)

$(REL)/moor: $(call app_objs,$(REL)) $(REL)/libmoor-objs.a
	$(CC) -o $@ $^ $(LIBS) $(APP_LIBS)
$(DBG)/moor: $(call app_objs,$(DBG)) $(DBG)/libmoor-objs.a
	$(CC) $(DBG_LDFLAGS) -o $@ $^ $(LIBS) $(APP_LIBS)

# Examples are built the way a user would: only include/moor.h, linked
# against the installed-style static library.
$(REL)/examples/%: examples/%.c $(REL)/libmoor.a include/moor.h
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -Wall -Wextra -Werror -O2 -g -Iinclude -o $@ $< $(REL)/libmoor.a $(LIBS)
# The sanitizer build of each example, so the integration tests against
# build/debug run the library code an example drives under ASan + UBSan.
$(DBG)/examples/%: examples/%.c $(DBG)/libmoor-objs.a include/moor.h
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -Wall -Wextra -Werror -O1 -g -fno-omit-frame-pointer \
		-fsanitize=address,undefined -fno-sanitize-recover=all -Iinclude \
		-o $@ $< $(DBG)/libmoor-objs.a $(LIBS)

# Unit tests link the library objects, config.o (the app's flag table)
# and flags.o (the engine that reads it).
UNIT_APP_OBJS = $(1)/obj/config.o $(1)/obj/flags.o $(1)/obj/soak/soak_stats.o
# Fixtures that several unit tests share (tests/unit/*.h).
UNIT_HDRS := $(wildcard tests/unit/*.h)
$(REL)/tests/%: tests/unit/%.c $(UNIT_HDRS) $(REL)/libmoor-objs.a $(call UNIT_APP_OBJS,$(REL)) | $(REL)/tests
	$(CC) $(REL_CFLAGS) -o $@ $< $(call UNIT_APP_OBJS,$(REL)) $(REL)/libmoor-objs.a -lcmocka $(LIBS)
$(DBG)/tests/%: tests/unit/%.c $(UNIT_HDRS) $(DBG)/libmoor-objs.a $(call UNIT_APP_OBJS,$(DBG)) | $(DBG)/tests
	$(CC) $(DBG_CFLAGS) $(DBG_LDFLAGS) -o $@ $< $(call UNIT_APP_OBJS,$(DBG)) $(DBG)/libmoor-objs.a -lcmocka $(LIBS)

# --- install ---------------------------------------------------------------
install: release
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/pkgconfig \
		$(DESTDIR)$(PREFIX)/include
	install -m 755 $(REL)/moor $(DESTDIR)$(PREFIX)/bin/moor
	install -m 644 $(REL)/libmoor.a $(DESTDIR)$(PREFIX)/lib/libmoor.a
	install -m 755 $(REL)/libmoor.so $(DESTDIR)$(PREFIX)/lib/libmoor.so.0
	ln -sf libmoor.so.0 $(DESTDIR)$(PREFIX)/lib/libmoor.so
	install -m 644 include/moor.h $(DESTDIR)$(PREFIX)/include/moor.h
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' \
		libmoor.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/libmoor.pc
	# The systemd unit (its numbers from the flag table's defaults) and moor(1).
	install -d $(DESTDIR)$(PREFIX)/lib/systemd/system $(DESTDIR)$(PREFIX)/share/man/man1
	dist/gen-unit.sh $(REL)/moor $(PREFIX)/bin < dist/moor.service.in > $(REL)/moor.service
	install -m 644 $(REL)/moor.service $(DESTDIR)$(PREFIX)/lib/systemd/system/moor.service
	install -m 644 docs/moor.1 $(DESTDIR)$(PREFIX)/share/man/man1/moor.1

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/moor $(DESTDIR)$(PREFIX)/lib/libmoor.a \
		$(DESTDIR)$(PREFIX)/lib/libmoor.so $(DESTDIR)$(PREFIX)/lib/libmoor.so.0 \
		$(DESTDIR)$(PREFIX)/include/moor.h $(DESTDIR)$(PREFIX)/lib/pkgconfig/libmoor.pc \
		$(DESTDIR)$(PREFIX)/lib/systemd/system/moor.service \
		$(DESTDIR)$(PREFIX)/share/man/man1/moor.1

# --- the rest --------------------------------------------------------------
bench: deps release
	bench/run.sh

soak: deps release
	bench/soak.sh

lint:
	@scripts/lint.sh

docs: release
	$(REL)/moor serve --limits-md > docs/limits.md
	$(REL)/moor serve --metrics-md | \
		scripts/doc-section.sh docs/monitoring.md "moor serve --metrics-md"
	$(REL)/moor serve --man > docs/moor.1

fuzz:
	@scripts/fuzz.sh $(FUZZ_SECONDS)

format:
	clang-format -i src/*.c src/*.h src/*/*.c src/*/*.h include/*.h tests/unit/*.c

clean:
	rm -rf build
