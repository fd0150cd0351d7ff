# One image for the four processes; the command picks the process:
#   docker run IMAGE                      the gateway (waitroom-gateway)
#   docker run IMAGE waitroom-queue       the queue service
#   docker run IMAGE waitroom-cart        the cart service
#   docker run IMAGE waitroom-payments    the payment adapter
# Settings come from WAITROOM_* environment variables (docs/operations.md).
#
# BASE_IMAGE: a Debian bookworm image, with Python 3.11 (the public python:3.11-slim) or
# without (Debian's own python3 is then installed). `make image` builds it;
# `make image BASE_IMAGE=local/debian:bookworm` uses a base made on this machine
# (deploy/docker/local-base.sh) where no registry is reachable.
ARG BASE_IMAGE=python:3.11-slim-bookworm

# -- build: the project's wheel and every dependency, into a virtual environment -----------
FROM ${BASE_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1 \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt
RUN command -v python3 >/dev/null && command -v update-ca-certificates >/dev/null || { \
      apt-get update \
      && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
      && rm -rf /var/lib/apt/lists/*; }
# The build network's own authorities, if any (deploy/docker/ca/README.md).
COPY deploy/docker/ca/ /tmp/ca/
RUN cp /tmp/ca/*.crt /usr/local/share/ca-certificates/ 2>/dev/null; update-ca-certificates >/dev/null
RUN python3 -m venv /opt/waitroom && /opt/waitroom/bin/pip install --quiet --upgrade pip
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY waitroom waitroom
COPY gateway gateway
COPY queue_service queue_service
COPY cart_service cart_service
COPY payment_adapter payment_adapter
# Binary wheels only: every dependency has one for CPython 3.11 on x86_64 and arm64, so
# no compiler is needed here, and none can end up in the final image.
RUN /opt/waitroom/bin/pip wheel --quiet --wheel-dir /wheels --no-deps . \
    && /opt/waitroom/bin/pip install --quiet --only-binary=:all: -c constraints.txt /wheels/*.whl \
    && /opt/waitroom/bin/pip uninstall --quiet --yes pip setuptools

# -- the image: the environment alone, run as a user without privileges ---------------------
FROM ${BASE_IMAGE}
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
RUN command -v python3 >/dev/null || { apt-get update \
      && apt-get install -y --no-install-recommends python3 \
      && rm -rf /var/lib/apt/lists/*; }
# (written directly: a minimal base has no useradd)
RUN echo "waitroom:x:10001:10001:waitroom:/nonexistent:/usr/sbin/nologin" >> /etc/passwd \
    && echo "waitroom:x:10001:" >> /etc/group
COPY --from=build /opt/waitroom /opt/waitroom
ENV PATH=/opt/waitroom/bin:$PATH \
    WAITROOM_HTTP_HOST=0.0.0.0 \
    WAITROOM_GRPC_HOST=0.0.0.0
USER 10001:10001
WORKDIR /tmp
EXPOSE 8080 8081 8090 50051 50052 50053 9101 9102 9103
# Whichever process runs here: its HTTP /healthz or its gRPC health service.
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python3", "-m", "waitroom.healthcheck"]
CMD ["waitroom-gateway"]
