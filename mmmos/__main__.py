"""`python -m mmmos`: the command line (see mmmos.app.cli)."""
import sys

from mmmos.app.cli import main

sys.exit(main())
