"""Stage 3 runner: re-run ensembles of a finished sweep in seconds (never retrains).

``python select_ensemble.py RUN ARGS`` is ``mmmos ensemble RUN ARGS``; the logic lives in
``mmmos.ensemble`` (installed with the package), this file keeps the design card's entry point at the top.
"""
import sys

from mmmos.app.cli import main

if __name__ == "__main__":
    sys.exit(main(["ensemble", *sys.argv[1:]]))
