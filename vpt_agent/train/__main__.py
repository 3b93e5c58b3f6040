"""``python -m vpt_agent.train``: see :mod:`vpt_agent.train.cli`."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
