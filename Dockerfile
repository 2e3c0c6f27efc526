# syntax=docker/dockerfile:1
#
# stellar-peer-injector image: the release binary on distroless (glibc, no shell, non-root).
#   docker build -t stellar-peer-injector:0.1.0 .
#   docker run --rm stellar-peer-injector:0.1.0 --help
# The Helm chart (charts/stellar-peer-injector) runs it with `serve ...` arguments.

FROM rust:1-bookworm AS builder
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# The pure core (core/) is a dependency. The workspace's other member (the dev-only test
# kit): cargo reads its manifest even though the image build never compiles it.
COPY core ./core
COPY testkit ./testkit
# The cache mounts keep the registry and compiled dependencies between builds (BuildKit).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin stellar-peer-injector \
 && cp target/release/stellar-peer-injector /usr/local/bin/stellar-peer-injector

FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="stellar-peer-injector" \
      org.opencontainers.image.description="Mutating admission webhook that injects Stellar peer lists into StellarNode pods" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /usr/local/bin/stellar-peer-injector /usr/local/bin/stellar-peer-injector
# 65532 is distroless's "nonroot"; the chart also sets runAsUser 65532 and a read-only root.
USER 65532:65532
EXPOSE 8443 9090
ENTRYPOINT ["/usr/local/bin/stellar-peer-injector"]
CMD ["serve"]
