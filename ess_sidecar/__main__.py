"""`python -m ess_sidecar` = `ess-sidecar`."""

import sys

from .cli import main

sys.exit(main())
