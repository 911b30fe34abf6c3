"""``python -m rnn_demo``: see ``rnn_demo.cli``."""

import sys

from rnn_demo.cli import main

sys.exit(main())
