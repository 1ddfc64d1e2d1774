"""BERT (`model_type: bert`) from a Hugging Face folder into `BertEncoder` + `BertMaskedLM`.

The original BERT layout: the sum of token, position and token-type embeddings is
layer-normalised, the blocks are post-LN (`normalization="post"`), the activation is the
exact GELU, and the pooler (dense + tanh over `[CLS]`) is kept in the encoder
(`pooler=True`) for `BertClassifier`. The masked-LM head is BERT's (`cls.predictions`: a
dense transform, a layer normalisation, the tied decoder and a bias). PyTorch's `Linear`
weights are stored `[out, in]`: each is transposed to Keras's `[in, out]`. The WordPiece
tokenizer comes from `vocab.txt` with `tokenizer_config.json`'s `do_lower_case`.
"""

from tfllm.convert.checkpoint_folder import WeightReader, assign, assign_norm, config_value

ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_approximate", "relu": "relu",
               "gelu_pytorch_tanh": "gelu_approximate"}
#: Where a `BertForMaskedLM` / `BertForPreTraining` keeps the encoder (a `BertModel` has none).
PREFIXES = ("bert.",)
HEAD = "cls.predictions."


def bert_settings(config, pooler=True):
    """`tfllm.models.BertEncoder` arguments from a BERT `config.json` (a dict)."""
    source = "config.json"
    activation = config.get("hidden_act", "gelu")
    if activation not in ACTIVATIONS:
        raise ValueError(f"{source}: hidden_act {activation!r} is not converted "
                         f"(known: {', '.join(sorted(ACTIVATIONS))}).")
    if config.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError(f"{source}: position_embedding_type "
                         f"{config['position_embedding_type']!r} is not converted (absolute "
                         "only).")
    hidden_dim = config_value(config, "hidden_size", source)
    num_heads = config_value(config, "num_attention_heads", source)
    if hidden_dim % num_heads:
        raise ValueError(f"{source}: hidden_size ({hidden_dim}) is not divisible by "
                         f"num_attention_heads ({num_heads}).")
    return {
        "vocabulary_size": config_value(config, "vocab_size", source),
        "max_length": config_value(config, "max_position_embeddings", source),
        "num_layers": config_value(config, "num_hidden_layers", source),
        "num_heads": num_heads,
        "hidden_dim": hidden_dim,
        "intermediate_dim": config_value(config, "intermediate_size", source),
        "dropout": float(config_value(config, "hidden_dropout_prob", source, 0.1, float)),
        "num_segments": config_value(config, "type_vocab_size", source, 2),
        "padding_id": int(config.get("pad_token_id") or 0),
        "activation": ACTIVATIONS[activation],
        "layer_norm_epsilon": float(config_value(config, "layer_norm_eps", source, 1e-12,
                                                 float)),
        "position_encoding": "learned",
        "normalization": "post",
        "pooler": pooler,
    }


def _dense(dense, reader, name, shape):
    """A Keras `Dense` of kernel `shape` (`[in, out]`) from a PyTorch `Linear` (`[out, in]`)."""
    assign(dense.kernel, reader.take(f"{name}.weight", shape[::-1]).T)
    assign(dense.bias, reader.take(f"{name}.bias", shape[1:]))


def load_encoder_weights(encoder, reader):
    """BERT's `embeddings.*`, `encoder.layer.*` and `pooler.*` into a built `BertEncoder`."""
    width, heads = encoder.hidden_dim, encoder.num_heads
    head_dim, inner = width // heads, encoder.intermediate_dim
    assign(encoder.token_embedding.embeddings, reader.take(
        "embeddings.word_embeddings.weight", (encoder.vocabulary_size, width)))
    assign(encoder.position_embedding.embeddings, reader.take(
        "embeddings.position_embeddings.weight", (encoder.max_length, width)))
    assign(encoder.segment_embedding.embeddings, reader.take(
        "embeddings.token_type_embeddings.weight", (encoder.num_segments, width)))
    assign_norm(encoder.embedding_norm, reader, "embeddings.LayerNorm")
    for index, block in enumerate(encoder.blocks):
        name = f"encoder.layer.{index}."
        attention = block.attention
        for dense, part in ((attention.query_dense, "query"), (attention.key_dense, "key"),
                            (attention.value_dense, "value")):
            kernel = reader.take(f"{name}attention.self.{part}.weight", (width, width))
            assign(dense.kernel, kernel.T.reshape(width, heads, head_dim))
            assign(dense.bias, reader.take(f"{name}attention.self.{part}.bias",
                                           (width,)).reshape(heads, head_dim))
        kernel = reader.take(name + "attention.output.dense.weight", (width, width))
        assign(attention.output_dense.kernel, kernel.T.reshape(heads, head_dim, width))
        assign(attention.output_dense.bias, reader.take(name + "attention.output.dense.bias",
                                                        (width,)))
        assign_norm(block.attention_norm, reader, name + "attention.output.LayerNorm")
        _dense(block.feed_forward.hidden_dense, reader, name + "intermediate.dense",
               (width, inner))
        _dense(block.feed_forward.output_dense, reader, name + "output.dense", (inner, width))
        assign_norm(block.feed_forward_norm, reader, name + "output.LayerNorm")
    if encoder.pooler:
        _dense(encoder.pooler_dense, reader, "pooler.dense", (width, width))


def load_masked_lm_head(model, reader):
    """`cls.predictions.*` into a built `BertMaskedLM`; False when the checkpoint has no
    masked-LM head (a `BertModel`'s), which then keeps its fresh weights."""
    if not reader.has(HEAD + "transform.dense.weight"):
        return False
    width = model.encoder.hidden_dim
    _dense(model.head_dense, reader, HEAD + "transform.dense", (width, width))
    assign_norm(model.head_norm, reader, HEAD + "transform.LayerNorm")
    assign(model.output_bias, reader.take(HEAD + "bias", (model.vocabulary_size,),
                                          (HEAD + "decoder.bias",)))
    return True


def convert_bert(folder):
    """`(BertMaskedLM, WordPieceTokenizer, settings, notes)` of a BERT `CheckpointFolder`.

    `notes` says what the checkpoint lacked (a masked-LM head, a pooler).
    """
    from tfllm.models import BertEncoder, BertMaskedLM

    tokenizer = bert_tokenizer(folder)
    reader = WeightReader(folder.tensors(), PREFIXES, "model.safetensors")
    settings = bert_settings(folder.config, pooler=reader.has("pooler.dense.weight"))
    model = BertMaskedLM(BertEncoder(**settings, name="encoder"))
    model.build((None, None))
    load_encoder_weights(model.encoder, reader)
    notes = {"pooler": settings["pooler"], "masked_lm_head": load_masked_lm_head(model, reader)}
    if tokenizer.vocabulary_size > model.vocabulary_size:
        raise ValueError(f"{folder.path}: vocab.txt has {tokenizer.vocabulary_size} pieces, "
                         f"more than the model's vocab_size {model.vocabulary_size}.")
    return model, tokenizer, settings, notes


def bert_tokenizer(folder):
    """The `WordPieceTokenizer` of `vocab.txt`, lower-casing as `tokenizer_config.json`'s
    `do_lower_case` says (default: true, as `BertTokenizer`'s)."""
    from tfllm.data.wordpiece import WordPieceTokenizer

    options = folder.tokenizer_config()
    vocabulary = folder.require("vocab.txt", "BERT's WordPiece vocabulary")
    lowercase = bool(options.get("do_lower_case", True))
    return WordPieceTokenizer.from_vocabulary_file(
        vocabulary, lowercase=lowercase, strip_accents=options.get("strip_accents"))
