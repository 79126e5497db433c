"""Entry point for `python -m devstack.drive_emulator`."""

import sys

from devstack.drive_emulator.cli import main

sys.exit(main())
