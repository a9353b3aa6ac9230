# Rebound container image: rebound-server (the entrypoint) and reboundctl.
#
#   docker build -t rebound:0.1.0 --build-arg REVISION="$(git rev-parse --short HEAD)" .
#   docker run --rm -p 50051:50051 -p 9464:9464 -v rebound-data:/var/lib/rebound rebound:0.1.0
#
# REVISION reaches `rebound-server --version`, `reboundctl --version`, the rebound_build_info
# metric and the image label. A bind mount instead of the named volume must be writable by uid
# 10001 (`chown 10001:10001 DIR`, or run with `--user "$(id -u):$(id -g)"`): docs/operations.md.
# tests/deploy/check_image_run.sh builds this image and runs it for real.
#
# Build stage: Debian 12 with the -dev packages of scripts/install-deps.sh (the same list CI
# uses), then a Release build of the two binaries only. Runtime stage: debian:bookworm-slim with
# only the shared libraries the binaries load. tests/deploy/check_docker.sh (ctest -L deploy)
# lints this file and fails when `ldd rebound-server` needs a package the runtime stage does not
# install. docs/operations.md describes running the image.

FROM debian:bookworm AS build
WORKDIR /src
# The package list first, so that the dependency layer survives source changes.
COPY scripts/install-deps.sh scripts/install-deps.sh
RUN scripts/install-deps.sh \
 && rm -rf /var/lib/apt/lists/*
COPY . .
# .git is not in the context: the revision comes from the build argument (empty: "unknown").
ARG REVISION=
RUN cmake -S . -B /build -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DREBOUND_BUILD_TESTS=OFF -DREBOUND_BUILD_BENCH=OFF -DREBOUND_REVISION="${REVISION}" \
 && cmake --build /build --target rebound-server reboundctl \
 && strip /build/server/rebound-server /build/client/reboundctl
# The default configuration: the sample config/rebound.yaml, listening on every interface and
# keeping the database on the data volume. check_docker.sh applies these same sed expressions
# and runs `rebound-server --check-config` on the result.
RUN mkdir -p /out \
 && sed -e 's/^\(  grpc_listen:\) 127\.0\.0\.1:50051/\1 0.0.0.0:50051  /' \
        -e 's/^\(  metrics_listen:\) 127\.0\.0\.1:9464/\1 0.0.0.0:9464  /' \
        -e 's|^\(  path:\) rebound\.db$|\1 /var/lib/rebound/rebound.db|' \
        config/rebound.yaml >/out/rebound.yaml

FROM debian:bookworm-slim
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="rebound" \
      org.opencontainers.image.description="Durable gRPC retry orchestration for LMS sync calls" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.base.name="docker.io/library/debian:bookworm-slim" \
      org.opencontainers.image.documentation="docs/operations.md"
# Runtime libraries only, one package per shared library that `ldd rebound-server` resolves
# (besides libc6, libgcc-s1, libstdc++6, zlib1g and libzstd1, which the base image has).
# Keep this list in step with check_docker.sh's ldd check; no shell tools are added.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ca-certificates \
      libabsl20220623 \
      libbrotli1 \
      libc-ares2 \
      libcivetweb1 \
      libcom-err2 \
      libcurl4 \
      libffi8 \
      libgmp10 \
      libgnutls30 \
      libgrpc++1.51 \
      libgrpc29 \
      libgssapi-krb5-2 \
      libhogweed6 \
      libidn2-0 \
      libk5crypto3 \
      libkeyutils1 \
      libkrb5-3 \
      libkrb5support0 \
      libldap-2.5-0 \
      libnettle8 \
      libnghttp2-14 \
      libp11-kit0 \
      libprometheus-cpp-core1.0 \
      libprometheus-cpp-pull1.0 \
      libprotobuf32 \
      libpsl5 \
      libre2-9 \
      librtmp1 \
      libsasl2-2 \
      libsqlite3-0 \
      libssh2-1 \
      libssl3 \
      libtasn1-6 \
      libunistring2 \
      libyaml-cpp0.7 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 rebound \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/rebound --no-create-home \
      --shell /usr/sbin/nologin rebound \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/rebound
COPY --from=build /build/server/rebound-server /build/client/reboundctl /usr/local/bin/
COPY --from=build /out/rebound.yaml /etc/rebound/rebound.yaml
WORKDIR /var/lib/rebound
# The SQLite database (rebound.db, -wal, -shm, .lock): keep it on a volume.
VOLUME ["/var/lib/rebound"]
# 50051: gRPC API and grpc.health.v1; 9464: Prometheus /metrics.
EXPOSE 50051 9464
USER 10001:10001
# Health: grpc.health.v1 on the gRPC port, SERVING once recovery is done (Kubernetes probes it
# natively). For Docker, `reboundctl health` asks it: exit 0 only when SERVING. It reaches the
# default config's gRPC port; a config that moves server.grpc_listen needs another HEALTHCHECK.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["/usr/local/bin/reboundctl", "--target", "127.0.0.1:50051", "--timeout", "3s", "health"]
# Exec form: rebound-server is PID 1 and receives SIGTERM itself (it drains for
# server.shutdown_grace, then exits 0).
ENTRYPOINT ["/usr/local/bin/rebound-server"]
CMD ["--config", "/etc/rebound/rebound.yaml"]
