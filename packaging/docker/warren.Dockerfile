# The agent (`warren`) as a container image, for the DaemonSet in
# packaging/k8s/. UNTESTED: nothing on the project's machines runs a
# container engine. Build from the repository root:
#   docker build -f packaging/docker/warren.Dockerfile -t warren:0.1.0 .
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p warren-node --bin warren

FROM debian:bookworm-slim
# iproute2 and nftables: the agent runs `ip` for routes and rules, and `nft`
# for the filter of a subnet router or exit node.
RUN apt-get update \
 && apt-get install -y --no-install-recommends iproute2 nftables ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/warren /usr/bin/warren
COPY packaging/docker/warren-k8s-entrypoint /usr/local/bin/warren-k8s-entrypoint
ENV WARREN_STATE_DIR=/var/lib/warren
VOLUME ["/var/lib/warren"]
ENTRYPOINT ["/usr/bin/warren"]
CMD ["daemon"]
