"""Interpreters: why a model predicted what it did, and what happens inside it.

Every function here is a plain function over a :class:`~rnn_demo.predict.Predictor`
(the one inference path) and returns plain data: dataclasses of lists, floats and
NumPy arrays. Nothing here draws or knows about Streamlit; ``rnn_demo.plots``
draws the results and ``rnn_demo.ui.explain_panel`` shows them.

Word importance (one weight per token, towards one class), in :mod:`.attribution`:

* :func:`explain_lime` — LIME (``lime.lime_text.LimeTextExplainer``), the perturbed
  texts predicted in large batches through ``Predictor.predict_proba``.
* :func:`explain_occlusion` — leave one token out.
* :func:`explain_gradient` — gradient × input on the word vectors.
* :func:`compare_methods` — all three side by side with their Spearman rank agreement.

Looking inside:

* :func:`prediction_trace` (:mod:`.trace`) — class probabilities after every prefix of the text.
* :func:`internal_states` (:mod:`.states`) — hidden states of every layer and direction, and the
  LSTM/GRU gates, from a replay of the cell equations (``rnn_demo.cells``) with the trained weights.
* :func:`gradient_through_time` (:mod:`.through_time`) — ``‖∂loss/∂h_t‖`` for every time step.
* :func:`hidden_state_map` / :func:`hidden_trajectory` (:mod:`.maps`) — 2-D PCA pictures of states.
* :func:`build_activation_cache` (:mod:`.neurons`) — every unit's activation over a split, cached on disk;
  :func:`top_contexts`, :func:`activation_histogram`, :func:`class_correlation` of one unit;
  :func:`select_units` / :func:`match` (:mod:`.neuron_select`) — LSTMVis's select and match.
* :func:`cell_step` (:mod:`.cell_step`) — one step of a cell worked through: its equations and, for a
  few units, every gate's pre-activation and value, from ``rnn_demo.cells``.
* :func:`run_vanishing_lab` / :func:`load_vanishing_lab` (:mod:`.lab`) — RNN vs GRU vs LSTM on
  the ``long_range`` task, cached on disk; with :func:`spectral_summary` (:mod:`.spectral`), the
  singular values of W_hh and the gates' saturation behind the gradient curves.

Every explanation of one text reads at most :data:`EXPLAIN_MAX_TOKENS` tokens of it (fewer
when the model's own cap is smaller) and says so in its result (``truncated``, ``num_tokens``).
What they share (that limit, :class:`ExplainError`, :func:`torch_threads`) lives in :mod:`.common`.
The names below are re-exported so that ``from rnn_demo import explain; explain.X`` works for all of them.
"""

from rnn_demo.explain.attribution import (
    METHOD_TITLES,
    METHODS,
    MethodComparison,
    TokenAttribution,
    compare_methods,
    explain_gradient,
    explain_lime,
    explain_occlusion,
    explain_tokens,
    rank_agreement,
)
from rnn_demo.explain.cell_step import CellStep, cell_step
from rnn_demo.explain.common import EXPLAIN_MAX_TOKENS, ExplainError, torch_threads
from rnn_demo.explain.lab import (
    LabResult,
    LabSettings,
    ProgressCallback,
    lab_dir,
    lab_result_path,
    load_vanishing_lab,
    run_vanishing_lab,
)
from rnn_demo.explain.maps import (
    PCABasis,
    StateMap,
    Trajectory,
    fit_pca,
    hidden_state_map,
    hidden_trajectory,
    state_vectors,
    validation_examples,
)
from rnn_demo.explain.neuron_select import Match, Selection, UnitScore, match, select_units
from rnn_demo.explain.neurons import (
    NeuronCache,
    activation_histogram,
    build_activation_cache,
    class_correlation,
    load_activation_cache,
    strongest_unit,
    top_contexts,
)
from rnn_demo.explain.spectral import SpectralSummary, spectral_summary
from rnn_demo.explain.states import (
    GATE_NAMES,
    UNIT_ORDERS,
    InternalStates,
    attention_weights,
    internal_states,
    order_units,
    row_names,
)
from rnn_demo.explain.through_time import GradientThroughTime, gradient_through_time
from rnn_demo.explain.trace import PredictionTrace, prediction_trace

__all__ = [
    "EXPLAIN_MAX_TOKENS",
    "GATE_NAMES",
    "METHODS",
    "METHOD_TITLES",
    "UNIT_ORDERS",
    "ExplainError",
    "GradientThroughTime",
    "CellStep",
    "InternalStates",
    "LabResult",
    "LabSettings",
    "Match",
    "MethodComparison",
    "NeuronCache",
    "PCABasis",
    "PredictionTrace",
    "ProgressCallback",
    "Selection",
    "SpectralSummary",
    "StateMap",
    "TokenAttribution",
    "Trajectory",
    "UnitScore",
    "activation_histogram",
    "attention_weights",
    "build_activation_cache",
    "cell_step",
    "class_correlation",
    "compare_methods",
    "explain_gradient",
    "explain_lime",
    "explain_occlusion",
    "explain_tokens",
    "fit_pca",
    "gradient_through_time",
    "hidden_state_map",
    "hidden_trajectory",
    "internal_states",
    "lab_dir",
    "lab_result_path",
    "load_activation_cache",
    "load_vanishing_lab",
    "match",
    "order_units",
    "prediction_trace",
    "rank_agreement",
    "row_names",
    "run_vanishing_lab",
    "select_units",
    "spectral_summary",
    "state_vectors",
    "strongest_unit",
    "top_contexts",
    "torch_threads",
    "validation_examples",
]
