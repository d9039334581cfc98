# syntax=docker/dockerfile:1
#
# One image, four binaries (producer, consumer, mockcrm, web) in /usr/local/bin;
# each compose service picks its binary with `command:`. One image means one
# build for the whole demo and the same bits in every role.

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION} AS build
WORKDIR /src
COPY . .
# Static binaries: the runtime image has no libc. The cache mounts keep
# downloaded modules and compiled packages between builds; go build fetches
# only the modules these binaries import (go.mod also lists the
# linter's, which the image does not need).
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/ ./producer ./consumer ./mockcrm ./web

# distroless/static: CA certificates, tzdata, a nonroot user, and nothing
# else (no shell, so commands are written in exec form).
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ /usr/local/bin/
USER nonroot:nonroot
# No ENTRYPOINT: the command names the binary, e.g. ["consumer", "migrate"].
CMD ["consumer"]
