"""``helion-optuna serve-storage URL``: Optuna's gRPC storage proxy in front of a database.

Processes and machines that tune one study together then use ``--storage grpc://HOST:PORT``
(storage/proxy.py): they talk to this server instead of holding database connections each,
and it fails the trials of processes that died. It has no authentication: it listens on
this machine only unless ``--host`` says otherwise, and belongs on a network you trust.
"""

from __future__ import annotations

import argparse
import sys

from helion_optuna.storage.opening import serve
from helion_optuna.storage.proxy import PORT
from helion_optuna.storage.urls import masked


def run(args: argparse.Namespace) -> int:
    server = serve(args.url, args.host, args.port)
    print(f"serving {masked(args.url)} on grpc://{args.host}:{args.port} (tunings use "
          f"--storage grpc://{args.host}:{args.port}); Ctrl-C stops it", file=sys.stderr,
          flush=True)
    try:
        server.wait_for_termination()
    except KeyboardInterrupt:
        server.stop(grace=1)
    return 0


def command(port: object) -> tuple:
    """The command's entry in command.COMMANDS; ``port``: the argparse type of a port."""
    return (run, "serve a database through Optuna's gRPC storage proxy, for many workers "
                 "(they use --storage grpc://HOST:PORT)",
            [(("url",), {"metavar": "URL", "help": "the database: an SQLAlchemy URL"}),
             (("--host",), {"default": "127.0.0.1",
                            "help": "the address to listen on (default: 127.0.0.1, this "
                                    "machine only; 0.0.0.0: every network, unauthenticated)"}),
             (("--port",), {"type": port, "default": PORT,
                            "help": f"the port to listen on (default: {PORT})"})])
