# syntax=docker/dockerfile:1
# Build: docker build --build-arg VERSION=$(git describe --tags --always) -t ultimaker2mqtt .
ARG GO_VERSION=1.26

FROM docker.io/library/golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
# Static, stripped, reproducible paths; the empty /data gets the
# unprivileged owner below.
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/ultimaker2mqtt . \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
LABEL org.opencontainers.image.title="ultimaker2mqtt" \
      org.opencontainers.image.description="UltiMaker Digital Factory (Connect API) to MQTT bridge with Home Assistant discovery" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="https://github.com/ultimaker2mqtt/ultimaker2mqtt" \
      org.opencontainers.image.licenses="MIT"
COPY --from=build /out/ultimaker2mqtt /ultimaker2mqtt
COPY --from=build --chown=65532:65532 /out/data /data
# /data holds the OAuth token file and the LAN pairings; the health
# endpoint serves the HEALTHCHECK below (the image has no shell and no curl).
ENV HTTP_LISTEN=:8080 \
    TOKEN_FILE=/data/token.json \
    LOCAL_AUTH_FILE=/data/local-auth.json \
    LOG_FORMAT=json
VOLUME ["/data"]
USER 65532:65532
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 CMD ["/ultimaker2mqtt", "healthcheck"]
ENTRYPOINT ["/ultimaker2mqtt"]
CMD ["run"]
