# ssmd - one entry point: make, make run, make test, make bench.
#
# Sources are found by wildcard: a new engine/foo.c or tests/engine/test_foo.c
# is built without editing this file.  Every test binary is built with
# AddressSanitizer + UndefinedBehaviorSanitizer (LeakSanitizer included).

BUILD     ?= build
CC        ?= cc
PYTHON    ?= /usr/bin/python3
PORT      ?= 8080
MODEL     ?= models/default
# Debian packages the build and tests need; `make deps` installs missing ones.
DEB_PKGS  := build-essential pkg-config libjansson-dev libuv1-dev libmicrohttpd-dev \
             check libsubunit-dev libopenblas-dev libcurl4-openssl-dev libhiredis-dev \
             libpcre2-dev
# Only `make test` needs these (real load balancers and Redis in front of and
# behind real servers, promtool, a Python venv for the real-client and
# OpenAPI checks); `make`/`make run` do not.
TEST_DEB_PKGS := nginx-light haproxy tini redis-server prometheus python3-venv
# pip packages for those checks, in $(TEST_VENV) (never the runtime).
TEST_PIP_PKGS := openai schemathesis
TEST_VENV     := $(BUILD)/venv

PKG_MODS  := jansson libuv libmicrohttpd openblas hiredis libpcre2-8
# Recursive (=) so pkg-config runs after `deps` has installed the packages.
PKG_CFLAGS = $(shell pkg-config --cflags $(PKG_MODS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKG_MODS) 2>/dev/null)
CHECK_LIBS = $(shell pkg-config --libs check 2>/dev/null)

# The target architecture ($(CC)'s: a cross compiler names its own).  The
# default ARCH_FLAGS is that architecture's baseline, so that one binary runs
# on every CPU of it: the SIMD kernels are compiled once per level
# (kernels/cpu/cpu_isa_*.c, flags below) and chosen at run time by cpuid
# (kernels/cpu/cpu_level.c; SSMD_CPU=scalar|avx2|avx512|neon forces one).
# ARCH_FLAGS=-march=native tunes the rest of the code to this machine.
SSMD_ARCH := $(shell $(CC) -dumpmachine 2>/dev/null | cut -d- -f1)
ifeq ($(SSMD_ARCH),x86_64)
ARCH_FLAGS ?= -march=x86-64-v2
else
ARCH_FLAGS ?=
endif
WARN      := -Wall -Wextra -Wno-unused-parameter -Wshadow -Wstrict-prototypes
BASEFLAGS  = -std=c11 -D_GNU_SOURCE -I. $(WARN) $(PKG_CFLAGS) -pthread -MMD -MP
OPTFLAGS  ?= -O3 $(ARCH_FLAGS) -fno-math-errno -g
SANFLAGS  := -O1 $(ARCH_FLAGS) -fno-math-errno -g -fsanitize=address,undefined \
             -fno-sanitize-recover=undefined -fno-omit-frame-pointer
LDLIBS     = $(PKG_LIBS) -lcurl -lm -pthread

