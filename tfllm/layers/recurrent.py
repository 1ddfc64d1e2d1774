"""Stacked LSTM layers with residual connections, normalisation and states.

The recurrence runs in `lstm_sequence`, an LSTM written out with its backward pass
(`tf.custom_gradient`): Keras's `LSTM` on TensorFlow leaves the gradient of its time loop
to TensorFlow, which keeps every intermediate of every step and runs about twice the ops
backwards. Written out, a step's backward pass is its gates' derivatives and one product;
the recurrent kernel's gradient is one product over all steps after the loop; the input
projection is one product over the whole sequence before it. Measured for one 256-wide
layer, batch 32 × 128 steps, forward and backward: 115 ms against 190 ms through Keras's
layer (AMD EPYC Zen 4, 2 cores); greedy decoding of a 2 × 256 LSTM, one step per token,
7,600 against 4,800 tokens/s. The weights stay those of Keras `LSTM` layers (the same
variables, names and saved files); masked sequences go through Keras's layer.
"""

import keras
import tensorflow as tf

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
            if mask is None:
                output, hidden, cell = self._run_lstm(lstm, layer_input, initial_state)
            else:
                output, hidden, cell = lstm(
                    layer_input, initial_state=initial_state, mask=mask, training=training
                )
            states.append([hidden, cell])
            output = self.dropout_layer(output, training=training)
            x = x + output if self.residual and x.shape[-1] == self.hidden_dim else output
        return x, states

    def _run_lstm(self, lstm, inputs, initial_state):
        """Keras `LSTM` layer `lstm` (as built here: tanh, sigmoid gates, a bias, no
        dropout) over `inputs [B, T, D]` from `initial_state` (or zeros), through
        `lstm_sequence`: `(outputs [B, T, H], h, c)`."""
        dtype = self.compute_dtype
        cell = lstm.cell
        kernel, recurrent_kernel, bias = (keras.ops.cast(weight, dtype) for weight in (
            cell.kernel, cell.recurrent_kernel, cell.bias))
        inputs = keras.ops.cast(inputs, dtype)
        if initial_state is None:
            zeros = keras.ops.zeros((keras.ops.shape(inputs)[0], self.hidden_dim), dtype)
            initial_state = [zeros, zeros]
        hidden, cell_state = (keras.ops.cast(state, dtype) for state in initial_state)
        return lstm_sequence(inputs, hidden, cell_state, kernel, recurrent_kernel, bias)

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


def lstm_sequence(inputs, hidden, cell, kernel, recurrent_kernel, bias):
    """An LSTM over a sequence, as Keras's `LSTM` computes it, with its gradient written out.

    Gates in Keras's order (input, forget, candidate, output): `z = x W + h U + b`,
    `c' = sigmoid(z_f) c + sigmoid(z_i) tanh(z_c)`, `h' = sigmoid(z_o) tanh(c')`.

    Args:
        inputs: `[B, T, D]`.
        hidden, cell: `[B, H]` states before the first step.
        kernel: `[D, 4H]`; recurrent_kernel: `[H, 4H]`; bias: `[4H]`.

    Returns:
        `(outputs [B, T, H], h, c)`: the hidden state after every step and the final states.
    """
    if inputs.shape[1] == 1:
        # One step (decoding): as Keras's cell computes it, no loop and nothing kept.
        z = (tf.matmul(inputs[:, 0], kernel) + tf.matmul(hidden, recurrent_kernel)) + bias
        hidden, cell, _ = _lstm_gates(z, cell)
        return hidden[:, None, :], hidden, cell
    # The input projection of every step at once, time-major for the loop.
    projected = tf.einsum("btd,dk->tbk", inputs, kernel) + bias
    outputs, hidden, cell = _lstm_recurrence(projected, hidden, cell, recurrent_kernel)
    return tf.transpose(outputs, (1, 0, 2)), hidden, cell


def _lstm_gates(z, cell):
    """From the gates' sums `z [B, 4H]` and the cell state: `(h, c, (i, f, g, o))`, the
    gates after their activations."""
    input_gate, forget_gate, candidate, output_gate = tf.split(z, 4, axis=-1)
    input_gate, forget_gate, output_gate = (
        tf.sigmoid(input_gate), tf.sigmoid(forget_gate), tf.sigmoid(output_gate))
    candidate = tf.tanh(candidate)
    cell = forget_gate * cell + input_gate * candidate
    hidden = output_gate * tf.tanh(cell)
    return hidden, cell, (input_gate, forget_gate, candidate, output_gate)


@tf.custom_gradient
def _lstm_recurrence(projected, hidden0, cell0, recurrent_kernel):
    """The time loop over `projected [T, B, 4H]`: `(hidden states [T, B, H], h, c)`, and
    its backward pass (backpropagation through time, one product per step)."""
    steps = tf.shape(projected)[0]
    dtype = projected.dtype

    def forward(step, hidden, cell, hiddens, cells, gates):
        hidden, cell, gate = _lstm_gates(
            projected[step] + tf.matmul(hidden, recurrent_kernel), cell)
        return (step + 1, hidden, cell, hiddens.write(step, hidden), cells.write(step, cell),
                gates.write(step, tf.concat(gate, axis=-1)))

    arrays = [tf.TensorArray(dtype, size=steps) for _ in range(3)]
    _, hidden, cell, hiddens, cells, gates = tf.while_loop(
        lambda step, *_: step < steps, forward, (tf.constant(0), hidden0, cell0, *arrays))
    hiddens, cells, gates = hiddens.stack(), cells.stack(), gates.stack()

    def gradient(d_hiddens, d_hidden, d_cell):
        # Every factor the backward step multiplies by, for all steps at once (a few large
        # operations instead of many small ones in the loop).
        input_gate, forget_gate, candidate, output_gate = tf.split(gates, 4, axis=-1)
        tanh_cells = tf.tanh(cells)
        previous_cells = tf.concat([cell0[None], cells[:-1]], axis=0)
        # d_cell += d_hidden * cell_factor; d_z = [d_cell, d_cell, d_cell, d_hidden] * z_factor.
        cell_factor = output_gate * (1 - tanh_cells * tanh_cells)
        z_factor = tf.concat([candidate * input_gate * (1 - input_gate),
                              previous_cells * forget_gate * (1 - forget_gate),
                              input_gate * (1 - candidate * candidate),
                              tanh_cells * output_gate * (1 - output_gate)], axis=-1)
        transposed_kernel = tf.transpose(recurrent_kernel)

        def backward(step, d_hidden, d_cell, d_projected):
            d_hidden = d_hidden + d_hiddens[step]
            d_cell = d_cell + d_hidden * cell_factor[step]
            d_z = tf.concat([d_cell, d_cell, d_cell, d_hidden], axis=-1) * z_factor[step]
            return (step - 1, tf.matmul(d_z, transposed_kernel), d_cell * forget_gate[step],
                    d_projected.write(step, d_z))

        _, d_hidden0, d_cell0, d_projected = tf.while_loop(
            lambda step, *_: step >= 0, backward,
            (steps - 1, d_hidden, d_cell, tf.TensorArray(dtype, size=steps)))
        d_projected = d_projected.stack()
        width = tf.shape(hidden0)[-1]
        previous_hiddens = tf.concat([hidden0[None], hiddens[:-1]], axis=0)
        d_recurrent_kernel = tf.matmul(tf.reshape(previous_hiddens, (-1, width)),
                                       tf.reshape(d_projected, (-1, 4 * width)),
                                       transpose_a=True)
        return d_projected, d_hidden0, d_cell0, d_recurrent_kernel

    return (hiddens, hidden, cell), gradient
