#!/usr/bin/env bash
# Start one emulated Triton worker (one device) of the pool this container belongs to.
#
# Environment (all optional except SYNERGAI_ARCH):
#   SYNERGAI_ARCH       architecture whose baked repository to serve (a directory of /models)
#   SYNERGAI_MODELS     comma-separated models to load (default: every model profiled on the arch)
#   SYNERGAI_INSTANCES  concurrent executions shared by all models of this server (default 1)
#   SYNERGAI_SPEED      true slowness vs the profile, e.g. 1.5 (default 1.0)
#   SYNERGAI_SEED       base seed of the service-time draws (default: derived from the hostname)
# Ports: HTTP 8000, gRPC 8001, metrics 8002 (Triton's defaults).
set -euo pipefail

arch="${SYNERGAI_ARCH:?set SYNERGAI_ARCH to one of: $(ls /models | tr '\n' ' ')}"
instances="${SYNERGAI_INSTANCES:-1}"
speed="${SYNERGAI_SPEED:-1.0}"
seed="${SYNERGAI_SEED:-$(( $(hostname | cksum | cut -d' ' -f1) % 1000000 ))}"
src="/models/${arch}"
[[ -d "${src}" ]] || { echo "no baked repository for arch '${arch}' (have: $(ls /models))" >&2; exit 2; }
[[ "${instances}" =~ ^[1-9][0-9]*$ ]] || { echo "SYNERGAI_INSTANCES must be a positive integer" >&2; exit 2; }

repo="$(mktemp -d /tmp/repo.XXXXXX)"
cp -r "${src}/." "${repo}/"
# Per-container knobs over the placeholders baked by bake_repositories.py.
for cfg in "${repo}"/*/config.pbtxt; do
  sed -i \
    -e "s/^  count: 1$/  count: ${instances}/" \
    -e "s/\\\\\"speed\\\\\": \[\[0.0, 1.0\]\]/\\\\\"speed\\\\\": [[0.0, ${speed}]]/" \
    -e "s/\\\\\"seed\\\\\": 0}/\\\\\"seed\\\\\": ${seed}}/" \
    "${cfg}"
done

models="${SYNERGAI_MODELS:-$(ls "${repo}" | paste -sd, -)}"
load=()
IFS=',' read -ra names <<< "${models}"
for m in "${names[@]}"; do
  [[ -d "${repo}/${m}" ]] || { echo "model '${m}' has no profile on '${arch}'" >&2; exit 2; }
  load+=("--load-model=${m}")
done

exec tritonserver \
  --model-repository="${repo}" \
  --model-control-mode=explicit "${load[@]}" \
  --rate-limit=execution_count --rate-limit-resource="SLOT:${instances}" \
  --http-port=8000 --grpc-port=8001 --metrics-port=8002 \
  --allow-gpu-metrics=false --allow-cpu-metrics=true \
  --pinned-memory-pool-byte-size=0 --disable-auto-complete-config \
  --strict-readiness=true --exit-timeout-secs=5 \
  "$@"
