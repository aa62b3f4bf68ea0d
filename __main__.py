import sys

from aipc.cli import main

sys.exit(main())
