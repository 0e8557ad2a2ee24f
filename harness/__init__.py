"""Small helpers that evals, bench, scripts and tests share: a free port, a child server started
and stopped, a percentile, a dialogue run turn by turn. Imports nothing of the product's but its
records, so anything may use it."""
from __future__ import annotations

import socket
import subprocess
import time
from typing import Callable, Iterable, Sequence, TypeVar

from assistant.records import Turn

T = TypeVar("T")
HOST = "127.0.0.1"


def free_port(host: str = HOST) -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen | None = None, seconds: float = 30, host: str = HOST) -> bool:
    """True once something accepts connections on host:port; False when time runs out or proc exits."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.2)
    return False


def start_server(cmd: Sequence[str], port: int, seconds: float = 30, **popen) -> subprocess.Popen:
    """Start a child server and wait until it listens on port; RuntimeError (and no child) if it never does."""
    popen.setdefault("stdout", subprocess.DEVNULL)
    popen.setdefault("stderr", subprocess.DEVNULL)
    proc = subprocess.Popen(list(cmd), **popen)
    if not wait_for_port(port, proc, seconds):
        stop_process(proc, 5)
        raise RuntimeError(f"{cmd[0]} did not listen on port {port} within {seconds:g} s (exit code {proc.returncode})")
    return proc


def stop_process(proc: subprocess.Popen, grace: float = 15) -> None:
    """Terminate a child process, killing it if it does not stop within `grace` seconds."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def percentile(values: Iterable[float], q: float) -> float:
    """The q-quantile (0..1) with linear interpolation between closest ranks; 0.0 for no values."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def run_dialogue(ask: Callable[[str, list[Turn]], T], questions: Iterable[str], text: Callable[[T], str] = lambda a: a.text) -> list[T]:
    """Ask questions in turn, each with the conversation so far; the answers, in order.

    `ask(question, history)` answers one turn; `text(answer)` is what the assistant said (it
    joins the history). A turn that fails should return something whose text is ''."""
    history: list[Turn] = []
    out: list[T] = []
    for q in questions:
        answer = ask(q, list(history))
        out.append(answer)
        history += [Turn("user", q), Turn("assistant", text(answer))]
    return out
