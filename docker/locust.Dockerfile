# syntax=docker/dockerfile:1.7
# Load generator for the compose stack: locust plus the project (loadtest/locustfile.py may use
# the project's scenario loader and tritonclient), non-root. Built from the repository root.
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm
FROM ${PYTHON_IMAGE}
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway/ gateway/
COPY workers/ workers/
COPY loadtest/ loadtest/
RUN pip install . "locust==2.47.0"
COPY profiles/ /src/profiles/
RUN useradd --system --uid 10002 --home-dir /src --shell /usr/sbin/nologin locust
USER 10002
EXPOSE 8089 5557
ENTRYPOINT ["locust"]
