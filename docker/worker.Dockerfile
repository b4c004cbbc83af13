# syntax=docker/dockerfile:1.7
# Emulated Triton worker: the official Triton server image with the emulation model repository
# (workers/models/emulated/model.py, one repository per profiled architecture) baked in.
# Build from the repository root:  docker build -f docker/worker.Dockerfile -t synergai/triton-emulated-worker:0.1.0 .
# Run one pool member:             docker run -e SYNERGAI_ARCH=jetson-agx-orin -p 8000-8002:8000-8002 ...
#
# 24.10 is Triton 2.51, the server version the CPU recipe (DESIGN.md §9, nvidia-pytriton 0.7.0)
# is tested with. The image is multi-arch (linux/amd64, linux/arm64); Jetson boards use the
# -igpu variant (see k8s/overlays/edge-cloud).
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm
ARG TRITON_IMAGE=nvcr.io/nvidia/tritonserver:24.10-py3

# --- bake: write the repositories with the project's own code (workers/repository.py) ---
FROM ${PYTHON_IMAGE} AS bake
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN pip install "numpy<2" "pyyaml>=6.0" "pydantic>=2.6"
WORKDIR /src
COPY gateway/__init__.py gateway/yamlio.py gateway/
COPY gateway/prediction/ gateway/prediction/
COPY workers/ workers/
COPY profiles/ profiles/
COPY docker/worker/bake_repositories.py .
RUN PYTHONPATH=/src python bake_repositories.py profiles /models /var/run/synergai/control.json

# --- runtime: stock Triton + the baked repositories ---
FROM ${TRITON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="synergai-triton-emulated-worker" \
      org.opencontainers.image.description="NVIDIA Triton with SynergAI's emulated-architecture model repositories" \
      org.opencontainers.image.licenses="Apache-2.0"
# The python backend stub runs the image's python3; the emulation model needs numpy only.
RUN python3 -c "import numpy" 2>/dev/null || pip3 install --no-cache-dir "numpy<2"
COPY --from=bake /models /models
COPY docker/worker/entrypoint.sh /usr/local/bin/synergai-worker
# Triton's image ships user triton-server (uid 1000); the control file lives in a writable dir.
RUN mkdir -p /var/run/synergai && chown 1000:1000 /var/run/synergai
USER 1000
EXPOSE 8000 8001 8002
HEALTHCHECK --interval=5s --timeout=3s --start-period=30s --retries=5 \
  CMD ["python3", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8000/v2/health/ready', timeout=2)"]
ENTRYPOINT ["/usr/local/bin/synergai-worker"]
