#!/usr/bin/env python3
"""Run the sample from a shell."""

import sys

from core import greet


def main() -> int:
    print(greet(sys.argv[1] if len(sys.argv) > 1 else "world"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
