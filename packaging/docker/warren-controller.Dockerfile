# The controller (`warren-controller`) as a container image, for the
# Deployment in packaging/k8s/. UNTESTED: nothing on the project's machines
# runs a container engine. Build from the repository root:
#   docker build -f packaging/docker/warren-controller.Dockerfile -t warren-controller:0.1.0 .
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p warren-controller --bin warren-controller

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && install -d -o 65532 -g 65532 -m 0700 /var/lib/warren-controller
COPY --from=build /src/target/release/warren-controller /usr/bin/warren-controller
COPY packaging/etc/controller.toml /etc/warren-controller/controller.toml
USER 65532:65532
VOLUME ["/var/lib/warren-controller"]
# QUIC (nodes), STUN, HTTP API.
EXPOSE 7443/udp 7443/tcp 3478/udp 3479/udp 7480/tcp
ENTRYPOINT ["/usr/bin/warren-controller"]
CMD ["serve", "--config", "/etc/warren-controller/controller.toml"]
