"""RNN Playground: train, probe and explain small recurrent text classifiers.

The package has no Streamlit dependency except in ``rnn_demo.ui``; everything the
app does can be done from Python or from ``python -m rnn_demo``.
"""

import os

# OpenMP threads that wait for work by spinning take the CPU from every other process; on a
# shared 2-core machine (a class server, a laptop running the app and a CLI job) this made a
# training step 20x slower. Sleeping waits cost almost nothing when the machine is idle.
# It must be set before torch loads its OpenMP runtime; a user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
# The version of what training produces. Bump it with any change that alters a trained run (its
# numbers, defaults or files), then rebuild the shipped runs with `make checkpoints`; a test
# checks that the shipped runs carry this number.
TRAINING_VERSION = 2
