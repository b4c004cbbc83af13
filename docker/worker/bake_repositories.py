"""Bake one emulated Triton model repository per architecture into the worker image.

Runs at image build time (``docker/worker.Dockerfile``, build stage), with the project's own
``workers.repository.write_repository`` and ``gateway.prediction.profiles.load_profiles``, so the
image serves exactly what ``synergai workers`` would: for every architecture ``A`` under
``profiles/``, ``<out>/A/<model>/{config.pbtxt,1/model.py}`` for every model profiled on ``A``.

The per-container knobs (``instances``, ``speed``, the RNG seed) are rewritten in the copied
``config.pbtxt`` files by ``docker/worker/entrypoint.sh`` at start, so one image serves every
pool; the placeholders baked here are ``instances=1``, ``speed=[[0.0, 1.0]]`` and ``seed=0``.

Usage: ``python bake_repositories.py PROFILES_DIR OUT_DIR CONTROL_FILE``
"""

from __future__ import annotations

import sys
from pathlib import Path

from gateway.prediction.profiles import load_profiles
from workers.repository import EmulatedModel, ServerSpec, write_repository


def main(argv: list[str]) -> int:
    """Write ``OUT_DIR/<arch>/`` for every architecture of ``PROFILES_DIR``.

    Args:
        argv: ``[PROFILES_DIR, OUT_DIR, CONTROL_FILE]``.

    Returns:
        The process exit status.
    """
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    profiles_dir, out_dir, control_file = (Path(a) for a in argv)
    book = load_profiles(profiles_dir)
    for arch in sorted(book.arch_names()):
        profiles = sorted((p for p in book if p.arch == arch), key=lambda p: p.model)
        if not profiles:
            continue
        models = [EmulatedModel.from_profile(p) for p in profiles]
        spec = ServerSpec(name=arch, models=models, instances=1, speed=[(0.0, 1.0)], seed=0)
        root = write_repository(spec, out_dir / arch, control_file)
        print(f"{arch}: {', '.join(spec.model_names)} -> {root}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
