"""Tiny random checkpoints in Hugging Face's format, written as `save_pretrained` would.

The tensor names, shapes and layouts are Hugging Face's (GPT-2's `Conv1D` kernels
`[in, out]`, BERT's `Linear` weights `[out, in]`; the tied decoder weights left out, as
`save_pretrained` leaves them out), so KerasHub's own loader reads the same folder.
"""

import json

import numpy as np
from safetensors.numpy import save_file

GPT2_TEXT_WORDS = ["the", "king", "queen", "to", "be", "or", "not", "he", "she", "is"]
BERT_WORDS = ["the", "king", "queen", "to", "be", "or", "not", "is", "play", "##s",
              "##ing", "##ed", "good", "night", "sweet", "prince", ",", ".", "!", "?", "'"]


def byte_level_alphabet():
    """GPT-2's map from the 256 byte values to printable characters (`bytes_to_unicode`)."""
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
                 + list(range(ord("®"), ord("ÿ") + 1)))
    characters = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            characters.append(256 + extra)
            extra += 1
    return [chr(code) for _, code in sorted(zip(printable, characters))]


def _merges_for(words):
    """Left-to-right merges that build each word (with its leading `Ġ`) from characters."""
    merges, vocabulary = [], []
    for word in words:
        pieces = list("Ġ" + word)
        while len(pieces) > 1:
            merged = pieces[0] + pieces[1]
            if f"{pieces[0]} {pieces[1]}" not in merges:
                merges.append(f"{pieces[0]} {pieces[1]}")
                vocabulary.append(merged)
            pieces = [merged] + pieces[2:]
    return merges, vocabulary


def _write_json(path, content):
    path.write_text(json.dumps(content, indent=2), encoding="utf-8")


def write_gpt2_folder(path, seed=0, num_layers=2, num_heads=2, hidden_dim=16, max_length=32,
                      layer_norm_epsilon=1e-5, prefix="transformer.", scale=0.2):
    """A `GPT2LMHeadModel`-shaped folder: config.json, model.safetensors, vocab.json,
    merges.txt. Returns its config (a dict)."""
    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    merges, merged = _merges_for(GPT2_TEXT_WORDS)
    tokens = byte_level_alphabet() + merged + ["<|endoftext|>"]
    vocabulary = {token: index for index, token in enumerate(tokens)}
    _write_json(path / "vocab.json", vocabulary)
    (path / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n",
                                     encoding="utf-8")
    config = {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"],
              "vocab_size": len(tokens), "n_positions": max_length, "n_ctx": max_length,
              "n_embd": hidden_dim, "n_layer": num_layers, "n_head": num_heads,
              "n_inner": None, "activation_function": "gelu_new", "resid_pdrop": 0.1,
              "embd_pdrop": 0.1, "attn_pdrop": 0.1, "layer_norm_epsilon": layer_norm_epsilon,
              "bos_token_id": len(tokens) - 1, "eos_token_id": len(tokens) - 1}
    _write_json(path / "config.json", config)

    def normal(*shape):
        return (scale * rng.standard_normal(shape)).astype(np.float32)

    width, inner = hidden_dim, 4 * hidden_dim
    tensors = {"wte.weight": normal(len(tokens), width), "wpe.weight": normal(max_length, width),
               "ln_f.weight": 1 + normal(width), "ln_f.bias": normal(width)}
    for index in range(num_layers):
        name = f"h.{index}."
        for norm in ("ln_1", "ln_2"):
            tensors[f"{name}{norm}.weight"] = 1 + normal(width)
            tensors[f"{name}{norm}.bias"] = normal(width)
        for weight, shape in (("attn.c_attn", (width, 3 * width)),
                              ("attn.c_proj", (width, width)),
                              ("mlp.c_fc", (width, inner)), ("mlp.c_proj", (inner, width))):
            tensors[f"{name}{weight}.weight"] = normal(*shape)
            tensors[f"{name}{weight}.bias"] = normal(shape[1])
    save_file({prefix + name: value for name, value in tensors.items()},
              str(path / "model.safetensors"), metadata={"format": "pt"})
    return config


def bert_vocabulary():
    """A vocab.txt's pieces with the special tokens where BERT's are not at 0-4."""
    pieces = (["[PAD]", "[unused0]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
              + list("abcdefghijklmnopqrstuvwxyz")
              + ["##" + c for c in "abcdefghijklmnopqrstuvwxyz"] + BERT_WORDS)
    return list(dict.fromkeys(pieces))


def write_bert_folder(path, seed=0, num_layers=2, num_heads=2, hidden_dim=16, max_length=32,
                      do_lower_case=True, prefix="bert.", scale=0.2, with_head=True,
                      hidden_act="gelu"):
    """A `BertForMaskedLM`-shaped folder (with the pooler, as BERT's released checkpoints
    have it): config.json, model.safetensors, vocab.txt, tokenizer_config.json."""
    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pieces = bert_vocabulary()
    (path / "vocab.txt").write_text("\n".join(pieces) + "\n", encoding="utf-8")
    _write_json(path / "tokenizer_config.json",
                {"do_lower_case": do_lower_case, "tokenizer_class": "BertTokenizer"})
    vocabulary_size, width, inner = len(pieces), hidden_dim, 2 * hidden_dim
    config = {"model_type": "bert", "architectures": ["BertForMaskedLM"],
              "vocab_size": vocabulary_size, "hidden_size": width,
              "num_hidden_layers": num_layers, "num_attention_heads": num_heads,
              "intermediate_size": inner, "hidden_act": hidden_act, "hidden_dropout_prob": 0.1,
              "attention_probs_dropout_prob": 0.1, "max_position_embeddings": max_length,
              "type_vocab_size": 2, "layer_norm_eps": 1e-12, "pad_token_id": 0,
              "position_embedding_type": "absolute"}
    _write_json(path / "config.json", config)

    def normal(*shape):
        return (scale * rng.standard_normal(shape)).astype(np.float32)

    def norm(name):
        tensors[f"{name}.weight"] = 1 + normal(width)
        tensors[f"{name}.bias"] = normal(width)

    def linear(name, inputs, outputs):
        tensors[f"{name}.weight"] = normal(outputs, inputs)
        tensors[f"{name}.bias"] = normal(outputs)

    tensors = {"embeddings.word_embeddings.weight": normal(vocabulary_size, width),
               "embeddings.position_embeddings.weight": normal(max_length, width),
               "embeddings.token_type_embeddings.weight": normal(2, width)}
    norm("embeddings.LayerNorm")
    for index in range(num_layers):
        name = f"encoder.layer.{index}."
        for part in ("query", "key", "value"):
            linear(f"{name}attention.self.{part}", width, width)
        linear(name + "attention.output.dense", width, width)
        norm(name + "attention.output.LayerNorm")
        linear(name + "intermediate.dense", width, inner)
        linear(name + "output.dense", inner, width)
        norm(name + "output.LayerNorm")
    linear("pooler.dense", width, width)
    tensors = {prefix + name: value for name, value in tensors.items()}
    if with_head:
        linear("cls.predictions.transform.dense", width, width)
        norm("cls.predictions.transform.LayerNorm")
        tensors["cls.predictions.bias"] = normal(vocabulary_size)
    save_file(tensors, str(path / "model.safetensors"), metadata={"format": "pt"})
    return config
