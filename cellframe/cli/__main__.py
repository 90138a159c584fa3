"""``python -m cellframe.cli``: the same as the ``cellframe`` command."""

import sys

from cellframe.cli import main

sys.exit(main())
