import sys

from mmmos.cli import main

sys.exit(main())
