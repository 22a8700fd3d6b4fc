"""`python -m ess_sidecar.essctl` = `essctl`."""

import sys

from .main import main

sys.exit(main())
