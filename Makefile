# raftcask — build, run, test, bench, fuzz.
#
#   make run     build (optimised) and start raftcask
#   make test    build with ASan+UBSan (SANITIZE=0 to turn them off) and run every test
#   make bench   build optimised and run the benchmarks in bench/
#   make fuzz    build the libFuzzer targets with clang and run each for FUZZ_SECONDS
#
# run, test, bench and fuzz first install missing Debian packages (scripts/install-deps;
# bench also the references only it uses: scripts/install-deps bench).

ifneq ($(filter test check,$(MAKECMDGOALS)),)
SANITIZE ?= 1
endif
SANITIZE ?= 0

CC ?= cc
ifeq ($(SANITIZE),1)
BUILD := build/san
OPT := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined -DRC_DEBUG=1
else
BUILD := build/rel
OPT := -O2 -g -DNDEBUG
endif

WARN := -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter
CFLAGS += -std=c11 -D_GNU_SOURCE $(OPT) $(WARN) -Iinclude -Isrc -MMD -MP -pthread
LDLIBS += -luv -pthread -lm -lzstd -lz -lssl -lcrypto

LIB_SRCS := $(sort $(filter-out src/main.c,$(wildcard src/*/*.c)))
LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/%.o)
LIB := $(BUILD)/libraftcask.a

UNIT_SRCS := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)
TEST_MAIN := $(BUILD)/tests/harness.o

BENCH_SRCS := $(sort $(wildcard bench/*.c))
BENCH_BINS := $(BENCH_SRCS:bench/%.c=$(BUILD)/bench/%)

BIN := $(BUILD)/raftcask

.PHONY: all run test check bench fuzz clean deps format unit docs
all: $(BIN) $(UNIT_BINS)

deps:
	@scripts/install-deps

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC    $<"
	@$(CC) $(CFLAGS) -c $< -o $@

$(LIB): $(LIB_OBJS)
	@mkdir -p $(dir $@)
	@rm -f $@
	@echo "  AR    $@"
	@ar rcs $@ $^

$(BIN): $(BUILD)/src/main.o $(LIB)
	@echo "  LINK  $@"
	@$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

$(TEST_MAIN): tests/unit/harness.c
	@mkdir -p $(dir $@)
	@$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/tests/%: tests/unit/%.c $(TEST_MAIN) $(LIB)
	@mkdir -p $(dir $@)
	@echo "  TEST  $@"
	@$(CC) $(CFLAGS) $< $(TEST_MAIN) $(LIB) -o $@ $(LDLIBS)

# Benchmarks link against the reference engines too.
$(BUILD)/bench/%: bench/%.c $(LIB)
	@mkdir -p $(dir $@)
	@echo "  BENCH $@"
	@$(CC) $(CFLAGS) $< $(LIB) -o $@ $(LDLIBS) -llmdb -lleveldb

run: deps $(BIN)
	$(BIN)

unit: $(UNIT_BINS)

test check: deps
	@$(MAKE) --no-print-directory SANITIZE=$(SANITIZE) all
	@BUILD=$(BUILD) SANITIZE=$(SANITIZE) scripts/run-tests

bench:
	@scripts/install-deps bench
	@$(MAKE) --no-print-directory SANITIZE=0 $(BENCH_BINS) build/rel/raftcask
	@for b in $(BENCH_BINS); do echo "== $$b"; $$b || exit 1; done
	@echo "== bench/server.py"; /usr/bin/python3 bench/server.py build/rel/raftcask
	@echo "== bench/cluster.py"; /usr/bin/python3 bench/cluster.py build/rel/raftcask
	@echo "== bench/install.py"; /usr/bin/python3 bench/install.py build/rel/raftcask

fuzz: deps
	@FUZZ_SECONDS=$${FUZZ_SECONDS:-60} scripts/run-fuzz

# docs/COMMANDS.md is generated from the command table.
docs: $(BIN)
	$(BIN) --commands-markdown > docs/COMMANDS.md

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build

-include $(shell find build -name '*.d' 2>/dev/null)
