import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.layer_checks import check_layer
from tfllm.layers import MultiHeadAttention


def _pair(num_heads=4, key_dim=8, **kwargs):
    """Our layer and Keras' layer with the same arguments (not yet built)."""
    ours = MultiHeadAttention(num_heads, key_dim, **kwargs)
    reference = keras.layers.MultiHeadAttention(num_heads, key_dim, **kwargs)
    return ours, reference


class _TwoDimensionalSoftmax(keras.layers.Softmax):
    """Keras's `Softmax` over the last axis, computed on a `[-1, S]` view. TensorFlow's
    oneDNN softmax kernel (on by default on CPUs with AVX-512) refuses inputs of more than
    5 dimensions, so Keras's own attention fails there for 5-D inputs attending over one
    axis; with this softmax it computes the same thing on every CPU."""

    def call(self, inputs, mask=None):
        shape = tf.shape(inputs)
        if mask is not None:
            mask = tf.reshape(tf.broadcast_to(mask, shape), (-1, shape[-1]))
        flat = super().call(tf.reshape(inputs, (-1, shape[-1])), mask=mask)
        return tf.reshape(flat, shape)


def _built_pair(query, value=None, key=None, **kwargs):
    """`_pair`, both built for these inputs, ours holding Keras' weights."""
    value = query if value is None else value
    ours, reference = _pair(**kwargs)
    reference.build(np.shape(query), np.shape(value), None if key is None else np.shape(key))
    if len(reference._softmax.axis) == 1 and len(np.shape(query)) > 4:
        # Past Keras's state tracking: the layer is built, and this holds no weights.
        object.__setattr__(reference, "_softmax", _TwoDimensionalSoftmax(axis=-1))
    reference(query, value, key)
    ours(query, value, key)
    ours.set_weights(reference.get_weights())
    return ours, reference


def _padding_mask(batch_size, length, lengths):
    mask = np.zeros((batch_size, length), bool)
    for row, real in enumerate(lengths):
        mask[row, :real] = True
    return mask


def _compare(ours, reference, query, value, atol=1e-5, **call_kwargs):
    """Both layers' outputs and scores agree (scores: Keras's explicit softmax path)."""
    ours_out, ours_scores = ours(query, value, return_attention_scores=True, **call_kwargs)
    ref_out, ref_scores = reference(query, value, return_attention_scores=True, **call_kwargs)
    np.testing.assert_allclose(ours_out, ref_out, atol=atol)
    np.testing.assert_allclose(ours_scores, ref_scores, atol=atol)
    # Without scores Keras takes its fused path (3-D inputs): the same outputs wherever
    # a query may attend to something in every head (else see our class docstring).
    attends = np.ones(np.shape(query)[:-1], bool)
    if len(np.shape(query)) == 3:
        attends = (np.asarray(ours_scores).sum(-1) > 0).all(axis=1)
    assert attends.mean() > 0.5
    np.testing.assert_allclose(np.asarray(ours(query, value, **call_kwargs))[attends],
                               np.asarray(reference(query, value, **call_kwargs))[attends],
                               atol=atol)


# Every mask shape keras.layers.MultiHeadAttention broadcasts, for B=3, H=4, T=4, S=4:
# with num_heads == T a [T, S] mask put on the wrong axis would still broadcast.
MASK_SHAPES = {"none": None, "[T, S]": (4, 4), "[B, T, S]": (3, 4, 4),
               "[B, 1, T, S]": (3, 1, 4, 4), "[B, H, T, S]": (3, 4, 4, 4),
               "[1, T, S]": (1, 4, 4), "[B, 1, 1, S]": (3, 1, 1, 4)}


@pytest.mark.parametrize("causal", [False, True], ids=["bidirectional", "causal"])
@pytest.mark.parametrize("mask_shape", sorted(MASK_SHAPES))
def test_matches_keras_for_every_mask_shape(rng, mask_shape, causal):
    query = rng.normal(size=(3, 4, 32)).astype("float32")
    ours, reference = _built_pair(query, num_heads=4, key_dim=8)
    kwargs = {"use_causal_mask": causal}
    if MASK_SHAPES[mask_shape] is not None:
        kwargs["attention_mask"] = rng.random(MASK_SHAPES[mask_shape]) > 0.3
    _compare(ours, reference, query, query, **kwargs)


@pytest.mark.parametrize("case", ["rank4_axis1", "rank4_axis2", "rank4_both_axes",
                                  "rank5_axes23", "rank5_axis_minus2"])
