"""RNN Playground: train, probe and explain small recurrent text classifiers.

The package has no Streamlit dependency except in ``rnn_demo.ui``; everything the
app does can be done from Python or from ``python -m rnn_demo``.
"""

__version__ = "0.1.0"
