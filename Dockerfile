# Dockerfile - the ssmd images (multi-stage).
#
#   docker build -t ssmd:cpu .                      CPU image (the default target)
#   docker build --target cuda -t ssmd:cuda .       CUDA image (nvidia/cuda base, `make cuda`)
#
# The CPU image: Debian bookworm slim, only the runtime libraries of the
# binary, the default model in /opt/ssmd/models/default, a non-root user,
# tini as PID 1 (it forwards SIGTERM to ssmd, which drains and exits 0), a
# HEALTHCHECK on /health.  The CUDA image is the same on the nvidia/cuda
# Ubuntu base (NVIDIA publishes no Debian one).  Needs BuildKit (the default
# builder since Docker 23) so that building one target never builds the
# other's stages.  This file must never bake secrets (--api-key) into a layer.
# tests/integration/test_deploy_configs.sh checks it (see deploy/README.md).

ARG DEBIAN_BASE=debian:bookworm-slim
ARG CUDA_VERSION=12.4.1
ARG CUDA_UBUNTU=22.04
# A portable baseline: the image may run on other CPUs than the builder's.
ARG ARCH_FLAGS=-march=x86-64-v2

# ---- CPU: build ------------------------------------------------------------
FROM ${DEBIAN_BASE} AS build
ARG ARCH_FLAGS
RUN apt-get update && apt-get install -y --no-install-recommends \
        build-essential pkg-config libjansson-dev libuv1-dev libmicrohttpd-dev \
        libopenblas-dev libcurl4-openssl-dev libhiredis-dev libpcre2-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# DEB_PKGS= : the packages are installed above; make must not run apt.
RUN make DEB_PKGS= BUILD=/out ARCH_FLAGS="${ARCH_FLAGS}" /out/ssmd \
    && strip /out/ssmd && /out/ssmd --version

# ---- CUDA: build (nvcc for sm_80 and sm_90, cuBLAS) --------------------------
FROM nvidia/cuda:${CUDA_VERSION}-devel-ubuntu${CUDA_UBUNTU} AS build-cuda
ARG ARCH_FLAGS
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        build-essential pkg-config libjansson-dev libuv1-dev libmicrohttpd-dev \
        libopenblas-dev libcurl4-openssl-dev libhiredis-dev libpcre2-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN make DEB_PKGS= BUILD=/out ARCH_FLAGS="${ARCH_FLAGS}" NVCC=/usr/local/cuda/bin/nvcc cuda \
    && strip /out/ssmd && /out/ssmd --version

# ---- CUDA: runtime (the cudart + cuBLAS of the runtime image) -----------------
FROM nvidia/cuda:${CUDA_VERSION}-runtime-ubuntu${CUDA_UBUNTU} AS cuda
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        libjansson4 libuv1 libmicrohttpd12 libopenblas0-pthread libhiredis0.14 libcurl4 libpcre2-8-0 tini \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 ssmd \
    && useradd --system --uid 10001 --gid 10001 --home-dir /opt/ssmd --shell /usr/sbin/nologin ssmd
COPY --from=build-cuda /out/ssmd /usr/local/bin/ssmd
COPY models/default /opt/ssmd/models/default
WORKDIR /opt/ssmd
USER 10001:10001
EXPOSE 8080
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'GET /health HTTP/1.0\\r\\n\\r\\n' >&3 && head -n1 <&3 | grep -q ' 200 '"]
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/ssmd", "serve", "--host", "0.0.0.0", "--port", "8080", "--model", "/opt/ssmd/models/default", "--backend", "cuda"]
CMD ["--drain-timeout", "30"]

# ---- CPU: runtime (last stage, so the default target) ------------------------
FROM ${DEBIAN_BASE} AS cpu
RUN apt-get update && apt-get install -y --no-install-recommends \
        libjansson4 libuv1 libmicrohttpd12 libopenblas0-pthread libhiredis0.14 libcurl4 libpcre2-8-0 tini \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 ssmd \
    && useradd --system --uid 10001 --gid 10001 --home-dir /opt/ssmd --shell /usr/sbin/nologin ssmd
COPY --from=build /out/ssmd /usr/local/bin/ssmd
COPY models/default /opt/ssmd/models/default
WORKDIR /opt/ssmd
USER 10001:10001
EXPOSE 8080
STOPSIGNAL SIGTERM
# bash's /dev/tcp: no curl binary in the image just for this.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'GET /health HTTP/1.0\\r\\n\\r\\n' >&3 && head -n1 <&3 | grep -q ' 200 '"]
# tini is PID 1: it reaps zombies and forwards SIGTERM to ssmd, which stops
# admitting (/ready 503), finishes running requests up to --drain-timeout and
# exits 0; tini exits with ssmd's status.  Extra flags go after the image name
# (they replace CMD), e.g. `docker run ssmd:cpu --threads 4 --drain-timeout 30`.
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/ssmd", "serve", "--host", "0.0.0.0", "--port", "8080", "--model", "/opt/ssmd/models/default"]
CMD ["--drain-timeout", "30"]