def test_matches_keras_for_higher_rank_inputs(rng, case):
    shapes, axes = {
        "rank4_axis1": ((2, 5, 3, 16), 1), "rank4_axis2": ((2, 3, 5, 16), 2),
        "rank4_both_axes": ((2, 3, 4, 16), (1, 2)), "rank5_axes23": ((2, 2, 3, 4, 16), (2, 3)),
        "rank5_axis_minus2": ((2, 2, 3, 4, 16), -2)}[case]
    query = rng.normal(size=shapes).astype("float32")
    ours, reference = _built_pair(query, num_heads=2, key_dim=4, attention_axes=axes)
    _compare(ours, reference, query, query)
    # An attention mask over the attended axes only broadcasts as in Keras.
    _, scores = reference(query, query, return_attention_scores=True)
    mask = rng.random(scores.shape[-2 * len(ours.attention_axes):]) > 0.3
    _compare(ours, reference, query, query, attention_mask=mask)


def test_matches_keras_with_padding_causal_and_explicit_masks_together(rng):
    query = rng.normal(size=(3, 6, 16)).astype("float32")
    value = rng.normal(size=(3, 6, 16)).astype("float32")
    ours, reference = _built_pair(query, value, num_heads=2, key_dim=8)
    mask = rng.random((3, 6, 6)) > 0.2
    value_mask = _padding_mask(3, 6, [6, 4, 2])
    kwargs = {"attention_mask": mask, "use_causal_mask": True, "value_mask": value_mask}
    ours_out, ours_scores = ours(query, value, return_attention_scores=True, **kwargs)
    # Keras reads padding from Keras masks only: give it the same mask merged by hand.
    merged = mask & value_mask[:, None, :] & np.tril(np.ones((6, 6), bool))
    ref_out, ref_scores = reference(query, value, attention_mask=merged,
                                    return_attention_scores=True)
    np.testing.assert_allclose(ours_out, ref_out, atol=1e-5)
    np.testing.assert_allclose(ours_scores, ref_scores, atol=1e-6)


@pytest.mark.parametrize("options", [
    {"use_gate": True}, {"sliding_window": 3}, {"output_shape": (4, 5)},
    {"use_bias": False, "value_dim": 6}, {"sliding_window": 2, "use_gate": True}])
def test_matches_keras_with_its_options(rng, options):
    query = rng.normal(size=(2, 7, 16)).astype("float32")
    ours, reference = _built_pair(query, num_heads=2, key_dim=4, **options)
    assert len(ours.weights) == len(reference.weights)
    for causal in (False, True):
        _compare(ours, reference, query, query, use_causal_mask=causal)


def test_matches_keras_cross_attention_with_other_widths(rng):
    query = rng.normal(size=(2, 5, 12)).astype("float32")
    value = rng.normal(size=(2, 9, 20)).astype("float32")
    key = rng.normal(size=(2, 9, 6)).astype("float32")
    ours, reference = _built_pair(query, value, key, num_heads=3, key_dim=4, value_dim=5,
                                  output_shape=10)
    np.testing.assert_allclose(ours(query, value, key), reference(query, value, key), atol=1e-5)


def test_matches_keras_under_mixed_precision(rng):
    """bfloat16 projections, float32 softmax: as close to Keras's bfloat16 layer as to
    float32, and the probabilities sum to one (Keras's bfloat16 softmax does not)."""
    query = rng.normal(size=(2, 16, 16)).astype("float32")
    ours, reference = _built_pair(query, num_heads=2, key_dim=8, dtype="mixed_bfloat16")
    ours_out, ours_scores = ours(query, query, return_attention_scores=True,
                                 use_causal_mask=True)
    ref_out, _ = reference(query, query, return_attention_scores=True, use_causal_mask=True)
    assert keras.backend.standardize_dtype(ours_out.dtype) == "bfloat16"
    assert keras.backend.standardize_dtype(ours_scores.dtype) == "float32"
    np.testing.assert_allclose(np.asarray(ours_scores).sum(-1), 1.0, atol=1e-5)
    scale = float(np.abs(np.asarray(ref_out, "float32")).max())
    np.testing.assert_allclose(np.asarray(ours_out, "float32") / scale,
                               np.asarray(ref_out, "float32") / scale, atol=0.02)


@pytest.mark.parametrize("direction", ["keras_to_ours", "ours_to_keras"])
def test_weights_files_move_between_the_two_classes(tmp_path, rng, direction):
    query = rng.normal(size=(2, 5, 16)).astype("float32")

    def model(layer_class):
        inputs = keras.Input((5, 16))
        layer = layer_class(num_heads=2, key_dim=8, use_gate=True, name="attention")
        return keras.Model(inputs, layer(inputs, inputs, use_causal_mask=True))

    source, target = model(keras.layers.MultiHeadAttention), model(MultiHeadAttention)
    if direction == "ours_to_keras":
        source, target = target, source
    source.save_weights(tmp_path / "attention.weights.h5")
    target.load_weights(tmp_path / "attention.weights.h5")
    np.testing.assert_allclose(target(query), source(query), atol=1e-6)


