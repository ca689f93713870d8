# syntax=docker/dockerfile:1
# PiCloud server image. Build: docker build -t picloud .   (BuildKit required for cache mounts)

# ---------------------------------------------------------------------------
# Builder
# ---------------------------------------------------------------------------
FROM rust:1-bookworm AS builder
WORKDIR /src
# If sqlx compile-time checked queries are used, build from the committed .sqlx/ metadata
# instead of needing a live database.
ENV SQLX_OFFLINE=true
COPY . .
# The target dir is a cache mount (not part of the layer), so copy the binary out of it.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    set -eux; \
    locked=""; if [ -f Cargo.lock ]; then locked="--locked"; fi; \
    cargo build --release $locked -p picloud; \
    install -m 0755 target/release/picloud /usr/local/bin/picloud

# ---------------------------------------------------------------------------
# Runtime
# ---------------------------------------------------------------------------
FROM debian:bookworm-slim
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends ca-certificates curl; \
    rm -rf /var/lib/apt/lists/*; \
    groupadd --system --gid 10001 picloud; \
    useradd --system --uid 10001 --gid picloud --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin picloud; \
    install -d -m 0700 -o picloud -g picloud /data

COPY --from=builder /usr/local/bin/picloud /usr/local/bin/picloud

# 0.0.0.0 inside the container only: publish the port on the host's loopback (or a
# private network) and terminate TLS in a reverse proxy in front (docs/operations.md).
# /data holds the SQLite database and master.key (created 0600 on first start) unless
# PICLOUD_DATABASE_URL and PICLOUD_MASTER_KEY point elsewhere.
ENV PICLOUD_BIND=0.0.0.0:8080 \
    PICLOUD_DATA_DIR=/data
VOLUME /data
EXPOSE 8080
# numeric uid of the picloud user, so runAsNonRoot checks (e.g. Kubernetes) can verify it
USER 10001:10001
WORKDIR /data

# Assumes the server listens on port 8080 (the PICLOUD_BIND default above).
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
    CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:8080/healthz"]

ENTRYPOINT ["picloud"]
CMD ["serve"]
