"""Safety net for the processes the launcher starts: nothing outlives its parent.

Three layers, from the most to the least orderly:

1. context managers (``TritonServer``, ``Fleet``) stop their children on exit, also when a test
   fails or Ctrl-C raises ``KeyboardInterrupt``;
2. an ``atexit`` hook kills every process group still registered here (only PIDs we started);
3. when the launching thread is the main thread, each child gets ``PR_SET_PDEATHSIG = SIGKILL``,
   so the kernel kills it if the parent dies without running Python code (SIGKILL, crash). It is
   not set from other threads because Linux fires it when the *thread* that forked exits.

``run_workers`` additionally turns SIGTERM into ``KeyboardInterrupt`` so layer 1 runs.
"""

from __future__ import annotations

import atexit
import ctypes
import ctypes.util
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil

__all__ = [
    "descendants",
    "is_gone",
    "kill_group",
    "live_pids",
    "preexec_for_child",
    "register",
    "remove_shm",
    "shm_segments",
    "unregister",
    "wait_gone",
]

_PR_SET_PDEATHSIG = 1
_lock = threading.Lock()
_live: dict[int, str] = {}


def register(pid: int, what: str) -> None:
    """Remember a process-group leader we started, so the atexit hook can kill its group."""
    with _lock:
        _live[pid] = what


def unregister(pid: int) -> None:
    """Forget a process once it has been reaped."""
    with _lock:
        _live.pop(pid, None)


def live_pids() -> dict[int, str]:
    """PIDs started and not yet reaped, with what they are (for tests and diagnostics)."""
    with _lock:
        return dict(_live)


def _set_pdeathsig() -> None:
    libc_name = ctypes.util.find_library("c") or "libc.so.6"
    libc = ctypes.CDLL(libc_name, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)


def preexec_for_child() -> Callable[[], None] | None:
    """``preexec_fn`` for ``Popen``: parent-death signal, when called from the main thread."""
    if threading.current_thread() is threading.main_thread():
        return _set_pdeathsig
    return None


def descendants(pid: int) -> list[psutil.Process]:
    """A process and all its descendants (those still alive)."""
    try:
        proc = psutil.Process(pid)
        return [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return []


def wait_gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait until every process has exited; return those still running after ``timeout``.

    A zombie counts as gone: it holds no memory, ports or shared memory, only a PID entry.
    Stubs orphaned by a SIGKILLed server are re-parented to PID 1, and some container inits
    never reap them; waiting for that would only burn the timeout.
    """
    deadline = time.monotonic() + timeout
    alive = list(procs)
    while alive:
        still = []
        for proc in alive:
            try:
                if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                    still.append(proc)
            except psutil.Error:
                pass
        alive = still
        if not alive or time.monotonic() >= deadline:
            break
        time.sleep(0.01)
    return alive


def is_gone(pid: int) -> bool:
    """Whether ``pid`` no longer runs (absent, or a zombie)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


def shm_segments(procs: list[psutil.Process]) -> set[Path]:
    """``/dev/shm`` files mapped by these processes (the python backend's shared memory).

    Collected before a hard kill, so the segments that only those processes knew about can be
    removed afterwards (a SIGKILLed Triton cannot clean up its own).
    """
    out: set[Path] = set()
    for proc in procs:
        try:
            maps = Path(f"/proc/{proc.pid}/maps").read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for line in maps.splitlines():
            idx = line.find("/dev/shm/")
            if idx >= 0:
                out.add(Path(line[idx:].split(" (deleted)")[0].strip()))
    return out


def remove_shm(paths: set[Path]) -> None:
    """Unlink shared-memory files left behind (missing ones are fine)."""
    for path in paths:
        try:
            path.unlink()
        except OSError:
            pass


def kill_group(pid: int, sig: int = signal.SIGKILL) -> None:
    """Send ``sig`` to the process group led by ``pid`` (no error if it is gone)."""
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _kill_all_at_exit() -> None:
    with _lock:
        pids = list(_live)
        _live.clear()
    procs: list[psutil.Process] = []
    for pid in pids:
        procs.extend(descendants(pid))
    shm = shm_segments(procs)
    for pid in pids:
        kill_group(pid)
    wait_gone(procs, timeout=5)
    remove_shm(shm)
    # Let the kernel reap zombies of direct children.
    deadline = time.monotonic() + 1
    for pid in pids:
        while time.monotonic() < deadline:
            try:
                if os.waitpid(pid, os.WNOHANG)[0] != 0:
                    break
            except ChildProcessError:
                break
            time.sleep(0.01)


atexit.register(_kill_all_at_exit)
