"""Kill a child process at a chosen moment, as a crash or a closed laptop would, for the resume tests."""
from __future__ import annotations

import signal
import subprocess
import time
from typing import Callable, Mapping, Sequence


def killed_when(args: Sequence[str], env: Mapping[str, str], ready: Callable[[], bool], *, settle: float = 0.0,
                poll: float = 0.01, within: float = 60.0) -> tuple[int, bytes, bytes]:
    """Run `args`, SIGKILL it `settle` seconds after `ready()` first holds, and return its exit code and output.

    Fails if the process ends on its own first; never leaves it running.
    """
    proc = subprocess.Popen(list(args), env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline and proc.poll() is None:
            if ready():
                break
            time.sleep(poll)
        assert proc.poll() is None, f"the run ended before it could be killed: {proc.communicate()}"
        time.sleep(settle)
        proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, out, err
