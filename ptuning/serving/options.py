"""The command-line options of a server (``python -m ptuning serve`` and the Ray Serve launcher): the adapters, the
address, then ``ServingConfig``'s fields. Apart from the server so that building the CLI's parser imports no HTTP stack."""

from __future__ import annotations

import argparse

from ..options import add_options
from .engine import ServingConfig


def add_serve_options(p: argparse.ArgumentParser, config_cls: type = ServingConfig) -> None:
    """The options of ``serve`` (and of the Ray Serve launcher): adapters, address, then ``ServingConfig``'s fields."""
    p.add_argument(
        "--adapter", action="append", default=[], metavar="NAME=ADAPTER",
        help="Serve the adapter at ADAPTER (directory or Hub repo id) as NAME; repeat for more.",
    )  # fmt: skip
    p.add_argument("--host", default="127.0.0.1", help="Address to listen on. Default: 127.0.0.1.")
    p.add_argument("--port", type=int, default=8000, help="Port to listen on. Default: 8000.")
    add_options(p.add_argument_group("batching and limits"), config_cls)
