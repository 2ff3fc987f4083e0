# syntax=docker/dockerfile:1
# patroniglue's image: the compiled binary on distroless/cc (glibc and libgcc, no shell), non-root.
# It copies the linux binaries that `deno task build` leaves in dist/, so build those first:
#   deno task build --target linux-amd64 --target linux-arm64
#   docker buildx build --platform linux/amd64,linux/arm64 --build-arg VERSION=0.1.0 \
#     -t patroniglue:0.1.0 .
# Run it with a configuration whose frontend.host is 0.0.0.0 so that the published port answers:
#   docker run -p 8080:8080 -v /etc/patroniglue:/etc/patroniglue:ro patroniglue:0.1.0
FROM gcr.io/distroless/cc-debian12:nonroot

# The version in deno.json; TARGETARCH (amd64, arm64) is set by BuildKit for each platform.
ARG VERSION
ARG TARGETARCH

LABEL org.opencontainers.image.title="patroniglue" \
      org.opencontainers.image.description="Caching health-check proxy in front of Patroni's REST API" \
      org.opencontainers.image.version="${VERSION}"

# Owned by root and read-only to the user the proxy runs as.
COPY dist/patroniglue-${VERSION}-linux-${TARGETARCH}/patroniglue /patroniglue
COPY config.yml.example /etc/patroniglue/config.yml.example

# distroless's "nonroot" user.
USER 65532:65532
# frontend.port in config.yml.example; publish whatever port your configuration sets.
EXPOSE 8080
ENTRYPOINT ["/patroniglue"]
CMD ["-config", "/etc/patroniglue/config.yml"]
