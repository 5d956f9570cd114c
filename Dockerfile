# The operator's image: `ballast run` (the Helm chart's Deployment) and `ballast responder` (the reject
# fallback Ballast deploys). Two stages: the first builds a virtual environment from the source, the
# second copies only that environment onto a slim Python, so no compiler, pip cache or source tree ships.
#
#   docker build -t ghcr.io/ballast-dev/ballast:0.1.0 .
#
# Only the operator's runtime dependencies are installed (no `[dev]` extra: no test or lint tools).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/ ./operator/
# Every dependency has a wheel for this platform (pydantic-core, google-re2): nothing is compiled here either.
RUN python -m venv /opt/ballast \
    && /opt/ballast/bin/pip install --no-cache-dir --only-binary=:all: --no-binary=ballast . \
    && /opt/ballast/bin/python -m compileall -q /opt/ballast/lib

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="ballast" \
      org.opencontainers.image.description="Kubernetes operator that keeps AI model deployments steady" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /opt/ballast /opt/ballast
# The root file system is read-only in the chart: bytecode is compiled above, never written at run time.
ENV PATH=/opt/ballast/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# A numeric non-root user, so Pod Security `restricted` (runAsNonRoot) can verify it without a passwd lookup.
USER 65532:65532
ENTRYPOINT ["ballast"]
CMD ["run"]
