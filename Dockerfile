# A herd agent image with Python for script workers. The agent, and so every worker, runs as
# the unprivileged user `herd` (uid 10001); its data dir is /var/lib/herd (a volume, mode 0700).
#   docker build -t herd .
#   docker compose -f deploy/docker-compose.yml up
# Key files (gossip key, API token) are mounted read-only, e.g. as Docker secrets, readable by
# uid 10001; see README.md, "Packaging and deployment".
FROM rust:1.86-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin herd

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends python3 tini && rm -rf /var/lib/apt/lists/*
# A fixed uid and gid, so volume and secret ownership can be set from outside the image.
RUN groupadd --system --gid 10001 herd \
 && useradd --system --uid 10001 --gid herd --home-dir /var/lib/herd --shell /usr/sbin/nologin herd \
 && install -d -m 0700 -o herd -g herd /var/lib/herd
COPY --from=build /src/target/release/herd /usr/local/bin/herd
COPY examples/workers /srv/app/examples/workers
COPY examples/cluster /srv/app/examples/cluster
WORKDIR /srv/app
# A named volume mounted here starts as a copy of this dir: owned by herd, mode 0700.
VOLUME /var/lib/herd
USER herd:herd
EXPOSE 7946/udp 7947/tcp
# GET /v1/health (no token needed): unhealthy when gossip is down, the supervisor gave up, or the
# config has lagged a member's for over a minute.
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s CMD ["herd", "health"]
ENTRYPOINT ["tini", "--", "herd"]
# Gossip off loopback needs the cluster key (`herd keygen`), mounted as the secret gossip_key; an
# API off loopback needs a token: created in the data dir on first start; the CLI in the
# container sends it with --api-token-file /var/lib/herd/api-token.
CMD ["agent", "--listen", "0.0.0.0:7946", "--api", "0.0.0.0:7947", "--api-token-file", "/var/lib/herd/api-token", "--data-dir", "/var/lib/herd", "--encrypt-key-file", "/run/secrets/gossip_key"]
