"""GPT-2 (`model_type: gpt2`) from a Hugging Face folder into `tfllm.models.GPT`.

GPT-2 is what tfllm's GPT already is: learned positions, pre-LN blocks with a final layer
normalisation, a head tied to the token embedding, attention and feed-forward biases. Two
details differ from a freshly built GPT and come from the config: the feed-forward
activation (`"gelu_new"`, the tanh approximation: `activation="gelu_approximate"`) and
`layer_norm_epsilon`. GPT-2's `Conv1D` kernels are stored `[in, out]`, as Keras's are;
`c_attn` holds the query, key and value kernels side by side (`[D, 3D]`) and is split, each
part reshaped to the `[D, H, d]` of an `EinsumDense`.
"""

import numpy as np

from tfllm.convert.checkpoint_folder import WeightReader, assign, assign_norm, config_value

#: Hugging Face's activation names and ours.
ACTIVATIONS = {"gelu_new": "gelu_approximate", "gelu_pytorch_tanh": "gelu_approximate",
               "gelu_fast": "gelu_approximate", "gelu": "gelu", "relu": "relu"}
#: Where a `GPT2LMHeadModel` keeps the backbone's weights (a `GPT2Model` has no prefix).
PREFIXES = ("transformer.",)


def gpt2_settings(config):
    """`tfllm.models.GPT` arguments from a GPT-2 `config.json` (a dict).

    Raises:
        ValueError: an entry is missing or of a kind tfllm's GPT does not have (an
            activation, untied embeddings, cross-attention), named.
    """
    source = "config.json"
    activation = config.get("activation_function", "gelu_new")
    if activation not in ACTIVATIONS:
        raise ValueError(f"{source}: activation_function {activation!r} is not converted "
                         f"(known: {', '.join(sorted(ACTIVATIONS))}).")
    if config.get("tie_word_embeddings", True) is False:
        raise ValueError(f"{source}: tie_word_embeddings is false; tfllm's GPT ties its head "
                         "to the token embedding.")
    if config.get("add_cross_attention"):
        raise ValueError(f"{source}: add_cross_attention is set; tfllm's GPT is "
                         "decoder-only.")
    hidden_dim = config_value(config, "n_embd", source)
    num_heads = config_value(config, "n_head", source)
    if hidden_dim % num_heads:
        raise ValueError(f"{source}: n_embd ({hidden_dim}) is not divisible by n_head "
                         f"({num_heads}).")
    return {
        "vocabulary_size": config_value(config, "vocab_size", source),
        "max_length": config_value(config, "n_positions", source),
        "num_layers": config_value(config, "n_layer", source),
        "num_heads": num_heads,
        "hidden_dim": hidden_dim,
        "intermediate_dim": config.get("n_inner") or 4 * hidden_dim,
        "dropout": float(config_value(config, "resid_pdrop", source, 0.1, float)),
        "position_encoding": "learned",
        "activation": ACTIVATIONS[activation],
        "layer_norm_epsilon": float(config_value(config, "layer_norm_epsilon", source,
                                                 1e-5, float)),
    }


def load_gpt2_weights(model, tensors, source="model.safetensors"):
    """Puts GPT-2's weights (`{Hugging Face name: array}`) into a built `GPT` of
    `gpt2_settings`; a shape that disagrees with the model is a ValueError naming the
    weight. Returns the `WeightReader` (its `used` names)."""
    reader = WeightReader(tensors, PREFIXES, source)
    width, heads = model.hidden_dim, model.num_heads
    head_dim, inner = width // heads, model.intermediate_dim
    embeddings = reader.take("wte.weight", (model.vocabulary_size, width))
    assign(model.token_embedding.embeddings, embeddings)
    assign(model.position_embedding.embeddings, reader.take("wpe.weight",
                                                            (model.max_length, width)))
    for index, block in enumerate(model.blocks):
        name = f"h.{index}."
        attention = block.attention
        assign_norm(block.attention_norm, reader, name + "ln_1")
        kernel = reader.take(name + "attn.c_attn.weight", (width, 3 * width))
        bias = reader.take(name + "attn.c_attn.bias", (3 * width,))
        projections = (attention.query_dense, attention.key_dense, attention.value_dense)
        for part, dense in enumerate(projections):
            columns = slice(part * width, (part + 1) * width)
            assign(dense.kernel, kernel[:, columns].reshape(width, heads, head_dim))
            assign(dense.bias, bias[columns].reshape(heads, head_dim))
        assign(attention.output_dense.kernel, reader.take(
            name + "attn.c_proj.weight", (width, width)).reshape(heads, head_dim, width))
        assign(attention.output_dense.bias, reader.take(name + "attn.c_proj.bias", (width,)))
        assign_norm(block.feed_forward_norm, reader, name + "ln_2")
        for dense, weight, shape in ((block.feed_forward.hidden_dense, "mlp.c_fc",
                                      (width, inner)),
                                     (block.feed_forward.output_dense, "mlp.c_proj",
                                      (inner, width))):
            assign(dense.kernel, reader.take(f"{name}{weight}.weight", shape))
            assign(dense.bias, reader.take(f"{name}{weight}.bias", shape[1:]))
    assign_norm(model.final_norm, reader, "ln_f")
    if "lm_head.weight" in tensors and not np.array_equal(tensors["lm_head.weight"],
                                                          embeddings):
        raise ValueError(f"{source}: lm_head.weight differs from wte.weight; tfllm's GPT "
                         "ties its head to the token embedding.")
    return reader


def convert_gpt2(folder):
    """`(GPT, tokenizer, settings)` of a GPT-2 `CheckpointFolder`: the model built and
    loaded, its byte-level BPE tokenizer from `vocab.json` + `merges.txt`."""
    from tfllm.models import GPT

    settings = gpt2_settings(folder.config)
    tokenizer = gpt2_tokenizer(folder)
    tensors = folder.tensors()
    model = GPT(**settings)
    model.build((None, None))
    load_gpt2_weights(model, tensors)
    if tokenizer.vocabulary_size > model.vocabulary_size:
        raise ValueError(f"{folder.path}: the tokenizer has {tokenizer.vocabulary_size} "
                         f"tokens, more than the model's vocab_size {model.vocabulary_size}.")
    return model, tokenizer, settings


def gpt2_tokenizer(folder):
    """The byte-level BPE tokenizer of `vocab.json` + `merges.txt` (ids as GPT-2's)."""
    from tfllm.data.byte_pair import BytePairTokenizer

    vocabulary = folder.require("vocab.json", "GPT-2's tokenizer vocabulary")
    merges = folder.require("merges.txt", "GPT-2's tokenizer merges")
    return BytePairTokenizer.from_files(vocabulary, merges)
