import sys

from mmmos.app.cli import main

sys.exit(main())