# Every room's C sources; the CUDA sources (kernels/cuda/*.cu) build only
# with `make cuda`.
LIB_SRC   := $(sort $(wildcard engine/*.c engine/*/*.c kernels/*.c kernels/cpu/*.c models/*.c server/*.c))
LIB_SRC   := $(filter-out server/main.c,$(LIB_SRC))
TEST_SRC  := $(sort $(wildcard tests/*/test_*.c))
BENCH_SRC := $(sort $(wildcard bench/*.c))

REL_OBJ   := $(LIB_SRC:%.c=$(BUILD)/rel/%.o)
SAN_OBJ   := $(LIB_SRC:%.c=$(BUILD)/san/%.o)
TEST_BIN  := $(TEST_SRC:%.c=$(BUILD)/san/%)
BENCH_BIN := $(BENCH_SRC:%.c=$(BUILD)/rel/%)

DEPS_STAMP := $(BUILD)/.deps-ok

# Each kernel level's flags, whatever ARCH_FLAGS says (explicit -m options
# win over -march): the scalar level stays below AVX even in a native
# build, the AVX2 one never uses AVX-512.  Every build dir (rel, san, fuzz,
# tsan) compiles with $(BASEFLAGS), so they all get these.
ifeq ($(SSMD_ARCH),x86_64)
ISA_AVX2_FLAGS := -mavx2 -mfma -mf16c
%/kernels/cpu/cpu_isa_scalar.o: BASEFLAGS += -mno-avx
%/kernels/cpu/cpu_isa_avx2.o: BASEFLAGS += $(ISA_AVX2_FLAGS) -mno-avx512f
%/kernels/cpu/cpu_isa_avx2vnni.o: BASEFLAGS += $(ISA_AVX2_FLAGS) -mavxvnni -mno-avx512f
%/kernels/cpu/cpu_isa_avx512.o: BASEFLAGS += $(ISA_AVX2_FLAGS) -mavx512f -mavx512bw -mavx512dq -mavx512vl
%/kernels/cpu/cpu_isa_avx512vnni.o: BASEFLAGS += $(ISA_AVX2_FLAGS) -mavx512f -mavx512bw -mavx512dq -mavx512vl -mavx512vnni
else ifeq ($(SSMD_ARCH),aarch64)
%/kernels/cpu/cpu_isa_neon_dotprod.o: BASEFLAGS += -march=armv8.2-a+dotprod
endif

.PHONY: all deps run test bench bench-peer bench-serve fixtures clean train install
all: $(BUILD)/ssmd

# Installs the Debian packages in $(1) that are missing (as root, or
# through sudo); the caller touches its stamp on success.
define apt_install
	@missing=""; for p in $(1); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "make: installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null || exit 1; \
	fi
endef

$(DEPS_STAMP):
	$(call apt_install,$(DEB_PKGS))
	@mkdir -p $(BUILD) && touch $@
TEST_DEPS_STAMP := $(BUILD)/.test-deps-ok
$(TEST_DEPS_STAMP): | $(DEPS_STAMP)
	$(call apt_install,$(TEST_DEB_PKGS))
	@touch $@
# A failed pip install is a warning: the checks that need the venv then
# report themselves skipped instead of stopping every other test.
$(TEST_VENV)/.ok: | $(TEST_DEPS_STAMP)
	@$(PYTHON) -m venv $(TEST_VENV) && \
	  $(TEST_VENV)/bin/python -m pip install -q --disable-pip-version-check $(TEST_PIP_PKGS) && touch $@ || \
	  echo "make: WARNING: pip install $(TEST_PIP_PKGS) failed; the openai/schemathesis checks will be skipped"
deps: $(DEPS_STAMP)

$(BUILD)/rel/%.o: %.c | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(BASEFLAGS) $(OPTFLAGS) -c $< -o $@

$(BUILD)/san/%.o: %.c | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(BASEFLAGS) $(SANFLAGS) -c $< -o $@

$(BUILD)/libssmd.a: $(REL_OBJ)
	@rm -f $@; ar rcs $@ $^

$(BUILD)/libssmd-san.a: $(SAN_OBJ)
	@rm -f $@; ar rcs $@ $^

$(BUILD)/ssmd: $(BUILD)/rel/server/main.o $(BUILD)/libssmd.a
	$(CC) $(OPTFLAGS) -o $@ $^ $(LDLIBS)

# The sanitized binary is what integration tests start.
$(BUILD)/ssmd-san: $(BUILD)/san/server/main.o $(BUILD)/libssmd-san.a
	$(CC) $(SANFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/san/tests/%: $(BUILD)/san/tests/%.o $(BUILD)/san/tests/check_main.o $(BUILD)/libssmd-san.a
	$(CC) $(SANFLAGS) -o $@ $^ $(CHECK_LIBS) $(LDLIBS)

$(BUILD)/rel/bench/%: $(BUILD)/rel/bench/%.o $(BUILD)/libssmd.a
	$(CC) $(OPTFLAGS) -o $@ $^ $(LDLIBS)

run: $(BUILD)/ssmd
	@[ -f $(MODEL)/config.json ] || { echo "make run: no model in $(MODEL); run with MODEL=DIR (a Hugging Face Mamba directory)"; exit 1; }
	./$(BUILD)/ssmd serve --host 127.0.0.1 --port $(PORT) --model $(MODEL)

# Unit tests (Check) then integration tests (real binary on loopback); the
# runner prints each suite's Check summary and a final "N passed, N failed".
test: $(TEST_BIN) $(BUILD)/ssmd $(BUILD)/ssmd-san | $(TEST_DEPS_STAMP) $(TEST_VENV)/.ok
	@BUILD=$(BUILD) TEST_PYTHON=$(abspath $(TEST_VENV))/bin/python bash tests/run.sh $(TEST_BIN)

# The multi-replica deployment test alone (3 replicas, nginx, HAProxy,
# Redis on loopback); `make test` runs it too.
.PHONY: test-deploy test-container test-compose soak
test-deploy: $(BUILD)/ssmd $(BUILD)/ssmd-san | $(TEST_DEPS_STAMP)
	@BUILD=$(BUILD) bash tests/integration/test_deploy.sh

# Builds the CPU image and runs it end to end (needs a docker daemon; makes
# its Debian base locally with debootstrap when the daemon lacks one).
test-container: $(BUILD)/ssmd
	@BUILD=$(BUILD) bash deploy/tests/container_e2e.sh

# Brings up deploy/docker-compose.yml (3 replicas, Redis, nginx) and follows
# one session across stopped and killed replicas (same needs as above).
test-compose: $(BUILD)/ssmd
	@BUILD=$(BUILD) bash deploy/tests/compose_e2e.sh

# Mixed traffic against one server for SOAK_SECONDS; fails on RSS growth or
# leaked slots (tests/soak/run.sh).
SOAK_SECONDS ?= 1800
soak: $(BUILD)/ssmd $(BUILD)/rel/bench/soak
	@BUILD=$(BUILD) SOAK_SECONDS=$(SOAK_SECONDS) bash tests/soak/run.sh

bench: $(BENCH_BIN) $(BUILD)/ssmd
	@BUILD=$(BUILD) PYTHON=$(PYTHON) bash bench/run.sh

# ssmd beside llama.cpp on the same GGUF files (f32, f16, Q8_0, Q4_K, Q4_0),
# one interleaved run; builds llama.cpp from LLAMACPP_DIR when needed.
# LEVELS="avx512 avx2" measures each kernel level this CPU has.
bench-peer: $(BUILD)/rel/bench/bench_engine $(BUILD)/ssmd
	@BUILD=$(BUILD) PYTHON=$(PYTHON) LLAMACPP_DIR=$(LLAMACPP_DIR) bash bench/peer.sh

# Load generator against the real server: throughput and TTFT/ITL/e2e
# latency per concurrency level.
bench-serve: $(BUILD)/rel/bench/bench_serve $(BUILD)/ssmd
	$(BUILD)/rel/bench/bench_serve --server $(BUILD)/ssmd --model $(or $(MODEL),tests/fixtures/mamba/untied_bias) --concurrency 1,4,16
	@echo "mixed-length load (prompts of 16-4000 tokens): whole prompts in one step, as before issue 16, then the default --max-step-tokens"
	$(BUILD)/rel/bench/bench_serve --server $(BUILD)/ssmd --model $(or $(MODEL),models/default) --concurrency 16,64 \
	  --prompt-len 16-4000 --requests $(or $(MIXED_REQUESTS),128) --server-arg --max-step-tokens --server-arg 1000000
	$(BUILD)/rel/bench/bench_serve --server $(BUILD)/ssmd --model $(or $(MODEL),models/default) --concurrency 16,64 \
	  --prompt-len 16-4000 --requests $(or $(MIXED_REQUESTS),128)

# Retrains the embedded default model from the KJV text (CPU, ~25 min;
# needs python3-torch, see models/train/README.md).
train: $(BUILD)/ssmd
	SSMD=$(BUILD)/ssmd bash models/train/run.sh

# Regenerates the committed reference fixtures (needs PyTorch + transformers:
# Debian's python3-torch and pip's transformers; never needed by `make test`).
# gen_s5.py needs only numpy (and torch through gen_s4's helpers).
fixtures:
	$(PYTHON) tests/fixtures/gen_mamba.py
	$(PYTHON) tests/fixtures/gen_tokenizer.py
	$(PYTHON) tests/fixtures/gen_s5.py

clean:
	rm -rf $(BUILD)

# Installs under $(DESTDIR)$(PREFIX): bin/ssmd, the default model in
# share/ssmd/models/default and the docs in share/doc/ssmd.  ssmd finds that
# model from its own path (server/model_dir.c), so the installed tree works
# from any directory and may be moved as a whole.
PREFIX  ?= /usr/local
DESTDIR ?=
install: $(BUILD)/ssmd
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/ssmd/models/default $(DESTDIR)$(PREFIX)/share/doc/ssmd
	install -m 755 $(BUILD)/ssmd $(DESTDIR)$(PREFIX)/bin/ssmd
	install -m 644 $(wildcard models/default/*) $(DESTDIR)$(PREFIX)/share/ssmd/models/default/
	install -m 644 README.md proto/openapi.yaml proto/state-format.md $(DESTDIR)$(PREFIX)/share/doc/ssmd/

-include $(REL_OBJ:.o=.d) $(SAN_OBJ:.o=.d) $(wildcard $(BUILD)/*/tests/*/*.d $(BUILD)/*/server/*.d $(BUILD)/*/bench/*.d)

# ---- CUDA backend (kernels/) ------------------------------------------------
# `make cuda` links $(BUILD)/ssmd with the CUDA backend (nvcc for sm_80 and
# sm_90, cuBLAS); --backend cuda then works, cpu stays the default.
# `make test` compiles every kernel with nvcc when nvcc is present
# (cuda-check, compile only), and everywhere runs the same kernels through
# the CPU emulation harness (kernels/emu, tests/kernels/: g++ with the shim,
# sanitizers on).  `make bench-cuda` needs a GPU.
ifeq ($(origin NVCC),undefined)
NVCC       := $(shell command -v nvcc 2>/dev/null)
endif
CUDA_HOME  ?= $(if $(NVCC),$(patsubst %/bin/nvcc,%,$(NVCC)),/usr/local/cuda)
CUDA_GENCODE := -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=[sm_90,compute_90]
NVCCFLAGS  ?= -std=c++17 -O3 -I. $(CUDA_GENCODE) -Xcompiler -Wall,-Wextra,-Wno-unused-parameter -MMD -MP
CUDA_LIBS   = -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcublas -lcudart
CXXWARN    := -Wall -Wextra -Wno-unused-parameter -Wshadow
EMU_FLAGS   = -std=c++17 -I. $(CXXWARN) -fno-strict-aliasing -pthread -MMD -MP

KC_CU      := $(sort $(wildcard kernels/cuda/*.cu))
KC_EMU_CU  := $(filter-out kernels/cuda/backend_cuda.cu,$(KC_CU)) $(sort $(wildcard kernels/emu/*.cu))
KC_EMU_CPP := $(sort $(wildcard kernels/emu/*.cpp))
CUDA_OBJ   := $(KC_CU:%.cu=$(BUILD)/cuda/%.o)
CUDA_CHECK_OBJ := $(CUDA_OBJ) $(patsubst %.cu,$(BUILD)/cuda/%.o,$(wildcard kernels/emu/*.cu))
EMU_OBJ    := $(KC_EMU_CU:%.cu=$(BUILD)/san/%.cu.o) $(KC_EMU_CPP:%.cpp=$(BUILD)/san/%.o) \
              $(if $(wildcard kernels/cuda/backend_cuda.cu),$(BUILD)/san/kernels/cuda/backend_cuda.mock.o)

.PHONY: cuda cuda-check bench-cuda
.SECONDARY: $(EMU_OBJ)

$(BUILD)/cuda/%.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -c $< -o $@

$(BUILD)/san/kernels/%.cu.o: kernels/%.cu | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CXX) -x c++ $(EMU_FLAGS) $(SANFLAGS) -c $< -o $@

# The real CUDA backend against the runtime/cuBLAS mock (kernels/emu/mock).
$(BUILD)/san/kernels/%.mock.o: kernels/%.cu | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CXX) -x c++ $(EMU_FLAGS) -Ikernels/emu/mock $(SANFLAGS) -c $< -o $@

$(BUILD)/san/kernels/%.o: kernels/%.cpp | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CXX) $(EMU_FLAGS) $(SANFLAGS) -c $< -o $@

# Kernel tests link the emulated kernels (a shorter stem than the generic
# test rule, so this one applies to tests/kernels/).
$(BUILD)/san/tests/kernels/%: $(BUILD)/san/tests/kernels/%.o $(BUILD)/san/tests/check_main.o $(EMU_OBJ) $(BUILD)/libssmd-san.a
	$(CXX) $(SANFLAGS) -o $@ $^ $(CHECK_LIBS) $(LDLIBS)

ifneq ($(NVCC),)
cuda-check: $(CUDA_CHECK_OBJ)
else
cuda-check:
	@echo "cuda-check: nvcc not found; CUDA kernels not compiled (the emulated tests still run)"
endif
test: cuda-check

cuda: $(BUILD)/rel/server/main.o $(CUDA_OBJ) $(BUILD)/libssmd.a
	$(CXX) $(OPTFLAGS) -o $(BUILD)/ssmd $^ $(LDLIBS) $(CUDA_LIBS)

$(BUILD)/cuda/bench_cuda: $(BUILD)/rel/bench/bench_cuda.o $(CUDA_OBJ) $(BUILD)/libssmd.a
	$(CXX) $(OPTFLAGS) -o $@ $^ $(LDLIBS) $(CUDA_LIBS)

bench-cuda: $(BUILD)/cuda/bench_cuda
	$(BUILD)/cuda/bench_cuda --out $(BUILD)/bench/cuda $(if $(MODEL),--model $(MODEL))

-include $(EMU_OBJ:.o=.d) $(CUDA_CHECK_OBJ:.o=.d)

# ---- libFuzzer targets (tests/fuzz/) ----------------------------------------
# `make fuzz` builds every tests/fuzz/fuzz_*.c with clang's libFuzzer + ASan
# + UBSan against the library compiled the same way (in $(BUILD)/fuzz/) and
# runs each for FUZZ_SECONDS from its committed seed corpus, replaying the
# regression inputs first; `make test` runs each for FUZZ_CI_SECONDS.
# FUZZ_CI_SECONDS=0 leaves the fuzzers out of `make test`.
FUZZ_CC         ?= clang
FUZZ_SECONDS    ?= 60
FUZZ_CI_SECONDS ?= 5
FUZZ_DEB_PKGS   := clang libclang-rt-14-dev
FUZZ_SRC    := $(sort $(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BIN    := $(FUZZ_SRC:tests/fuzz/%.c=$(BUILD)/fuzz/%)
FUZZ_OBJ    := $(LIB_SRC:%.c=$(BUILD)/fuzz/%.o)
FUZZ_FLAGS  := -O1 $(ARCH_FLAGS) -g -fsanitize=fuzzer-no-link,address,undefined \
               -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_STAMP  := $(BUILD)/.fuzz-deps-ok

.PHONY: fuzz fuzz-ci fuzz-build
.SECONDARY: $(FUZZ_OBJ) $(FUZZ_SRC:%.c=$(BUILD)/fuzz/%.o)

# Like $(DEPS_STAMP), for clang and its libFuzzer runtime only.
$(FUZZ_STAMP): | $(DEPS_STAMP)
	$(call apt_install,$(FUZZ_DEB_PKGS))
	@touch $@

$(BUILD)/fuzz/%.o: %.c | $(FUZZ_STAMP)
	@mkdir -p $(dir $@)
	@$(FUZZ_CC) $(BASEFLAGS) $(FUZZ_FLAGS) -c $< -o $@

$(BUILD)/libssmd-fuzz.a: $(FUZZ_OBJ)
	@rm -f $@; ar rcs $@ $^

$(BUILD)/fuzz/%: $(BUILD)/fuzz/tests/fuzz/%.o $(BUILD)/libssmd-fuzz.a
	$(FUZZ_CC) $(FUZZ_FLAGS) -fsanitize=fuzzer -o $@ $^ $(LDLIBS)

fuzz-build: $(FUZZ_BIN)

fuzz: $(FUZZ_BIN)
	@FUZZ_WORK=$(abspath $(BUILD))/fuzz/work bash tests/fuzz/run.sh $(FUZZ_SECONDS) $(FUZZ_BIN)

ifeq ($(FUZZ_CI_SECONDS),0)
fuzz-ci:
else
fuzz-ci: $(FUZZ_BIN)
	@FUZZ_WORK=$(abspath $(BUILD))/fuzz/ci bash tests/fuzz/run.sh $(FUZZ_CI_SECONDS) $(FUZZ_BIN)
endif
test: fuzz-ci

-include $(FUZZ_OBJ:.o=.d)

# ---- real clients (tests/integration/test_openai_client.sh) ----------------
# `make test` runs the openai-package and promtool checks when they are
# installed and skips them otherwise; `make test-clients` installs both
# (pip's openai for $(PYTHON), Debian's prometheus for promtool) and runs them.
.PHONY: test-clients
test-clients: $(BUILD)/ssmd
	@$(PYTHON) -c 'import openai' 2>/dev/null || \
	  $(PYTHON) -m pip install -q --break-system-packages openai
	@command -v promtool >/dev/null || { SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	  $$SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }
	@BUILD=$(BUILD) PYTHON=$(PYTHON) bash tests/integration/test_openai_client.sh
# (-include: the Docker build context leaves tests/ out)
-include tests/tsan/tsan.mk

# ---- aarch64 (make test-arm64) ----------------------------------------------
# Cross-compiles the engine, the models, the CPU kernels (NEON level) and
# their unit tests (tests/engine, tests/models: tokenizer, sampler, state,
# model exactness at the scalar and NEON levels) with Debian's
# gcc-aarch64-linux-gnu against arm64 multiarch -dev packages, and runs them
# under qemu-user, with ASan and UBSan (linked statically: the cross
# toolchain's runtimes are not where the arm64 loader looks; LeakSanitizer
# cannot run under qemu).  Proves correctness and portability, not speed;
# the server (libuv, libmicrohttpd, hiredis) is not part of it.  About 6
# minutes on 2 busy cores from an empty $(BUILD)/arm64 (build ~1.5, runs
# ~4.5), after the packages.
ARM64_CC       ?= aarch64-linux-gnu-gcc
ARM64_DIR      := $(BUILD)/arm64
ARM64_DEB_PKGS := gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user \
                  libjansson-dev:arm64 libopenblas-dev:arm64 check:arm64 libsubunit-dev:arm64 \
                  libpcre2-dev:arm64
ARM64_STAMP    := $(BUILD)/.arm64-deps-ok
ARM64_PKG      := PKG_CONFIG_LIBDIR=/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig pkg-config
ARM64_CFLAGS    = -std=c11 -D_GNU_SOURCE -I. $(WARN) -pthread -MMD -MP -O1 -g \
                  -fno-math-errno -fsanitize=address,undefined -fno-sanitize-recover=undefined \
                  -fno-omit-frame-pointer \
                  $(shell $(ARM64_PKG) --cflags jansson openblas check libpcre2-8 2>/dev/null)
ARM64_LIBS      = $(shell $(ARM64_PKG) --libs jansson openblas check libpcre2-8 2>/dev/null) -lm -pthread
ARM64_LIB_SRC  := $(filter engine/% kernels/% models/%,$(LIB_SRC))
ARM64_TESTS    := $(sort $(wildcard tests/engine/test_*.c tests/models/test_*.c))
ARM64_OBJ      := $(ARM64_LIB_SRC:%.c=$(ARM64_DIR)/%.o)
ARM64_BIN      := $(ARM64_TESTS:%.c=$(ARM64_DIR)/%)

.PHONY: test-arm64
.SECONDARY: $(ARM64_OBJ) $(ARM64_TESTS:%.c=$(ARM64_DIR)/%.o) $(ARM64_DIR)/tests/check_main.o

# Adds the arm64 architecture to dpkg when it is missing, then installs.
$(ARM64_STAMP):
	@dpkg --print-foreign-architectures | grep -qx arm64 || { \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; $$SUDO dpkg --add-architecture arm64; }
	$(call apt_install,$(ARM64_DEB_PKGS))
	@mkdir -p $(BUILD) && touch $@

$(ARM64_DIR)/%.o: %.c | $(ARM64_STAMP)
	@mkdir -p $(dir $@)
	$(ARM64_CC) $(ARM64_CFLAGS) -c $< -o $@

# The dot-product variant of the NEON level (cpu_level.c checks the hwcap).
$(ARM64_DIR)/kernels/cpu/cpu_isa_neon_dotprod.o: ARM64_CFLAGS += -march=armv8.2-a+dotprod

$(BUILD)/libssmd-arm64.a: $(ARM64_OBJ)
	@rm -f $@; ar rcs $@ $^

$(ARM64_DIR)/tests/%: $(ARM64_DIR)/tests/%.o $(ARM64_DIR)/tests/check_main.o $(BUILD)/libssmd-arm64.a
	$(ARM64_CC) $(ARM64_CFLAGS) -static-libasan -static-libubsan -o $@ $^ $(ARM64_LIBS)

test-arm64: $(ARM64_BIN)
	@bash tests/arm64/run.sh $(ARM64_BIN)

# `make test` runs it too; ARM64_IN_TEST=0 leaves it out.
ARM64_IN_TEST ?= 1
ifeq ($(ARM64_IN_TEST),1)
test: test-arm64
endif

-include $(ARM64_OBJ:.o=.d) $(wildcard $(ARM64_DIR)/tests/*/*.d)
