"""The copy-paste gRPC example ``synergai demo`` prints (kept beside the door it exercises)."""

from __future__ import annotations

__all__ = ["grpc_sample"]


def grpc_sample(target: str, model: str, slo_ms: float) -> str:
    """A ``tritonclient.grpc`` call through the gateway, and how to read its routing trailers.

    Args:
        target: the gateway's gRPC ``host:port``.
        model: a model the fleet serves (the emulated models take ``INPUT0`` FP32 ``[B, N]``).
        slo_ms: the SLO hint to send.

    Returns:
        Lines ready to print (no markup).
    """
    return (
        f"  gRPC (KServe v2)   {target}\n"
        "  try it (Python, tritonclient.grpc):\n"
        "    import numpy as np, tritonclient.grpc as grpcclient\n"
        f'    c = grpcclient.InferenceServerClient("{target}")\n'
        "    x = np.arange(4, dtype=np.float32).reshape(1, 4)\n"
        '    i = grpcclient.InferInput("INPUT0", x.shape, "FP32"); i.set_data_from_numpy(x)\n'
        f'    r = c.infer("{model}", [i], headers={{"x-slo-ms": "{slo_ms:g}"}})\n'
        '    print(r.as_numpy("OUTPUT0"))   # [[0. 2. 4. 6.]]\n'
        "  routing facts come back as trailing metadata (x-synergai-worker, -pool, ...):\n"
        "    import grpc; from tritonclient.grpc import service_pb2 as pb, service_pb2_grpc as g\n"
        f'    stub = g.GRPCInferenceServiceStub(grpc.insecure_channel("{target}"))\n'
        f'    req = pb.ModelInferRequest(model_name="{model}"); t = req.inputs.add(name="INPUT0",'
        ' datatype="FP32")\n'
        "    t.shape.extend([1, 4]); req.raw_input_contents.append(x.tobytes())\n"
        f'    _, call = stub.ModelInfer.with_call(req, metadata=[("x-slo-ms", "{slo_ms:g}")])\n'
        "    print(dict(call.trailing_metadata()))\n"
    )
