"""``python -m kubetasks.devcluster binaries|build``: find (or build) the control-plane
binaries and print their directory."""

from __future__ import annotations

import argparse
import sys

from kubetasks.devcluster.binaries import build_binaries, cached_bin_dir, find_binaries
from kubetasks.devcluster.errors import ComponentError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kubetasks.devcluster")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("binaries", help="print the binaries' directory, building them if needed")
    sub.add_parser("build", help="(re)build the binaries into the cache")
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            build_binaries(cached_bin_dir())
            print(cached_bin_dir())
        else:
            print(find_binaries().directory)
    except ComponentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
