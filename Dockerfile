# syntax=docker/dockerfile:1
# One image for every component: `docker run IMAGE calc --listen 0.0.0.0:9101`.
#
#   docker build -t switchboard:local .

# Build: the release binary, with the registry and target folders cached
# between builds.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin switchboard \
    && install -m 0755 target/release/switchboard /usr/local/bin/switchboard

# Run: Debian slim (same glibc as the builder), no shell tools added, a
# fixed non-root user. Logs go to stderr and, when enabled, to
# /var/lib/switchboard/logs.
FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --user-group \
        --home-dir /var/lib/switchboard --create-home switchboard \
    && mkdir -p /srv/static
COPY --from=build /usr/local/bin/switchboard /usr/local/bin/switchboard
USER 10001:10001
WORKDIR /var/lib/switchboard
ENV SWITCHBOARD_LOG_DIR=/var/lib/switchboard/logs
# lb, lb admin, gateway, calc, stats, static
EXPOSE 8080 9900 9000 9101 9201 9300
ENTRYPOINT ["switchboard"]
CMD ["--help"]
