# syntax=docker/dockerfile:1
#
# flowbridge: multi-stage build.
#   docker build -t flowbridge .
#   docker run --rm flowbridge validate /etc/flowbridge/workflows
#
# The builder has the C toolchain librdkafka needs (rdkafka-sys builds it
# from source) and zlib; the runtime image is Debian slim with the binary,
# the sample workflows and the example config, running as a non-root user.

# The toolchain the test suite runs with (the crate's MSRV is 1.89).
FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      build-essential pkg-config zlib1g-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# Cache the registry and target directory between builds (BuildKit).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin flowbridge \
 && cp target/release/flowbridge /usr/local/bin/flowbridge

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates zlib1g \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 flowbridge \
 && useradd --system --uid 10001 --gid flowbridge --home-dir /var/lib/flowbridge --shell /usr/sbin/nologin flowbridge \
 && mkdir -p /var/lib/flowbridge /etc/flowbridge \
 && chown flowbridge:flowbridge /var/lib/flowbridge
COPY --from=build /usr/local/bin/flowbridge /usr/local/bin/flowbridge
COPY workflows /etc/flowbridge/workflows
COPY deploy/flowbridge.example.yaml /etc/flowbridge/flowbridge.example.yaml
USER flowbridge:flowbridge
WORKDIR /var/lib/flowbridge
# /metrics, /healthz, /readyz (metrics_addr in the config).
EXPOSE 9464
ENTRYPOINT ["flowbridge"]
CMD ["--help"]
