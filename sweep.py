"""Stage 2 runner: train every head x loss configuration from the frame cache.

``python sweep.py ARGS`` is ``mmmos sweep ARGS``; the logic lives in ``mmmos.sweep``
(installed with the package), this file keeps the design card's entry point at the top.
"""
import sys

from mmmos.app.cli import main

if __name__ == "__main__":
    sys.exit(main(["sweep", *sys.argv[1:]]))
