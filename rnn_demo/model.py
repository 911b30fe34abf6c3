"""The recurrent text classifier: embedding -> RNN/GRU/LSTM layers -> pooling -> head.

Only ``nn.Module`` code lives here; no I/O and no training.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from rnn_demo.config_checks import Limits, check_field_types, check_limits
from rnn_demo.settings import Settings, limits_of, setting
from rnn_demo.text import PAD_ID, TEXT_LIMITS

# The one place that maps cell names to torch modules.
CELLS: dict[str, type[nn.RNNBase]] = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}
POOLINGS = ("last", "max", "mean", "attention")
NONLINEARITIES = ("tanh", "relu")  # of the plain RNN (nn.RNN(nonlinearity=...)); gated cells are fixed

# The limits bound the model's sizes, so that a mistyped flag or a hand-edited config.json is a
# clear error rather than an allocation of gigabytes.
@dataclass
class ModelConfig(Settings):
    """Everything needed to rebuild a ``RecurrentClassifier``. Saved in every checkpoint."""

    vocab_size: int = setting(0, label="Vocabulary size", widget="int",
                              help="rows of the embedding table, set from the fitted vocabulary",
                              limits=(0, TEXT_LIMITS["max_vocab"][1]))  # 0 = not set yet
    num_classes: int = setting(2, label="Classes", help="size of the output layer", widget="int",
                               limits=(1, 100))  # a CSV label column may have at most 100 distinct values
    cell: str = setting("gru", label="Cell", help="RNN (Elman), GRU or LSTM", widget="select", options=tuple(CELLS),
                        basic=True, form=0, flag="--cell")
    embedding_dim: int = setting(100, label="Embedding size", help="width of the word vectors", widget="int",
                                 limits=(1, 1024), step=16, form=1, flag="--embedding-dim")
    hidden_size: int = setting(128, label="Hidden size", help="units per direction in each recurrent layer",
                               widget="int", limits=(1, 2048), step=16, basic=True, form=2, flag="--hidden-size")
    num_layers: int = setting(1, label="Layers", help="stacked recurrent layers", widget="int", limits=(1, 6),
                              form=3, flag="--num-layers")
    bidirectional: bool = setting(False, label="Bidirectional", help="also read each text right to left",
                                  widget="check", form=4, flag="--bidirectional")
    dropout: float = setting(0.3, label="Dropout", help="on embeddings, between layers and before the head",
                             widget="float", widget_range=(0.0, 0.95), step=0.05, format="%.2f", form=5,
                             flag="--dropout")
    pooling: str = setting("last", label="Pooling", help="how the token states become one vector", widget="select",
                           options=POOLINGS, form=6, flag="--pooling")
    head_hidden: int = setting(0, label="Head hidden units", help="extra ReLU layer before the output; 0 = linear head",
                               widget="int", limits=(0, 2048), step=32, form=7, flag="--head-hidden")
    gate_bias: float = setting(
        1.0, label="Gate bias", widget="float", flag="--gate-bias",
        help="initial LSTM forget-gate / GRU update-gate bias (higher = remembers longer at first)")
    nonlinearity: str = setting("tanh", label="RNN nonlinearity", widget="select", options=NONLINEARITIES, form=10,
                                flag="--nonlinearity",
                                help="the plain RNN's activation: tanh, or relu (unbounded, no saturation); "
                                     "RNN cell only")
    freeze_embeddings: bool = setting(False, label="Freeze word vectors",
                                      help="keep pretrained vectors fixed during training", widget="check", form=9,
                                      flag="--freeze-embeddings")
    # A built-in name (the form's choices: rnn_demo.vectors.BUILTIN_VECTORS) or a GloVe/word2vec file.
    pretrained_vectors: str | None = setting(
        None, label="Word vectors", widget="select", form=8, flag="--vectors", metavar="NAME|PATH",
        help="start from pretrained vectors ('imdb' is learned offline from IMDB text; "
             "a new embedding size takes ~30 s the first time)")

    def __post_init__(self) -> None:
        check_field_types(self)
        if self.cell not in CELLS:
            raise ValueError(f"unknown cell {self.cell!r}; choose one of {', '.join(CELLS)}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {self.pooling!r}; choose one of {', '.join(POOLINGS)}")
        if self.nonlinearity not in NONLINEARITIES:
            raise ValueError(f"unknown nonlinearity {self.nonlinearity!r}; choose one of {', '.join(NONLINEARITIES)}")
        if self.nonlinearity != "tanh" and self.cell != "rnn":
            raise ValueError(f"the {self.nonlinearity} nonlinearity is for the RNN cell only; the {self.cell.upper()} "
                             "has fixed sigmoid and tanh gates (choose tanh or the RNN cell)")
        check_limits(self)
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    def with_cell(self, cell: str) -> ModelConfig:
        """A copy with another cell, e.g. for a race; a gated cell gets tanh (``nonlinearity`` is the RNN's)."""
        return dataclasses.replace(self, cell=cell, nonlinearity=self.nonlinearity if cell == "rnn" else "tanh")

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def output_size(self) -> int:
        """Width of each layer's per-token output (both directions)."""
        return self.hidden_size * self.num_directions


MODEL_LIMITS: Limits = limits_of(ModelConfig)  # a view of the metadata's limits


@dataclass
class ForwardDetails:
    """What the model computed on the way to its logits (for visualisation)."""

    logits: torch.Tensor  # (B, C)
    layer_outputs: list[torch.Tensor]  # per layer (B, T, D*H), zeros at padding
    pooled: torch.Tensor  # (B, D*H) the vector the head sees
    attention: torch.Tensor | None  # (B, T) weights over tokens, zeros at padding; None unless pooling="attention"


def padding_mask(lengths: torch.Tensor, max_len: int, device: torch.device) -> torch.Tensor:
    """(B, T) bool mask, True at real tokens."""
    return torch.arange(max_len, device=device)[None, :] < lengths.to(device)[:, None]


class RecurrentClassifier(nn.Module):
    """Embedding -> stacked recurrent layers -> padding-aware pooling -> classifier head.

    Layers are kept as separate single-layer modules so that every layer's
    per-token states can be shown. Padding never influences a text's logits: one-way
    layers meet it only after a text's real tokens, bidirectional layers run over
    sequences packed by their real lengths, and every pooling reads real tokens only.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.vocab_size < 2:
            raise ValueError("vocab_size must be set from the vocabulary (at least <pad> and <unk>)")
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.embedding_dim, padding_idx=PAD_ID)
        self.embedding.weight.requires_grad_(not config.freeze_embeddings)
        cell = CELLS[config.cell]
        extra = {"nonlinearity": config.nonlinearity} if config.cell == "rnn" else {}
        self.layers = nn.ModuleList(
            cell(
                input_size=config.embedding_dim if i == 0 else config.output_size,
                hidden_size=config.hidden_size,
                batch_first=True,
                bidirectional=config.bidirectional,
                **extra,
            )
            for i in range(config.num_layers)
        )
        self._init_gate_biases(config.gate_bias)
        self.dropout = nn.Dropout(config.dropout)
        width = config.output_size
        if config.pooling == "attention":
            self.attention_proj = nn.Linear(width, width)
            self.attention_score = nn.Linear(width, 1, bias=False)
        if config.head_hidden:
            self.head: nn.Module = nn.Sequential(
                nn.Linear(width, config.head_hidden),
                nn.ReLU(),
                nn.Dropout(config.dropout),
                nn.Linear(config.head_hidden, config.num_classes),
            )
        else:
            self.head = nn.Linear(width, config.num_classes)

    @torch.no_grad()
    def _init_gate_biases(self, value: float) -> None:
        """Sets the bias of the gate that keeps the old state (Jozefowicz et al., 2015).

        PyTorch's default biases make gates start half open, so a gated cell forgets
        a signal within a few dozen steps until training discovers otherwise; a
        positive bias starts it remembering, which is what long-range tasks need.
        LSTM gate order is (input, forget, cell, output), GRU's is (reset, update, new);
        either way the gate is the second block of ``hidden_size`` rows.
        """
        if self.config.cell == "rnn":
            return
        h = self.config.hidden_size
        for name, param in self.layers.named_parameters():
            if name.rsplit(".", 1)[-1].startswith("bias_"):
                param[h : 2 * h] = value if "bias_ih" in name else 0.0

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Class logits.

        Args:
            ids: (B, T) token ids, padded with 0.
            lengths: (B,) real lengths (>= 1), on any device.

        Returns:
            (B, C) logits.
        """
        embedded = self.embedding(ids)  # (B, T, E)
        return self.forward_embedded(embedded, lengths).logits  # dropout -> layers -> pooling -> head

    def forward_details(self, ids: torch.Tensor, lengths: torch.Tensor) -> ForwardDetails:
        """Like ``forward`` but also returns every layer's states, the pooled vector and attention."""
        return self.forward_embedded(self.embedding(ids), lengths, details=True)

    def forward_embedded(self, embedded: torch.Tensor, lengths: torch.Tensor, details: bool = False) -> ForwardDetails:
        """Runs the network from word vectors (so gradients w.r.t. embeddings can be taken).

        Args:
            embedded: (B, T, E) word vectors.
            lengths: (B,) real lengths.
            details: Unpack and keep every layer's per-token outputs.

        Returns:
            The logits and, with ``details``, the intermediate states.
        """
        lengths_cpu = lengths.detach().to("cpu", torch.long)
        # (B, T) True at real tokens, for the details; a pooling that needs it builds it otherwise
        mask = padding_mask(lengths_cpu, embedded.shape[1], embedded.device) if details else None
        x = self.dropout(embedded)  # (B, T, E)
        if self.config.bidirectional:
            layer_outputs = self._run_packed(x, lengths_cpu, details)  # per layer (B, T, 2H)
        else:
            layer_outputs = self._run_dense(x, mask, details)  # per layer (B, T, H)
        pooled, attention = self.pool(layer_outputs[-1], lengths_cpu, mask)  # (B, D*H)
        logits = self.head(self.dropout(pooled))  # (B, C)
        return ForwardDetails(
            logits=logits, layer_outputs=layer_outputs if details else [], pooled=pooled, attention=attention
        )

    def pool(self, out: torch.Tensor, lengths: torch.Tensor,
             mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Pools the last layer's per-token states into one vector per text, reading real tokens only.

        The padding rule, the one place it is written: ``last`` takes the state after each text's last
        real token (and, bidirectional, the backward direction's state at the first token); ``max``,
        ``mean`` and ``attention`` mask out the positions past each text's length, whatever they hold.

        Args:
            out: (B, T, D*H) last-layer outputs.
            lengths: (B,) real lengths.
            mask: (B, T) True at real tokens (computed from ``lengths`` when omitted).

        Returns:
            ``(pooled (B, D*H), attention (B, T) or None)``.
        """
        lengths = lengths.detach().to("cpu", torch.long)
        attention = None
        pooling = self.config.pooling
        if mask is None and pooling != "last":
            mask = padding_mask(lengths, out.shape[1], out.device)
        if pooling == "last":
            # Forward direction: the state after each text's last real token; backward
            # direction (if any): the state after reading back to the first token.
            h = self.config.hidden_size
            rows = torch.arange(out.shape[0], device=out.device)
            pooled = out[rows, lengths.to(out.device) - 1, :h]  # (B, H)
            if self.config.bidirectional:
                pooled = torch.cat([pooled, out[:, 0, h:]], dim=-1)  # (B, 2H)
        elif pooling == "max":
            pooled = out.masked_fill(~mask[:, :, None], float("-inf")).max(dim=1).values
        elif pooling == "mean":
            pooled = (out * mask[:, :, None]).sum(dim=1) / lengths.to(out.device, out.dtype)[:, None]
        else:  # attention
            scores = self.attention_score(torch.tanh(self.attention_proj(out))).squeeze(-1)  # (B, T)
            attention = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=1)
            pooled = torch.bmm(attention.unsqueeze(1), out).squeeze(1)  # (B, D*H)
        return pooled, attention

    def pool_and_classify(
        self, out: torch.Tensor, lengths: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``pool`` and then the head (after dropout).

        Returns:
            ``(logits (B, C), pooled (B, D*H), attention (B, T) or None)``.
        """
        pooled, attention = self.pool(out, lengths, mask)
        return self.head(self.dropout(pooled)), pooled, attention

    def _run_dense(self, x: torch.Tensor, mask: torch.Tensor | None, details: bool) -> list[torch.Tensor]:
        """Left-to-right layers over the padded batch (``x`` (B, T, E), dropped out) in one call per layer.

        Padding sits after each text's real tokens, so it cannot influence the states
        at real positions; running the whole padded tensor lets PyTorch use its
        full-sequence kernels (faster on CPU than packed sequences). The work spent on
        padding is kept small by length bucketing.

        The states computed over padding are zeroed only with ``details`` (they are shown): the
        next layer never reads them into a real position and every pooling masks them itself.
        """
        outputs = []
        for i, layer in enumerate(self.layers):
            if i > 0:
                x = self.dropout(x)
            x = layer(x)[0]  # (B, T, H)
            if details:
                x = x * mask[:, :, None]  # zero the states computed over padding
            outputs.append(x)
        return outputs

    def _run_packed(self, x: torch.Tensor, lengths: torch.Tensor, details: bool) -> list[torch.Tensor]:
        """Bidirectional layers over packed sequences (``x`` (B, T, E), dropped out), so the right-to-left
        direction starts at each text's last real token rather than at the padding.

        Returns:
            Per-layer (B, T, 2H) outputs, zeros at padding (only the last layer unless ``details``).
        """
        max_len = x.shape[1]
        packed: PackedSequence = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        outputs = []
        last_index = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            if i > 0:
                packed = packed._replace(data=self.dropout(packed.data))
            packed, _ = layer(packed)
            if details or i == last_index:
                outputs.append(pad_packed_sequence(packed, batch_first=True, total_length=max_len)[0])
        return outputs

    def hidden_states(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Per-token hidden states of every layer and direction.

        Returns:
            (layers * directions, B, T, H); row ``layer * D + d`` is direction ``d``
            (0 = left-to-right, 1 = right-to-left) of ``layer``. Zeros at padding.
        """
        outputs = self.forward_details(ids, lengths).layer_outputs
        h = self.config.hidden_size
        per_direction = [out[..., d * h : (d + 1) * h] for out in outputs for d in range(self.config.num_directions)]
        return torch.stack(per_direction)

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)
