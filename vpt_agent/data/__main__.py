"""``python -m vpt_agent.data``: see :mod:`vpt_agent.data.cli`."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
