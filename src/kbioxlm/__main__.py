"""``python -m kbioxlm`` is the same as the ``kbioxlm`` command (used by torchrun/accelerate)."""

import sys

from .cli import main

sys.exit(main())
