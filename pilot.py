#!/usr/bin/env python3
"""Entry point: ./pilot.py -q QUEUE [options]; see README.md."""

import sys

from pilot.main import main

if __name__ == "__main__":
    sys.exit(main())
