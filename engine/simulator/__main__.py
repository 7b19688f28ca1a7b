"""`python -m engine.simulator`: see `engine.simulator.server.main`."""

import sys

from engine.simulator.server import main

sys.exit(main())
