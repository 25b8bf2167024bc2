# A herd agent image with Python for script workers.
#   docker build -t herd .
#   docker compose -f deploy/docker-compose.yml up
FROM rust:1.86-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin herd

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends python3 tini && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/herd /usr/local/bin/herd
COPY examples/workers /srv/app/examples/workers
WORKDIR /srv/app
EXPOSE 7946/udp 7947/tcp
ENTRYPOINT ["tini", "--", "herd"]
# An API off loopback needs a token: created in the data dir on first start; the CLI in the
# container sends it with --api-token-file /var/lib/herd/api-token.
CMD ["agent", "--listen", "0.0.0.0:7946", "--api", "0.0.0.0:7947", "--api-token-file", "/var/lib/herd/api-token", "--data-dir", "/var/lib/herd"]
