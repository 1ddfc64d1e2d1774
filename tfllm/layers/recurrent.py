"""Stacked LSTM layers with residual connections, normalisation and states."""

import keras

from tfllm.layers.normalization import LayerNormalization
from tfllm.layers.validation import check_positive_int, check_rate


@keras.saving.register_keras_serializable(package="tfllm")
class StackedLSTM(keras.layers.Layer):
    """Several LSTM layers with residual connections and layer normalisation.

    Layer `i` reads the layer-normalised output of layer `i - 1` and, when
    the widths match, adds its own output to it (a residual connection), so
    deep stacks train as easily as shallow ones. Dropout sits between the
    layers. The call takes and returns the `(h, c)` states of every layer,
    so a caller can continue a sequence where it stopped: running a sequence
    in two pieces, passing the states of the first to the second, gives the
    outputs of running it whole.

    Args:
        num_layers: int, number of LSTM layers.
        hidden_dim: int, width of each LSTM layer.
        dropout: float in [0, 1), dropout between layers.
        residual: bool, add residual connections where widths match.
        normalize: bool, layer-normalise the input of every LSTM layer.
        layer_norm_epsilon: float, epsilon of the layer normalisations.
        seed: int or None, seed of the dropouts.
        **kwargs: standard `keras.layers.Layer` arguments.

    Call arguments:
        inputs: `[B, T, D]` tensor.
        initial_states: optional list of `num_layers` pairs `[h, c]`, each
            `[B, hidden_dim]`; zeros when omitted.
        mask: optional `[B, T]` boolean; masked steps keep the states
            unchanged.
        training: bool, enables dropout.

    Returns:
        A tuple `(outputs, states)`: `[B, T, hidden_dim]` outputs and the
        list of `num_layers` final `[h, c]` pairs.

    Example:

    >>> lstm = StackedLSTM(num_layers=2, hidden_dim=64)
    >>> outputs, states = lstm(keras.random.normal((2, 10, 64)))
    >>> more, states = lstm(keras.random.normal((2, 5, 64)), initial_states=states)
    """

    def __init__(
        self,
        num_layers,
        hidden_dim,
        dropout=0.0,
        residual=True,
        normalize=True,
        layer_norm_epsilon=1e-5,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_layers = check_positive_int("num_layers", num_layers)
        self.hidden_dim = check_positive_int("hidden_dim", hidden_dim)
        self.dropout = check_rate("dropout", dropout)
        self.residual = bool(residual)
        self.normalize = bool(normalize)
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.seed = seed

    def build(self, input_shape):
        common = {"dtype": self.dtype_policy}
        self.lstm_layers, self.norms = [], []
        shape = tuple(input_shape)
        for index in range(self.num_layers):
            if self.normalize:
                norm = LayerNormalization(
                    epsilon=self.layer_norm_epsilon, name=f"norm_{index}", **common
                )
                norm.build(shape)
                self.norms.append(norm)
            lstm = keras.layers.LSTM(
                self.hidden_dim,
                return_sequences=True,
                return_state=True,
                name=f"lstm_{index}",
                **common,
            )
            lstm.build(shape)
            self.lstm_layers.append(lstm)
            shape = shape[:-1] + (self.hidden_dim,)
        self.dropout_layer = keras.layers.Dropout(self.dropout, seed=self.seed, **common)
        self.built = True

    def call(self, inputs, initial_states=None, mask=None, training=None):
        if initial_states is not None and len(initial_states) != self.num_layers:
            raise ValueError(
                f"`initial_states` must hold one [h, c] pair per layer "
                f"({self.num_layers}); got {len(initial_states)}."
            )
        x = inputs
        states = []
        for index, lstm in enumerate(self.lstm_layers):
            layer_input = self.norms[index](x) if self.normalize else x
            initial_state = None if initial_states is None else list(initial_states[index])
            output, hidden, cell = lstm(
                layer_input, initial_state=initial_state, mask=mask, training=training
            )
            states.append([hidden, cell])
            output = self.dropout_layer(output, training=training)
            x = x + output if self.residual and x.shape[-1] == self.hidden_dim else output
        return x, states

    def compute_mask(self, inputs, mask=None):
        # The outputs keep the input's time mask; the states have none.
        return mask, [[None, None] for _ in range(self.num_layers)]

    def compute_output_shape(self, input_shape):
        batch_size = input_shape[0]
        state_shape = (batch_size, self.hidden_dim)
        return (
            tuple(input_shape[:-1]) + (self.hidden_dim,),
            [[state_shape, state_shape] for _ in range(self.num_layers)],
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_layers": self.num_layers,
                "hidden_dim": self.hidden_dim,
                "dropout": self.dropout,
                "residual": self.residual,
                "normalize": self.normalize,
                "layer_norm_epsilon": self.layer_norm_epsilon,
                "seed": self.seed,
            }
        )
        return config
