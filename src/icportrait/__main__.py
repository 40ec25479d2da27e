import sys

from icportrait.cli import main

sys.exit(main())
