"""NumPy forward passes of GPT-2 and BERT over Hugging Face's tensors: the independent truth
for what KerasHub's loaders do not cover (GPT-2's layer-norm epsilon, BERT's exact GELU and
its masked-LM head)."""

import math

import numpy as np


def layer_norm(x, weight, bias, epsilon):
    mean = x.mean(-1, keepdims=True)
    variance = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(variance + epsilon) * weight + bias


def gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def gelu_exact(x):
    return 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))


def softmax(x):
    x = x - x.max(-1, keepdims=True)
    return np.exp(x) / np.exp(x).sum(-1, keepdims=True)


def attention(q, k, v, num_heads, mask):
    """`[B, T, D]` q, k, v; `mask` `[B, T, T]` boolean (True = may attend)."""
    batch, length, width = q.shape

    def heads(x):
        return x.reshape(batch, length, num_heads, width // num_heads).transpose(0, 2, 1, 3)

    scores = heads(q) @ heads(k).transpose(0, 1, 3, 2) / math.sqrt(width // num_heads)
    scores = np.where(mask[:, None], scores, -1e9)
    out = softmax(scores) @ heads(v)
    return out.transpose(0, 2, 1, 3).reshape(batch, length, width)


def gpt2_logits(tensors, config, ids, prefix="transformer."):
    """`[B, T, V]` logits of GPT-2 (`GPT2LMHeadModel.forward`) for `[B, T]` ids."""
    def w(name):
        return tensors[prefix + name].astype(np.float64)

    epsilon = config["layer_norm_epsilon"]
    batch, length = ids.shape
    x = w("wte.weight")[ids] + w("wpe.weight")[np.arange(length)]
    causal = np.broadcast_to(np.tril(np.ones((length, length), bool)), (batch, length, length))
    width = config["n_embd"]
    for index in range(config["n_layer"]):
        name = f"h.{index}."
        h = layer_norm(x, w(name + "ln_1.weight"), w(name + "ln_1.bias"), epsilon)
        qkv = h @ w(name + "attn.c_attn.weight") + w(name + "attn.c_attn.bias")
        q, k, v = np.split(qkv, [width, 2 * width], axis=-1)
        out = attention(q, k, v, config["n_head"], causal)
        x = x + out @ w(name + "attn.c_proj.weight") + w(name + "attn.c_proj.bias")
        h = layer_norm(x, w(name + "ln_2.weight"), w(name + "ln_2.bias"), epsilon)
        h = gelu_tanh(h @ w(name + "mlp.c_fc.weight") + w(name + "mlp.c_fc.bias"))
        x = x + h @ w(name + "mlp.c_proj.weight") + w(name + "mlp.c_proj.bias")
    x = layer_norm(x, w("ln_f.weight"), w("ln_f.bias"), epsilon)
    return x @ w("wte.weight").T


def bert_masked_lm_logits(tensors, config, ids, padding_mask, prefix="bert."):
    """`[B, T, V]` logits of `BertForMaskedLM` (exact GELU, token type 0) for `[B, T]` ids."""
    def w(name, root=prefix):
        return tensors[root + name].astype(np.float64)

    def linear(x, name, root=prefix):
        return x @ w(name + ".weight", root).T + w(name + ".bias", root)

    def norm(x, name, root=prefix):
        return layer_norm(x, w(name + ".weight", root), w(name + ".bias", root),
                          config["layer_norm_eps"])

    batch, length = ids.shape
    x = (w("embeddings.word_embeddings.weight")[ids]
         + w("embeddings.position_embeddings.weight")[np.arange(length)]
         + w("embeddings.token_type_embeddings.weight")[0])
    x = norm(x, "embeddings.LayerNorm")
    mask = np.broadcast_to(padding_mask[:, None, :], (batch, length, length))
    for index in range(config["num_hidden_layers"]):
        name = f"encoder.layer.{index}."
        q, k, v = (linear(x, f"{name}attention.self.{part}") for part in ("query", "key", "value"))
        out = linear(attention(q, k, v, config["num_attention_heads"], mask),
                     name + "attention.output.dense")
        x = norm(x + out, name + "attention.output.LayerNorm")
        h = gelu_exact(linear(x, name + "intermediate.dense"))
        x = norm(x + linear(h, name + "output.dense"), name + "output.LayerNorm")
    head = "cls.predictions."
    h = norm(gelu_exact(linear(x, head + "transform.dense", "")), head + "transform.LayerNorm", "")
    return h @ w("embeddings.word_embeddings.weight").T + w(head + "bias", "")
