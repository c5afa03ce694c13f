# syntax=docker/dockerfile:1
#
# channelgate container image: a distroless, non-root runtime with the one binary.
#
#   docker build -t channelgate .
#   docker run --rm -p 8080:8080 \
#     -v "$PWD/deploy:/etc/channelgate:ro" \
#     -v "$PWD/secrets:/run/secrets:ro" \
#     -e PUSHER_APP_SECRET \
#     channelgate
#
# Nothing is baked in: mount the config folder at /etc/channelgate
# (channelgate.yaml + policies/, relative paths resolve against it; deploy/ is
# a working example) and give secrets as the config names them,
# `{ env: NAME }` (docker run -e) or `{ file: /run/secrets/NAME }` (a mounted
# secret). The config's `listen` must be 0.0.0.0:8080 for the default port
# mapping and HEALTHCHECK; with another port, or with `tls` (plain HTTP to a
# TLS port gets no answer), set CHANNELGATE_HEALTH_URL, e.g. to the admin
# listener: -e CHANNELGATE_HEALTH_URL=http://127.0.0.1:9090/healthz

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin channelgate \
 && install -D -m 0755 target/release/channelgate /out/channelgate

# glibc + libgcc only, no shell, no package manager; uid/gid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/channelgate /usr/local/bin/channelgate
USER 65532:65532
WORKDIR /etc/channelgate
EXPOSE 8080
ENV CHANNELGATE_HEALTH_URL=http://127.0.0.1:8080/healthz
# `channelgate health` GETs $CHANNELGATE_HEALTH_URL and exits 0 on 2xx: no shell needed.
HEALTHCHECK --interval=15s --timeout=3s --start-period=5s --retries=3 \
  CMD ["/usr/local/bin/channelgate", "health", "--timeout", "2s"]
ENTRYPOINT ["/usr/local/bin/channelgate"]
CMD ["serve", "--config", "/etc/channelgate/channelgate.yaml", "--log-format", "json"]
