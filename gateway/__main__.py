"""``python -m tenure``: the ``tenure`` command (see :mod:`tenure.cli.main`)."""

import sys

from tenure.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
