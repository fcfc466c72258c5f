"""``sqlhttp-middleware serve``: the middleware alone, served by uvicorn, for a team with no Python app.

Options come from the command line and from the same ``SQLHTTP_*`` environment variables the examples read; the
command line wins. Workers get their settings through the environment, so ``--workers N`` works.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence

from .asgi import SQLHTTPMiddleware
from .env import env_name, options_from_env
from .options import ConfigurationError, Options, parse_targets

__all__ = ["app_from_env", "main"]


def app_from_env() -> SQLHTTPMiddleware:
    """The ASGI app uvicorn's workers build (``--factory``): the endpoint alone, configured by ``SQLHTTP_*``."""
    return SQLHTTPMiddleware(None, **options_from_env())


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sqlhttp-middleware", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve /sql with uvicorn")
    serve.add_argument("--target", action="append", default=[], metavar="NAME=URL",
                       help="a target clients name by cacheId (repeatable); adds to SQLHTTP_TARGETS")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    serve.add_argument("--path", help="endpoint path (default /sql, or SQLHTTP_PATH)")
    serve.add_argument("--log-level", default="info", help="uvicorn's log level (default info)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        targets = parse_targets(os.environ.get(env_name("targets"), ""))
        targets.update(parse_targets(" ".join(args.target)))
        os.environ[env_name("targets")] = " ".join(f"{name}={url}" for name, url in targets.items())
        if args.path:
            os.environ[env_name("path")] = args.path
        options = Options.from_kwargs(**options_from_env())  # refuse a bad setting here, not in every worker
    except ConfigurationError as error:
        print(f"sqlhttp-middleware: {error}", file=sys.stderr)
        return 2
    try:
        import uvicorn
    except ImportError:
        print("sqlhttp-middleware: the server needs uvicorn: pip install 'sqlhttp-middleware[server]'", file=sys.stderr)
        return 2
    # On SIGTERM, in-flight requests get drain_timeout seconds; then uvicorn cancels them and exits. A request
    # never waits on its database past its hard deadline, so none can keep the process alive.
    uvicorn.run("sqlhttp_middleware.cli:app_from_env", factory=True, host=args.host, port=args.port,
                workers=args.workers, log_level=args.log_level,
                timeout_graceful_shutdown=math.ceil(options.drain_timeout))
    return 0