def test_symbolic_call_returns_output_and_scores():
    query = keras.Input((5, 16))
    value = keras.Input((7, 16))
    output, scores = MultiHeadAttention(num_heads=3, key_dim=4)(
        query, value, return_attention_scores=True)
    assert tuple(output.shape) == (None, 5, 16)
    assert tuple(scores.shape) == (None, 3, 5, 7)
    model = keras.Model([query, value], [output, scores])
    values = model([np.zeros((2, 5, 16), "float32"), np.zeros((2, 7, 16), "float32")])
    assert tuple(values[1].shape) == (2, 3, 5, 7)


@pytest.mark.parametrize("shape", [(5, 4), (3, 5, 5), (2, 1, 4, 4), (3, 3, 4, 4),
                                   (1, 3, 2, 4, 4)])
def test_a_mask_that_cannot_broadcast_is_named(rng, shape):
    query = rng.normal(size=(3, 4, 16)).astype("float32")
    layer = MultiHeadAttention(num_heads=2, key_dim=8)
    with pytest.raises(ValueError, match="attention_mask"):
        layer(query, query, attention_mask=np.ones(shape, bool))


def test_keras_masks_from_embedding_match_keras(rng):
    """Padding masks carried by tensors (Embedding(mask_zero=True)) act as in Keras."""
    token_ids = np.array([[4, 5, 6, 0, 0], [7, 8, 9, 3, 0]])
    embedding = keras.layers.Embedding(10, 16, mask_zero=True)
    ours, reference = _pair(num_heads=2, key_dim=8)

    def run(layer):
        inputs = keras.Input((None,), dtype="int32")
        embedded = embedding(inputs)
        return keras.Model(inputs, layer(embedded, embedded, use_causal_mask=True))

    ours_model, reference_model = run(ours), run(reference)
    ours.set_weights(reference.get_weights())
    ours_out = np.asarray(ours_model(token_ids))
    ref_out = np.asarray(reference_model(token_ids))
    # Compare real query positions only: for a padded query, whose keys are
    # all masked, Keras 3.15 returns uniform attention on one code path
    # (`ops.dot_product_attention`) and zeros on the other; ours is zeros.
    real = token_ids != 0
    np.testing.assert_allclose(ours_out[real], ref_out[real], atol=1e-5)


def test_padded_keys_never_leak(rng):
    """Changing the values at padded positions never changes any output."""
    layer = MultiHeadAttention(num_heads=2, key_dim=8)
    value = rng.normal(size=(2, 6, 16)).astype("float32")
    query = rng.normal(size=(2, 4, 16)).astype("float32")
    value_mask = _padding_mask(2, 6, [4, 2])
    before = layer(query, value, value_mask=value_mask)
    scrambled = value.copy()
    scrambled[~value_mask] = rng.normal(size=scrambled[~value_mask].shape) * 100
    after = layer(query, scrambled, value_mask=value_mask)
    np.testing.assert_allclose(before, after, atol=1e-5)


def test_causal_mask_hides_the_future(rng):
    layer = MultiHeadAttention(num_heads=2, key_dim=8)
    x = rng.normal(size=(1, 6, 16)).astype("float32")
    before = np.asarray(layer(x, x, use_causal_mask=True))
    changed = x.copy()
    changed[:, 3:] += 5.0
    after = np.asarray(layer(changed, changed, use_causal_mask=True))
    np.testing.assert_allclose(before[:, :3], after[:, :3], atol=1e-5)
    assert not np.allclose(before[:, 3:], after[:, 3:])


def test_fully_masked_query_gets_no_attention(rng):
    layer = MultiHeadAttention(num_heads=2, key_dim=4, use_bias=False)
    x = rng.normal(size=(1, 3, 8)).astype("float32")
    mask = np.array([[[True, True, False], [False, False, False], [True, False, False]]])
    _, scores = layer(x, x, attention_mask=mask, return_attention_scores=True)
    scores = np.asarray(scores)
    np.testing.assert_allclose(scores[0, :, 1], 0.0)
    np.testing.assert_allclose(scores[0, :, 0].sum(-1), 1.0, rtol=1e-6)
    assert np.all(scores[0, :, 0, 2] == 0)


