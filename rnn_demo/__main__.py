"""``python -m rnn_demo``: see ``rnn_demo.cli``."""

import sys

from rnn_demo.runtime import configure_process

configure_process(training=True)  # before the CLI imports torch; the CLI trains in this process

from rnn_demo.cli import main  # noqa: E402

sys.exit(main())
