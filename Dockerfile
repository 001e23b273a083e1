# multicloud: one container with the daemon, terraform and a PostgreSQL server for the embedded
# database (it runs as the image's non-root user, under the volume).
#   docker build -t multicloud .
#   docker run -p 8000:8000 -v mc:/var/lib/multicloud -e MULTICLOUD__AUTH__TOKENS=<16+ chars> multicloud
# Without tokens, set MULTICLOUD__AUTH__ALLOW_ANONYMOUS=true (the image binds 0.0.0.0).
FROM rust:1-slim-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends libpq-dev pkg-config && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY migrations migrations
# Cargo.toml declares the benches: the manifest does not load without them.
COPY benches benches
RUN cargo build --release --locked && strip target/release/multicloud

FROM debian:bookworm-slim AS terraform
ARG TERRAFORM_VERSION=1.11.4
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl unzip \
 && curl -fsSLo /tmp/tf.zip https://releases.hashicorp.com/terraform/${TERRAFORM_VERSION}/terraform_${TERRAFORM_VERSION}_linux_amd64.zip \
 && unzip /tmp/tf.zip -d /usr/local/bin && rm /tmp/tf.zip

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libpq5 postgresql-15 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home-dir /var/lib/multicloud --create-home multicloud
COPY --from=terraform /usr/local/bin/terraform /usr/local/bin/terraform
COPY --from=build /src/target/release/multicloud /usr/local/bin/multicloud
COPY templates /opt/multicloud/templates
COPY config/default.toml /opt/multicloud/config/default.toml
USER multicloud
WORKDIR /opt/multicloud
ENV MULTICLOUD__SERVER__BIND=0.0.0.0:8000 \
    MULTICLOUD__PATHS__DATA_DIR=/var/lib/multicloud \
    MULTICLOUD__PATHS__TEMPLATES_DIR=/opt/multicloud/templates \
    MULTICLOUD_LOG_FORMAT=json
VOLUME /var/lib/multicloud
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["/usr/local/bin/multicloud", "health", "--url", "http://127.0.0.1:8000"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/multicloud"]
CMD ["serve"]