def test_rotary_attention_depends_on_relative_position_only(rng):
    """With rotary embeddings, shifting all positions leaves the output unchanged."""
    layer = MultiHeadAttention(num_heads=2, key_dim=8, rotary_max_wavelength=10000.0)
    x = rng.normal(size=(2, 5, 16)).astype("float32")
    at_zero = layer(x, x, use_causal_mask=True, start_index=0)
    at_forty = layer(x, x, use_causal_mask=True, start_index=40)
    np.testing.assert_allclose(at_zero, at_forty, atol=1e-4)
    plain = MultiHeadAttention(num_heads=2, key_dim=8)
    plain(x, x)
    plain.set_weights(layer.get_weights())
    assert not np.allclose(plain(x, x, use_causal_mask=True), at_zero, atol=1e-3)


def test_layer_contract(rng):
    x = rng.normal(size=(2, 5, 16)).astype("float32")
    check_layer(
        MultiHeadAttention,
        {"num_heads": 2, "key_dim": 8, "dropout": 0.1, "rotary_max_wavelength": 500.0},
        x,
        expected_output_shape=(2, 5, 16),
        expected_num_trainable_weights=8,
        call_kwargs={"value": x, "use_causal_mask": True},
    )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_heads": 0, "key_dim": 8}, "num_heads"),
        ({"num_heads": 2, "key_dim": -1}, "key_dim"),
        ({"num_heads": 2, "key_dim": 8, "dropout": 1.5}, "dropout"),
        ({"num_heads": 2, "key_dim": 7, "rotary_max_wavelength": 100.0}, "key_dim"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MultiHeadAttention(**kwargs)


def test_wrong_rank_input_is_named():
    layer = MultiHeadAttention(num_heads=2, key_dim=4)
    with pytest.raises(ValueError, match="query"):
        layer(np.zeros((2, 8), "float32"), np.zeros((2, 8), "float32"))


@pytest.mark.parametrize("settings, change", [
    ({}, None), ({"rotary_max_wavelength": 10000.0}, None), ({"use_gate": True}, None),
    ({"use_bias": False}, None), ({}, "int8"), ({"rotary_max_wavelength": 10.0}, "lora")],
    ids=["plain", "rotary", "gate", "no_bias", "int8", "lora"])
def test_cached_attention_chunk_by_chunk_equals_causal_attention_at_once(
        rng, settings, change):
    """Prefill 3 positions, then one at a time: the same outputs as the whole sequence.
    A cached step projects the query, key and value as one product (int8 kernels too),
    a LoRA layer through its layers: each against the layer's own uncached path."""
    x = rng.normal(size=(2, 7, 32)).astype("float32")
    layer = MultiHeadAttention(4, 8, **settings)
    layer(x, x)
    if change == "int8":
        for dense in (layer.query_dense, layer.key_dense, layer.value_dense,
                      layer.output_dense):
            dense.quantize("int8")
    elif change == "lora":
        layer.query_dense.enable_lora(2)
        adapter = layer.query_dense.lora_kernel_b
        adapter.assign(rng.normal(size=adapter.shape).astype("float32"))
    whole = np.asarray(layer(x, x, use_causal_mask=True))
    cache = layer.init_cache(2, 9)  # longer than needed: the unused tail must not matter
    outputs = []
    for start, stop in [(0, 3), (3, 4), (4, 5), (5, 6), (6, 7)]:
        chunk = x[:, start:stop]
        output, cache = layer(chunk, chunk, cache=cache, cache_index=start)
        outputs.append(np.asarray(output))
    np.testing.assert_allclose(np.concatenate(outputs, axis=1), whole, atol=1e-5)
    assert tuple(cache.shape) == (2, 2, 4, 9, 8)  # [B, keys/values, H, S, d]
    np.testing.assert_array_equal(np.asarray(cache)[:, :, :, 7:], 0.0)


def test_cache_index_is_required_with_a_cache(rng):
    x = rng.normal(size=(1, 2, 16)).astype("float32")
    layer = MultiHeadAttention(2, 8)
    with pytest.raises(ValueError, match="cache_index"):
        layer(x, x, cache=np.zeros((1, 2, 2, 4, 8), "float32"))


def test_decoding_steps_past_a_cache_block_equal_causal_attention(rng):
    """Steps attend to whole 128-position blocks of a longer cache: same outputs."""
    x = rng.normal(size=(2, 270, 16)).astype("float32")
    layer = MultiHeadAttention(2, 8)
    whole = np.asarray(layer(x, x, use_causal_mask=True))
    cache = layer.init_cache(2, 300)
    output, cache = layer(x[:, :120], x[:, :120], cache=cache, cache_index=0)
    outputs = [np.asarray(output)]
    step = tf.function(lambda token, cache, index: layer(token, token, cache=cache,
                                                         cache_index=index))
    for index in range(120, 270):
        token = x[:, index : index + 1]
        output, cache = step(token, cache, tf.constant(index))
        outputs.append(np.asarray(output))
    np.testing.assert_allclose(np.concatenate(outputs, axis=1), whole, atol=1e-5)
