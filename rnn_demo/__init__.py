"""RNN Playground: train, probe and explain small recurrent text classifiers.

The package has no Streamlit dependency except in ``rnn_demo.ui``; everything the
app does can be done from Python or from ``python -m rnn_demo``.
"""

__version__ = "0.1.0"
# The version of what training produces. Bump it with any change that alters a trained run (its
# numbers, defaults or files), then rebuild the shipped runs with `make checkpoints`; a test
# checks that the shipped runs carry this number.
TRAINING_VERSION = 3
