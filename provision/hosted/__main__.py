"""`python -m hosted` (in the source archive; `python -m provision.hosted` in the repo): run the app.

Listens on $PORT (Cloud Run sets it; 8080 otherwise), on every interface when Cloud Run runs it
($K_SERVICE is set), on 127.0.0.1 otherwise. A bad setting prints one line and exits 2.
"""
from __future__ import annotations

import os
import sys


def main() -> int:
    import uvicorn

    from .app import create_app
    from .settings import SettingsError

    try:
        app = create_app()
    except SettingsError as exc:
        print(f"hosted viewer: {exc}", file=sys.stderr)
        return 2
    host = os.environ.get("HOST") or ("0.0.0.0" if os.environ.get("K_SERVICE") else "127.0.0.1")  # noqa: S104
    # uvicorn's own access log is off: middleware.AccessLog writes the structured one.
    # Keep-alive longer than the front end's: a connection the server closes while the client sends on
    # it is a failed request (seen in bench/hosted.py with uvicorn's 5 s default). 620 s is what Google
    # documents for load balancer backends (their keep-alive is 610 s); for Cloud Run's own front end
    # the figure is not published, so the same is used.
    uvicorn.run(app, host=host, port=int(os.environ.get("PORT", "8080")), access_log=False,
                log_level=os.environ.get("HOSTED_LOG_LEVEL", "warning"), timeout_graceful_shutdown=10,
                timeout_keep_alive=620)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
