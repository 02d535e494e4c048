# Multi-stage build of the API, the streamer, the archiver and lakequery
# (the only one that links DuckDB). cgo stays on: the Kafka
# client is librdkafka (bundled by confluent-kafka-go), so the runtime image
# needs glibc, hence Debian slim rather than scratch or distroless/static.
FROM golang:1.26-bookworm AS build
# jemalloc is the C allocator of the streamer and the archiver (see
# internal/jemalloc): librdkafka's per-message allocations cost a third less.
RUN apt-get update && apt-get install -y --no-install-recommends libjemalloc-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=1 go build -tags jemalloc -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/ ./cmd/api ./cmd/streamer ./cmd/archiver ./cmd/lakequery

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libjemalloc2 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 userstream \
    && mkdir -p /var/lib/userstream/lake && chown userstream /var/lib/userstream/lake
# A new named volume mounted there starts as a copy of this folder, owner
# included, so the archiver (not root) may write the lake.
COPY --from=build /out/api /out/streamer /out/archiver /out/lakequery /usr/local/bin/
USER userstream
EXPOSE 5000 8081 8082
CMD ["api"]
