r"""``python -m gateway.epp.bootstrap``: print the Envoy bootstrap for a gateway config.

For a plain Envoy (docker compose, a VM) in front of the workers a gateway config lists, with
``synergai epp`` as its ext_proc server; a Gateway API implementation in Kubernetes writes its
own Envoy config from the InferencePool instead. ``docker/envoy/envoy.yaml`` is this command's
output for ``docker/gateway/compose.yaml`` (tests/deploy checks it is up to date)::

    python -m gateway.epp.bootstrap --config docker/gateway/compose.yaml --epp epp:9002 \
        --listen-host 0.0.0.0 --listen-port 10000 > docker/envoy/envoy.yaml
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from gateway.epp.envoy_config import EnvoyLayout, envoy_bootstrap
from gateway.settings import load_settings

__all__ = ["bootstrap_for", "main"]

HEADER = (
    "# Envoy in front of the compose fleet, with synergai epp as its endpoint picker.\n"
    "# Generated: python -m gateway.epp.bootstrap (see gateway/epp/bootstrap.py); do not edit.\n"
)


def bootstrap_for(config: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The bootstrap for the workers of ``config`` and the layout flags in ``args``."""
    settings = load_settings(config)
    workers = settings.worker_infos()
    layout = EnvoyLayout(
        listen_port=args.listen_port,
        admin_port=args.admin_port,
        http_endpoints=[w.url for w in workers],
        grpc_endpoints=[w.grpc_url for w in workers if w.grpc_url],
        epp=args.epp or None,
        fail_open=not args.fail_closed,
        lb=args.lb,
        request_timeout_s=settings.request_timeout_s,
        listen_host=args.listen_host,
    )
    return envoy_bootstrap(layout)


def main(argv: list[str] | None = None) -> int:
    """Print the bootstrap as YAML on stdout."""
    p = argparse.ArgumentParser(prog="python -m gateway.epp.bootstrap", description=__doc__)
    p.add_argument("--config", type=Path, required=True, help="gateway config (workers)")
    p.add_argument("--epp", default="", help="host:port of synergai epp ('' = no picker)")
    p.add_argument("--listen-host", default="127.0.0.1")
    p.add_argument("--listen-port", type=int, default=10000)
    p.add_argument("--admin-port", type=int, default=9901)
    p.add_argument("--fail-closed", action="store_true", help="GIE FailClose (default FailOpen)")
    p.add_argument("--lb", choices=["override_host", "original_dst"], default="override_host")
    args = p.parse_args(argv)
    doc = bootstrap_for(args.config, args)
    sys.stdout.write(HEADER + yaml.safe_dump(doc, sort_keys=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
