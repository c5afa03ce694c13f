# Sockudo 5.2.0 built from crates.io, as the e2e suite builds it (no image tag to trust).
# The first build takes 10-20 minutes; docker caches it afterwards.
FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends protobuf-compiler \
 && rm -rf /var/lib/apt/lists/*
RUN cargo install sockudo --version 5.2.0 --no-default-features --features local --locked --root /out

FROM debian:bookworm-slim
# The binary links OpenSSL dynamically.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libssl3 ca-certificates \
 && rm -rf /var/lib/apt/lists/*
RUN useradd --system --uid 10001 --home-dir /var/lib/sockudo --create-home sockudo
COPY --from=build /out/bin/sockudo /usr/local/bin/sockudo
USER 10001:10001
WORKDIR /var/lib/sockudo
EXPOSE 6001
ENTRYPOINT ["/usr/local/bin/sockudo"]
CMD ["--config", "/etc/sockudo/sockudo.toml"]
