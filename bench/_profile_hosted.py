"""`python bench/_profile_hosted.py OUT`: the hosted app (`python -m provision.hosted`) under cProfile,
its stats written to OUT when it stops. bench/hosted.py runs it when HOSTED_PROFILE=OUT is set.

`python -m cProfile -m provision.hosted` writes nothing: on SIGTERM uvicorn shuts down and then
raises the signal again, which kills the process before cProfile dumps its stats.
"""
from __future__ import annotations

import cProfile
import os
import signal
import sys
import time


def main(out: str) -> int:
    signal.raise_signal = lambda *args: None   # uvicorn's re-raise after a graceful shutdown
    prof = cProfile.Profile(time.process_time) if os.environ.get("HOSTED_PROFILE_CPU") else cProfile.Profile()
    prof.enable()
    try:
        from provision.hosted.__main__ import main as serve

        return serve()
    finally:
        prof.disable()
        prof.dump_stats(out)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
