# One image for every Cairn process: `cairn serve <service>`, `cairn serve gateway`,
# `cairn migrate`, `cairn up`, `cairn agent`. docker-compose.yml runs it once per role.

# Build the wheels (Cairn's and its dependencies') in a throwaway stage, so the runtime
# image holds no source tree and no build tools.
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY protos ./protos
COPY services ./services
COPY gateway ./gateway
COPY cairn ./cairn
RUN pip wheel --wheel-dir /wheels .

FROM python:3.11-slim
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels cairn
# A fixed numeric uid so orchestrators can verify runAsNonRoot; the data directory is
# only used when no CAIRN_DATABASE_URL / CAIRN_MASTER_KEY is given (e.g. `cairn up`).
# The blob store's default directory and the backups' are made here, owned by that user, so
# volumes mounted on them (docker-compose.yml) start out writable by it.
RUN groupadd --system --gid 10001 cairn \
    && useradd --system --uid 10001 --gid cairn --home-dir /var/lib/cairn --create-home \
       --shell /usr/sbin/nologin cairn \
    && install -d -o cairn -g cairn -m 0700 /var/lib/cairn/blobs /var/backups/cairn
ENV CAIRN_DATA_DIR=/var/lib/cairn \
    CAIRN_LOG_FORMAT=json \
    CAIRN_HOST=0.0.0.0 \
    CAIRN_GRPC_HOST=0.0.0.0 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /var/lib/cairn
USER 10001:10001
# The gateway's port; each service listens on its own gRPC port (50051-50056 by default).
EXPOSE 8080
ENTRYPOINT ["cairn"]
CMD ["serve", "gateway"]
