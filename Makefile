# drimbox - the two commands of the README, and the others.
#   make demo    install what is missing, build, start a demo PACS + drimbox
#   make test    install what is missing, build, run every test suite
#   make bench   the benchmarks (tests/bench/*), with Orthanc/DCMTK baselines
#   make asan    the test suite under AddressSanitizer + UBSan
#   make fuzz    the libFuzzer targets (tests/fuzz), FUZZ_SECONDS each
#   make check-valgrind  the unit tests, and the integration suite with
#                every drimboxd, under valgrind memcheck
#   make format  clang-format the sources in place
#   make install install under PREFIX (/usr/local), into DESTDIR when set:
#                binaries, viewer, pages, systemd unit, logrotate, docs

BUILD ?= build
PREFIX ?= /usr/local
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 60
MESON_TEST ?= meson test --print-errorlogs --num-processes 2

.PHONY: all deps deps-build build install test unit asan check-valgrind fuzz bench demo demo-stop format clean

all: build

deps:
	@.ci/install-deps

deps-build:
	@.ci/install-deps build runtime

$(BUILD)/build.ninja:
	meson setup $(BUILD) --prefix=$(PREFIX)

# docker/Dockerfile builds with the same two targets: build, install
build: deps-build $(BUILD)/build.ninja $(BUILD)/viewer/index.html
	ninja -C $(BUILD)

# The web viewer: npm packages pinned by viewer/package-lock.json, bundled
# by esbuild (viewer/build.mjs) into BUILD/viewer, which drimboxd serves.
VIEWER_SRC := viewer/build.mjs viewer/package.json $(wildcard viewer/src/*)

viewer/node_modules/.package-lock.json: viewer/package-lock.json
	cd viewer && npm ci --no-audit --no-fund

$(BUILD)/viewer/index.html $(ASAN_BUILD)/viewer/index.html: %/viewer/index.html: \
		viewer/node_modules/.package-lock.json $(VIEWER_SRC)
	node viewer/build.mjs $*/viewer

# meson install puts everything (conf/install-extra.sh: the viewer, and the
# reference configuration as drimbox.conf where there is none)
install: build
	meson configure $(BUILD) -Dprefix=$(PREFIX)
	ninja -C $(BUILD)
	meson install -C $(BUILD) --no-rebuild --destdir "$(DESTDIR)"

test: deps build
	$(MESON_TEST) -C $(BUILD)
	@tests/summary.py $(BUILD)/meson-logs/testlog.json

$(ASAN_BUILD)/build.ninja:
	meson setup $(ASAN_BUILD) -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debug

asan: deps $(ASAN_BUILD)/build.ninja $(ASAN_BUILD)/viewer/index.html
	ninja -C $(ASAN_BUILD)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		$(MESON_TEST) -C $(ASAN_BUILD) --suite unit --suite integration \
		--suite integration-pg --timeout-multiplier 3
	@tests/summary.py $(ASAN_BUILD)/meson-logs/testlog.json

# clang's libFuzzer, with ASan + UBSan; the corpus grows in tests/fuzz/
# memcheck errors and definite leaks fail a test (the daemon exits 99;
# the harness also reads its log); tests/valgrind.supp lists what the
# libraries below us leave behind by design
VALGRIND = valgrind --error-exitcode=99 --leak-check=full \
	--errors-for-leak-kinds=definite --num-callers=30 \
	--suppressions=$(CURDIR)/tests/valgrind.supp
check-valgrind: deps build
	$(MESON_TEST) -C $(BUILD) --suite unit --wrap='$(VALGRIND)' \
		--timeout-multiplier 20
	DRIMBOXD_WRAP='$(VALGRIND)' DRIMBOX_TIMEOUT_SCALE=20 \
		$(MESON_TEST) -C $(BUILD) --suite integration --timeout-multiplier 20
	@tests/summary.py $(BUILD)/meson-logs/testlog.json

$(FUZZ_BUILD)/build.ninja:
	CC=clang CXX=clang++ meson setup $(FUZZ_BUILD) -Dfuzz=true \
		-Db_sanitize=address,undefined -Db_lundef=false -Dwerror=false \
		-Dbuildtype=debugoptimized

fuzz: deps $(FUZZ_BUILD)/build.ninja
	ninja -C $(FUZZ_BUILD)
	tests/fuzz/run $(FUZZ_BUILD) $(FUZZ_SECONDS)

bench: deps build
	tests/bench/retrieve/run --runs 5 --json $(BUILD)/bench-retrieve.json
	tests/bench/dicomweb/run --runs 5 --json $(BUILD)/bench-dicomweb.json
	tests/bench/bigstudy/run --json $(BUILD)/bench-bigstudy.json
	tests/bench/publish/run --runs 3 --json $(BUILD)/bench-publish.json
	tests/bench/viewer/run --runs 5 --json $(BUILD)/bench-viewer.json
	tests/bench/remote/run --runs 3 --json $(BUILD)/bench-remote.json
	tests/bench/auth/run --runs 3 --json $(BUILD)/bench-auth.json
	tests/bench/load/run --json $(BUILD)/bench-load.json
	tests/bench/scale/run --json $(BUILD)/bench-scale.json
	tests/bench/startup/run --json $(BUILD)/bench-startup.json

demo: deps build
	tests/demo/run start

demo-stop:
	tests/demo/run stop

format:
	clang-format -i $$(git ls-files --cached --others --exclude-standard '*.c' '*.h' '*.cc')

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD) viewer/node_modules
