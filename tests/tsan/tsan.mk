# tsan.mk - ThreadSanitizer run of the tests that start threads (the
# compute pool, the models at 1-3 threads, the loop and engine threads of
# the real server).  Included at the end of the main Makefile; relies on
# its BUILD, LIB_SRC, BASEFLAGS, ARCH_FLAGS, LDLIBS, CHECK_LIBS and
# DEPS_STAMP.
#
# `make tsan` builds the library with -fsanitize=thread into $(BUILD)/tsan/,
# the server as $(BUILD)/ssmd-tsan and the TSAN_TESTS binaries, and runs them
# with halt_on_error=1 (any report fails the run); `make test` runs it too.
# Never mixes objects with the ASan build (TSan and ASan cannot share a
# process).  TSAN_TESTS= (empty) leaves TSan out of `make test`.

TSAN_DIR   := $(BUILD)/tsan
TSAN_FLAGS := -O1 $(ARCH_FLAGS) -fno-math-errno -g -fsanitize=thread -fno-omit-frame-pointer
TSAN_OBJ   := $(LIB_SRC:%.c=$(TSAN_DIR)/%.o)
# The tests that exercise threads: the pool itself (test_cpu_kernels and any
# test_threadpool*), Mamba-2's chunked SSD over the pool (test_cpu_ssd), the models at 1-3 threads (test_s4 and test_s5 also
# run their scans over time chunks on pool threads), and test_serve + test_serve_limits, whose server
# ($(BUILD)/ssmd-tsan, chosen through SSMD_ITEST_SERVER) runs the loop
# thread, the engine thread and the compute pool under concurrent clients,
# cancellation, session TTL expiry and the SIGTERM drain, test_store
# (two replicas sharing Redis, the drain handoff), and test_scheduler (the
# engine thread against a test thread: hold, cancel, events).  About 70 s on 2
# busy cores from an empty $(BUILD)/tsan (build ~12 s, runs ~60 s).
TSAN_TESTS ?= $(wildcard tests/engine/test_threadpool*.c) tests/engine/test_cpu_kernels.c \
              tests/kernels/test_cpu_ssd.c \
              tests/models/test_mamba1.c tests/models/test_s4.c tests/models/test_s5.c \
              tests/integration/test_serve.c tests/integration/test_serve_limits.c \
              tests/integration/test_store.c tests/engine/test_scheduler.c
TSAN_BIN   := $(TSAN_TESTS:%.c=$(TSAN_DIR)/%)
TSAN_SUPP  := tests/tsan/suppressions.txt

.PHONY: tsan
.SECONDARY: $(TSAN_OBJ) $(TSAN_TESTS:%.c=$(TSAN_DIR)/%.o) $(TSAN_DIR)/tests/check_main.o

$(TSAN_DIR)/%.o: %.c | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(BASEFLAGS) $(TSAN_FLAGS) -c $< -o $@

$(BUILD)/libssmd-tsan.a: $(TSAN_OBJ)
	@rm -f $@; ar rcs $@ $^

$(BUILD)/ssmd-tsan: $(TSAN_DIR)/server/main.o $(BUILD)/libssmd-tsan.a
	$(CC) $(TSAN_FLAGS) -o $@ $^ $(LDLIBS)

$(TSAN_DIR)/tests/%: $(TSAN_DIR)/tests/%.o $(TSAN_DIR)/tests/check_main.o $(BUILD)/libssmd-tsan.a
	$(CC) $(TSAN_FLAGS) -o $@ $^ $(CHECK_LIBS) $(LDLIBS)

# OpenBLAS gets one thread (it is not instrumented; the engine sets it to 1
# too); Check's per-test timeouts are doubled for TSan's 5-15x slowdown; the
# model tests run at the best kernel level only (threading is the same at all).
tsan: $(TSAN_BIN) $(if $(filter tests/integration/%,$(TSAN_TESTS)),$(BUILD)/ssmd-tsan)
	@TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$(abspath $(TSAN_SUPP))" \
	  OPENBLAS_NUM_THREADS=1 CK_TIMEOUT_MULTIPLIER=2 BUILD=$(BUILD) SSMD_TEST_LEVELS=best \
	  SSMD_ITEST_SERVER=$(abspath $(BUILD)/ssmd-tsan) bash tests/tsan/run.sh $(TSAN_BIN)

ifneq ($(strip $(TSAN_TESTS)),)
test: tsan
endif

-include $(TSAN_OBJ:.o=.d) $(wildcard $(TSAN_DIR)/tests/*.d $(TSAN_DIR)/tests/*/*.d $(TSAN_DIR)/server/main.d)
