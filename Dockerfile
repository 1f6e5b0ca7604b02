# ssmd CPU image (multi-stage).  The deployment issue extends this (CUDA
# target, default model baked in, compose/k8s in deploy/).
FROM debian:bookworm-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends \
        build-essential pkg-config libjansson-dev libuv1-dev libmicrohttpd-dev \
        check libsubunit-dev libopenblas-dev libcurl4-openssl-dev ca-certificates \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# A portable baseline: the image may run on other CPUs than the builder's.
RUN make ARCH_FLAGS="-march=x86-64-v3" build/ssmd

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends \
        libjansson4 libuv1 libmicrohttpd12 libopenblas0-pthread libcurl4 curl \
    && rm -rf /var/lib/apt/lists/* && useradd --system --uid 10001 ssmd
COPY --from=build /src/build/ssmd /usr/local/bin/ssmd
COPY --from=build /src/models /opt/ssmd/models
USER ssmd
WORKDIR /opt/ssmd
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s CMD curl -fsS http://127.0.0.1:8080/health || exit 1
ENTRYPOINT ["/usr/local/bin/ssmd", "serve", "--host", "0.0.0.0", "--port", "8080"]
