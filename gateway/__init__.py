"""SynergAI Gateway.

Importing the package first checks for a fresh compiled build of the hot modules
(:mod:`gateway.native`): used when every compiled source is unchanged, else pure Python.

It also turns gRPC's fork handlers off (``GRPC_ENABLE_FORK_SUPPORT=0`` unless set): the
gateway, the demo, the benchmarks and the tests start children (Triton, Valkey, Envoy, the
endpoint picker) with ``fork`` + ``exec`` while gRPC threads run, and never use gRPC in a
child before its ``exec``. With the handlers on, each such ``fork`` waits on gRPC's threads
in its ``pthread_atfork`` hook, and one in ``make test`` waited forever (a pinned-EPP test
hung in ``Popen`` for minutes, 2026-12-07). The variable is read once, when gRPC starts, so
it is set here, before any gRPC import of this package.
"""

import os as _os

_os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")

from gateway.native import install as _install_native

_install_native()
