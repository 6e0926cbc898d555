# syntax=docker/dockerfile:1
# The lanrage-control server as a container image: built in the official
# Rust image at the workspace's rust-version, run on Debian slim as a
# non-root user, on SQLite in /data unless LANRAGE_DATABASE_URL says
# otherwise. Build: docker build -t lanrage-control .

FROM rust:1.94-slim-bookworm AS build
WORKDIR /src
COPY . .
# The cache mounts keep the registry and the build between builds; the
# binary is copied out because a cache mount is not part of the layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p lanrage-cli --bin lanrage-control \
    && cp target/release/lanrage-control /usr/local/bin/lanrage-control

# Same Debian release as the builder, so the binary finds the glibc it was
# linked against.
FROM debian:bookworm-slim
# curl only for HEALTHCHECK: the binary has no health-check command.
# Versions unpinned on purpose: bookworm's security archive replaces them,
# so a pinned version would stop building after the next update; the
# base image's tag fixes the release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 lanrage \
    && useradd --system --uid 10001 --gid lanrage --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin lanrage \
    && mkdir /data \
    && chown 10001:10001 /data
COPY --from=build /usr/local/bin/lanrage-control /usr/local/bin/lanrage-control

ENV LANRAGE_LISTEN=0.0.0.0:8667 \
    LANRAGE_DATABASE_URL=sqlite:///data/control.db
# Declared after the chown: a new named volume starts as a copy of the
# image's /data, owned by the user the server runs as.
VOLUME /data
# Numeric, so an orchestrator can tell it is not root without /etc/passwd.
USER 10001:10001
WORKDIR /data
EXPOSE 8667
# The port from LANRAGE_LISTEN, so a container started with another one is
# still checked; plain HTTP (with LANRAGE_TLS_CERT set, override this).
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["sh", "-c", "curl -fsS -o /dev/null \"http://127.0.0.1:${LANRAGE_LISTEN##*:}/livez\""]
# SIGTERM (docker stop) lets in-flight requests finish and closes sockets
# with a close frame; the server handles it itself as PID 1.
ENTRYPOINT ["/usr/local/bin/lanrage-control"]
CMD ["serve"]
