"""tfllm against a nanoGPT-shaped PyTorch model on the same CPU, in one process.

What it measures
    The same networks in both frameworks, the PyTorch ones written here in nanoGPT's
    shape and started from the tfllm models' weights (copied), so that both compute the
    same function: the first training losses must agree, and greedy decoding should
    pick the same tokens (float rounding can flip a choice near a tie).

    train float32   GPT (4 layers x 256, 4 heads, feed-forward 1024, vocabulary 512,
                    learned positions, tied head), batch 16 x 256 tokens:
                      tfllm GPT [+ XLA]  `model.train_on_batch` after `model.compile(
                                         optimizer=make_optimizer(TrainingConfig()),
                                         jit_compile=...)`, default loss
                      torch eager        pre-LN blocks, fused QKV `nn.Linear`,
                                         `F.scaled_dot_product_attention(is_causal=True)`,
                                         exact (erf) GELU as Keras's "gelu", tied head;
                                         forward, cross-entropy, backward, gradient
                                         clipping, `torch.optim.AdamW`, schedule, `.item()`
                      torch.compile      the same model through `torch.compile`
                                         (optional: `--torch-compile`)
    train bf16      the same under tfllm's `mixed_bfloat16` policy [+ XLA] and under
                    `torch.autocast("cpu", dtype=torch.bfloat16)`; float32 weights and
                    optimizer state in both.
    decode          greedy from random 8-token prompts up to P positions, batch B:
                      tfllm GPT [int8]   `model.generate(prompts, max_new_tokens=P - 8,
                                         temperature=0.0)`: one compiled (XLA) loop with
                                         its key/value cache; "int8" is a copy after
                                         `model.quantize("int8")`
                      torch eager        the prompt in one pass, then one token per
                                         forward under `torch.inference_mode()`, keys and
                                         values concatenated onto a cache, argmax (never
                                         id 0, tfllm's padding id, which it never emits)
    lstm            tfllm's `LSTMLanguageModel` at its "default" preset (2 layers x 256,
                    batch 32 x 128, no XLA as the preset says) against the same network
                    in PyTorch: embedding, per layer LayerNorm -> `nn.LSTM` -> residual,
                    final LayerNorm, tied head.
    bert            tfllm's `BertMaskedLM` (the "default" preset's 4 layers x 128, with
                    learned positions instead of its rotary ones; batch 32 x 128, 32
                    predicted positions per sequence, vocabulary 4096) [+ XLA], against a
                    pre-LN PyTorch encoder with the same head (dense + GELU, LayerNorm,
                    tied embedding + bias) on the predicted positions only;
                    `--skip-bert` leaves it out.
    matmul peak     chains of square matmuls in float32 and bfloat16, in TensorFlow and
                    in PyTorch: the machine's practical peak for the MFU column.

    Optimisers are the same: tfllm's `make_optimizer` (AdamW, learning-rate warm-up and
    cosine decay, global-norm clipping, no decay on biases and normalisations), and
    in PyTorch `torch.optim.AdamW` (default, non-fused implementation) with its
    betas, epsilon and weight decay read from that Keras optimizer, decay on the
    matrices only (nanoGPT's rule, the same weights here), the Keras schedule's
    values through `LambdaLR`, and `clip_grad_norm_`. Keras adds epsilon before
    the bias correction of the second moment, PyTorch after: the same work.
    Both frameworks use every core (`torch.set_num_threads(os.cpu_count())`).

    Every contender is built and warmed up first (tracing, XLA compilation, oneDNN's
    first calls). Then `--rounds` rounds run a burst of every contender (`--steps`
    training steps, one decode call, a few matmul chains) in an order that rotates
    from round to round, so that slow and fast minutes of a shared machine fall on all
    contenders alike.

How to run
    pip install -e '.[bench]'                                # PyTorch 2.13.0 (CPU)
    PYTHONPATH=. python benchmarks/vs_pytorch.py             # everything: ~15-20 min
    PYTHONPATH=. python benchmarks/vs_pytorch.py --quick     # sanity run: ~5 min
    make benchmark-pytorch                                   # the default run, own venv

    Times are estimates for 2 quiet cores: about a third of each goes to warm-up (four
    XLA compilations of the GPT's training step, XLA decoding loops per shape). `--quick`
    trains the GPT at batch 4, not 16, and takes 2 rounds of 1 step.
    PYTHONPATH=. python benchmarks/vs_pytorch.py --only decode --json runs/vs_pytorch.json

    `--only` (repeatable) picks sections: train, decode, lstm, bert. Progress goes to
    stderr, the tables to stdout.

How to read the numbers
    step ms / call ms   median wall time of one training step / one decode call.
    IQR %               spread: (p75 - p25) / median.
    tokens/s            training: batch x sequence / step; decoding: new tokens summed
                        over the batch / call (prompt reading included).
    ms/step             decode call / new tokens; "512 / 128" is that at 512
                        positions over that at 128 (1.0: a step costs the same however
                        long the sequence; attention over a longer cache costs more).
    FLOP/token, % peak  nanoGPT's `estimate_mfu`: 6 N + 12 L T D per token (N without
                        the position table), as GFLOP/s over the faster of the two
                        frameworks' matmul peaks in the step's compute dtype.
    RSS +MB             how much the process's resident memory grew, at its peak, while
                        the contender was built and warmed up (sampled every 2 ms).
                        Memory freed by earlier contenders and reused is not counted,
                        so compare it with care; neither framework reports CPU
                        allocator statistics (TensorFlow: "not available for CPU:0").
                        The process's high-water mark (`getrusage`) closes the output.
    ratio               tfllm tokens/s over PyTorch tokens/s in the same group: above 1
                        tfllm is faster; the range is the lowest and highest ratio of
                        the rounds' medians.

    The CPU's model and its int8 / bf16 units are printed first. Without bfloat16 units
    (avx512_bf16, amx_bf16) bfloat16 is converted to float32 around each operation, so
    the bf16 rows are marked and float32 is the target there; PyTorch's bfloat16 matmul
    then runs a slow reference kernel, and those rows take `--bf16-steps` steps per
    burst only.
"""

import argparse
import gc
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from timing import (  # noqa: E402
    BFLOAT16_FLAGS,
    NOTABLE_FLAGS,
    ResidentPeak,
    add_gpt_shape_arguments,
    check_at_least_one,
    cpu_flags,
    interquartile_fraction,
    log,
    median,
    parse_cases,
    peak_resident_bytes,
    print_table,
    quiet_native_stderr,
    ratio_summary,
    repository_on_path,
)

# PyTorch first: importing it after TensorFlow segfaults on this machine.
try:
    import torch
    import torch.nn.functional as F
    from torch import nn
except ImportError:
    raise SystemExit("vs_pytorch.py needs PyTorch: install the bench extra: "
                     "pip install -e '.[bench]'") from None

with quiet_native_stderr():
    import numpy as np
    import tensorflow as tf
    import keras

    tf.constant(0.0).numpy()  # creates the devices, where the CUDA probe logs once more

repository_on_path(__file__)
from tfllm.models import GPT  # noqa: E402
from tfllm.models import BertEncoder, BertMaskedLM, LSTMLanguageModel  # noqa: E402
from tfllm.presets import preset  # noqa: E402
from tfllm.training.config import TrainingConfig, make_optimizer, precision_scope  # noqa: E402

from tensorflow_measures import (  # noqa: E402
    MATMUL_CHAIN,
    flops_per_token,
    int8_copy,
    matmul_peak_kernel,
    orthogonal_chain_operands,
)

SECTIONS = ("train", "decode", "lstm", "bert")
DEFAULT_CASES = "1x128,1x512,8x128"
QUICK_BATCH_SIZE = 4  # a GPT training step at batch 16 takes seconds on 2 cores


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_gpt_shape_arguments(parser.add_argument_group(
        "GPT shape and training batch (same for both frameworks)"))
    work = parser.add_argument_group("what runs")
    work.add_argument("--only", action="append", choices=SECTIONS,
                      help="run only this section (repeatable); default: all")
    work.add_argument("--skip-bert", action="store_true", help="leave out the BERT section")
    work.add_argument("--cases", type=parse_cases, default=DEFAULT_CASES,
                      help="decoding cases BATCHxPOSITIONS")
    work.add_argument("--prompt-length", type=int, default=8, help="prompt tokens per row")
    work.add_argument("--torch-compile", action="store_true",
                      help="also train a `torch.compile`d model (optional contender)")
    run = parser.add_argument_group("measurement")
    run.add_argument("--quick", action="store_true",
                     help=f"sanity run: 2 rounds of 1 step, 1 warm-up step, GPT training batch "
                          f"{QUICK_BATCH_SIZE} unless --batch-size is given")
    for flag, default, explanation in (
            ("--rounds", 6, "interleaved rounds"),
            ("--steps", 3, "training steps per burst"),
            ("--bf16-steps", 1, "steps per burst of the bf16 rows on a CPU without bf16 units"),
            ("--warmup", 2, "untimed steps (decode calls) per contender before round 1"),
            ("--matmul-size", 1024,
             "side of the square peak matmuls (bf16 without bf16 units: a quarter)"),
            ("--torch-threads", os.cpu_count(), "torch.set_num_threads (TensorFlow: every core)"),
            ("--seed", 1234, "weights, batches and prompts")):
        run.add_argument(flag, type=int, default=default, help=explanation)
    run.add_argument("--json", metavar="PATH", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.steps, args.warmup = 2, 1, 1
        if args.batch_size == parser.get_default("batch_size"):
            args.batch_size = QUICK_BATCH_SIZE
    check_at_least_one(parser, args, (
        "num_layers", "num_heads", "hidden_dim", "intermediate_dim", "sequence_length",
        "batch_size", "vocabulary_size", "rounds", "steps", "bf16_steps", "matmul_size",
        "prompt_length", "torch_threads"))
    if args.warmup < 1:
        parser.error("--warmup must be at least 1: the first step traces and compiles")
    if args.hidden_dim % args.num_heads:
        parser.error("--hidden-dim must be divisible by --num-heads")
    for batch, positions in args.cases:
        if positions <= args.prompt_length:
            parser.error(f"case {batch}x{positions}: positions must exceed the prompt")
    args.sections = [s for s in SECTIONS if s in (args.only or SECTIONS)
                     and not (s == "bert" and args.skip_bert and not args.only)]
    return args


# --- the PyTorch contenders (nanoGPT's shape) --------------------------------------------

class TorchBlock(nn.Module):
    """Pre-LN Transformer block: x + attention(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, width, heads, intermediate, eps, causal):
        super().__init__()
        self.heads, self.causal = heads, causal
        self.attention_norm = nn.LayerNorm(width, eps=eps)
        self.qkv = nn.Linear(width, 3 * width)  # fused query, key and value projections
        self.attention_output = nn.Linear(width, width)
        self.feed_forward_norm = nn.LayerNorm(width, eps=eps)
        self.hidden = nn.Linear(width, intermediate)
        self.output = nn.Linear(intermediate, width)

    def forward(self, x, cache=None):
        B, T, D = x.shape
        q, k, v = self.qkv(self.attention_norm(x)).view(B, T, 3, self.heads, -1).unbind(2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # [B, H, T, d]
        if cache is not None:
            k, v = torch.cat([cache[0], k], 2), torch.cat([cache[1], v], 2)
        # One new query attends to the whole cache; a prompt (T > 1) attends causally.
        y = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal and T > 1)
        x = x + self.attention_output(y.transpose(1, 2).reshape(B, T, D))
        # Keras's "gelu" is the exact (erf) one, as is nn.GELU's default.
        x = x + self.output(F.gelu(self.hidden(self.feed_forward_norm(x))))
        return x, (k, v)


class TorchTransformer(nn.Module):
    """Token and learned position embeddings, pre-LN blocks, a final LayerNorm."""

    def __init__(self, vocabulary, positions, layers, heads, width, intermediate, causal,
                 eps=1e-5):
        super().__init__()
        self.token_embedding = nn.Embedding(vocabulary, width)
        self.position_embedding = nn.Embedding(positions, width)
        self.blocks = nn.ModuleList(TorchBlock(width, heads, intermediate, eps, causal)
                                    for _ in range(layers))
        self.final_norm = nn.LayerNorm(width, eps=eps)

    def forward(self, ids, caches=None, start=0):
        positions = torch.arange(start, start + ids.shape[1])
        x = self.token_embedding(ids) + self.position_embedding(positions)
        new_caches = []
        for index, block in enumerate(self.blocks):
            x, cache = block(x, None if caches is None else caches[index])
            new_caches.append(cache)
        return self.final_norm(x), new_caches

    def logits(self, hidden):
        return hidden @ self.token_embedding.weight.T  # tied head, as GPT-2


class TorchMaskedLM(nn.Module):
    """A bidirectional `TorchTransformer` with BERT's head on the predicted positions."""

    def __init__(self, encoder, width, eps=1e-5):
        super().__init__()
        self.encoder = encoder
        self.head_dense = nn.Linear(width, width)
        self.head_norm = nn.LayerNorm(width, eps=eps)
        self.output_bias = nn.Parameter(torch.zeros(encoder.token_embedding.num_embeddings))

    def forward(self, ids, mask_positions):
        hidden, _ = self.encoder(ids)
        hidden = torch.take_along_dim(hidden, mask_positions[:, :, None], dim=1)
        hidden = self.head_norm(F.gelu(self.head_dense(hidden)))
        return self.encoder.logits(hidden) + self.output_bias


class TorchLSTMLanguageModel(nn.Module):
    """tfllm's LSTM language model: per layer LayerNorm -> LSTM -> residual; tied head."""

    def __init__(self, vocabulary, layers, width, eps=1e-5):
        super().__init__()
        self.token_embedding = nn.Embedding(vocabulary, width)
        self.norms = nn.ModuleList(nn.LayerNorm(width, eps=eps) for _ in range(layers))
        self.lstms = nn.ModuleList(nn.LSTM(width, width, batch_first=True)
                                   for _ in range(layers))
        self.final_norm = nn.LayerNorm(width, eps=eps)

    def forward(self, ids):
        x = self.token_embedding(ids)
        for norm, lstm in zip(self.norms, self.lstms):
            x = x + lstm(norm(x))[0]
        return self.final_norm(x) @ self.token_embedding.weight.T


@torch.inference_mode()
def torch_greedy(model, prompt_ids, new_tokens):
    """Greedy decoding with a concatenated key/value cache: [B, prompt + new] ids."""
    hidden, caches = model(prompt_ids)
    tokens = [prompt_ids]
    position = prompt_ids.shape[1]
    for step in range(new_tokens):
        logits = model.logits(hidden[:, -1])
        logits[:, 0] = -math.inf  # id 0 is tfllm's padding, which it never generates
        token = logits.argmax(-1, keepdim=True)
        tokens.append(token)
        if step + 1 < new_tokens:
            hidden, caches = model(token, caches, start=position)
            position += 1
    return torch.cat(tokens, 1).numpy()


# --- the tfllm models' weights into the PyTorch ones --------------------------------------

def _load(parameter, value):
    with torch.no_grad():
        parameter.copy_(torch.from_numpy(np.ascontiguousarray(value, np.float32)))


def _load_norm(norm, keras_norm):
    _load(norm.weight, keras_norm.gamma.numpy())
    _load(norm.bias, keras_norm.beta.numpy())


def copy_transformer(backbone, torch_model):
    """A tfllm `TransformerBackbone`'s weights into a `TorchTransformer` of its shape."""
    width = backbone.hidden_dim
    _load(torch_model.token_embedding.weight, backbone.token_embedding.embeddings.numpy())
    _load(torch_model.position_embedding.weight, backbone.position_embedding.embeddings.numpy())
    for block, twin in zip(backbone.blocks, torch_model.blocks, strict=True):
        attention = block.attention
        projections = [attention._query_dense, attention._key_dense, attention._value_dense]
        _load(twin.qkv.weight, np.concatenate(
            [p.kernel.numpy().reshape(width, width) for p in projections], axis=1).T)
        _load(twin.qkv.bias, np.concatenate([p.bias.numpy().reshape(width)
                                             for p in projections]))
        _load(twin.attention_output.weight,
              attention._output_dense.kernel.numpy().reshape(width, width).T)
        _load(twin.attention_output.bias, attention._output_dense.bias.numpy())
        _load(twin.hidden.weight, block.feed_forward.hidden_dense.kernel.numpy().T)
        _load(twin.hidden.bias, block.feed_forward.hidden_dense.bias.numpy())
        _load(twin.output.weight, block.feed_forward.output_dense.kernel.numpy().T)
        _load(twin.output.bias, block.feed_forward.output_dense.bias.numpy())
        _load_norm(twin.attention_norm, block.attention_norm)
        _load_norm(twin.feed_forward_norm, block.feed_forward_norm)
    _load_norm(torch_model.final_norm, backbone.final_norm)
    return torch_model


def copy_masked_lm(masked_lm, torch_model):
    copy_transformer(masked_lm.encoder, torch_model.encoder)
    _load(torch_model.head_dense.weight, masked_lm.head_dense.kernel.numpy().T)
    _load(torch_model.head_dense.bias, masked_lm.head_dense.bias.numpy())
    _load_norm(torch_model.head_norm, masked_lm.head_norm)
    _load(torch_model.output_bias, masked_lm.output_bias.numpy())
    return torch_model


def copy_lstm(model, torch_model):
    """Keras's LSTM gates (i, f, c, o) are PyTorch's (i, f, g, o); one bias, not two."""
    _load(torch_model.token_embedding.weight, model.token_embedding.embeddings.numpy())
    for layer, norm, lstm, twin_norm in zip(model.lstm.lstm_layers, model.lstm.norms,
                                            torch_model.lstms, torch_model.norms, strict=True):
        _load(lstm.weight_ih_l0, layer.cell.kernel.numpy().T)
        _load(lstm.weight_hh_l0, layer.cell.recurrent_kernel.numpy().T)
        _load(lstm.bias_ih_l0, layer.cell.bias.numpy())
        _load(lstm.bias_hh_l0, np.zeros_like(layer.cell.bias.numpy()))
        _load_norm(twin_norm, norm)
    _load_norm(torch_model.final_norm, model.final_norm)
    return torch_model


# --- training steps -----------------------------------------------------------------------

def keras_training_step(model, config, x, y, xla, sample_weight=None):
    """Compiles `model` with tfllm's optimizer for `config`; a step returns the loss."""
    model.compile(optimizer=make_optimizer(config), jit_compile=xla)
    if bool(model.jit_compile) != xla:
        log(f"warning: asked for jit_compile={xla}, Keras resolved it to {model.jit_compile}")

    def step():
        return float(model.train_on_batch(x, y, sample_weight=sample_weight))

    return step


def torch_training_step(model, config, keras_optimizer, inputs, labels, bf16=False,
                        compiled=False):
    """PyTorch's step with the Keras optimizer's settings; returns the loss."""
    decay = [p for p in model.parameters() if p.dim() >= 2]  # kernels and embedding tables
    no_decay = [p for p in model.parameters() if p.dim() < 2]  # biases and norms
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": float(keras_optimizer.weight_decay)},
         {"params": no_decay, "weight_decay": 0.0}],
        lr=config.peak_learning_rate,
        betas=(float(keras_optimizer.beta_1), float(keras_optimizer.beta_2)),
        eps=float(keras_optimizer.epsilon))
    # The Keras schedule's own values, computed once, as factors of the peak rate.
    # (`learning_rate` gives the current value; `_learning_rate` is the schedule.)
    factors = np.asarray(keras_optimizer._learning_rate(np.arange(config.steps))) \
        / config.peak_learning_rate
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: float(factors[min(step, len(factors) - 1)]))
    clip = keras_optimizer.global_clipnorm
    forward = torch.compile(model) if compiled else model
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)

    def step():
        with autocast:
            logits = forward(*inputs)
        loss = F.cross_entropy(logits.float().flatten(0, -2), labels.flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip:
            nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        schedule.step()
        return loss.item()

    return step


class GPTLogits(nn.Module):
    """`TorchTransformer` → logits, the training forward."""

    def __init__(self, transformer):
        super().__init__()
        self.transformer = transformer

    def forward(self, ids):
        return self.transformer.logits(self.transformer(ids)[0])


# --- contenders, bursts, rounds -----------------------------------------------------------

class Contender:
    """One thing timed: a training step, a decode call or a matmul chain."""

    def __init__(self, name, library, group, kind, build, work=1, burst=1, **facts):
        self.name, self.library, self.group, self.kind = name, library, group, kind
        self.build, self.work, self.burst = build, work, burst
        self.facts = facts
        self.times, self.round_medians, self.outputs = [], [], []
        self.rss_growth = None

    def prepare(self, warmup):
        """Builds and warms up, sampling the resident memory meanwhile."""
        gc.collect()
        with ResidentPeak() as memory:
            start = time.perf_counter()
            self.run = self.build()
            for _ in range(warmup):
                self.outputs.append(self.run())
        self.rss_growth = memory.growth
        self.warmup_seconds = time.perf_counter() - start
        log(f"warm-up  {self.label:<44} {self.warmup_seconds:6.1f} s, "
            f"RSS +{memory.growth / 2**20:.0f} MB")

    @property
    def label(self):
        return f"{self.group}: {self.name}"

    def timed_burst(self):
        times = []
        for _ in range(self.burst):
            start = time.perf_counter()
            output = self.run()
            times.append(time.perf_counter() - start)
            self.outputs.append(output)
        self.times.extend(times)
        self.round_medians.append(median(times))
        return times


def run_rounds(contenders, rounds):
    for round_index in range(rounds):
        shift = round_index % len(contenders)
        for contender in contenders[shift:] + contenders[:shift]:
            times = contender.timed_burst()
            log(f"round {round_index + 1}/{rounds}  {contender.label:<44} "
                f"{median(times) * 1e3:9.1f} ms")


# --- the sections -------------------------------------------------------------------------

def gpt_settings(args, max_length):
    return dict(vocabulary_size=args.vocabulary_size, max_length=max_length,
                num_layers=args.num_layers, num_heads=args.num_heads,
                hidden_dim=args.hidden_dim, intermediate_dim=args.intermediate_dim,
                dropout=0.0, position_encoding="learned")


def new_gpt(args, max_length, precision="float32"):
    keras.utils.set_random_seed(args.seed)  # every GPT of a length gets the same weights
    with precision_scope(precision):
        model = GPT(**gpt_settings(args, max_length))
    model.build((None, None))
    return model


def torch_gpt(args, max_length, tfllm_model):
    model = TorchTransformer(args.vocabulary_size, max_length, args.num_layers, args.num_heads,
                             args.hidden_dim, args.intermediate_dim, causal=True)
    return copy_transformer(tfllm_model, model)


def training_contenders(args, bf16_units):
    T, B = args.sequence_length, args.batch_size
    tokens = np.random.default_rng(args.seed).integers(0, args.vocabulary_size, (B, T + 1))
    x, y = tf.constant(tokens[:, :-1], tf.int32), tf.constant(tokens[:, 1:], tf.int32)
    tx, ty = torch.from_numpy(tokens[:, :-1]).long(), torch.from_numpy(tokens[:, 1:]).long()
    config = TrainingConfig(sequence_length=T, batch_size=B)
    reference = new_gpt(args, T)
    params, matmul_params, flop = flops_per_token(reference, args)
    facts = dict(tokens=B * T, params=params, matmul_params=matmul_params, flops_per_token=flop)
    bf16_burst = args.steps if bf16_units else min(args.steps, args.bf16_steps)

    def tfllm(precision, xla):
        return lambda: keras_training_step(new_gpt(args, T, precision), config, x, y, xla)

    def torch_step(bf16=False, compiled=False):
        def build():
            model = GPTLogits(torch_gpt(args, T, new_gpt(args, T)))
            return torch_training_step(model, config, make_optimizer(config), (tx,), ty,
                                       bf16=bf16, compiled=compiled)
        return build

    contenders = []
    for group, precision, burst in (("train float32", "float32", args.steps),
                                    ("train bf16", "mixed_bfloat16", bf16_burst)):
        dtype = "float32" if precision == "float32" else "bfloat16"
        for xla in (False, True):
            contenders.append(Contender(
                "tfllm GPT" + (" + XLA" if xla else ""), "tfllm", group, "train",
                tfllm(precision, xla), burst=burst, dtype=dtype, xla=xla, **facts))
        bf16 = precision != "float32"
        contenders.append(Contender(
            "torch autocast" if bf16 else "torch eager", "torch", group, "train",
            torch_step(bf16=bf16), burst=burst, dtype=dtype, xla=False, **facts))
        if args.torch_compile and not bf16:
            contenders.append(Contender(
                "torch.compile (optional)", "torch", group, "train",
                torch_step(compiled=True), burst=burst, dtype=dtype, xla=False, **facts))
    return contenders


def decoding_contenders(args):
    max_length = max(p for _, p in args.cases)
    model = new_gpt(args, max_length)
    models = {"tfllm GPT": model, "tfllm GPT int8": None}
    twin = torch_gpt(args, max_length, model).eval()
    contenders = []
    for batch_size, positions in args.cases:
        group = f"decode B={batch_size} to {positions}"
        new_tokens = positions - args.prompt_length
        prompts = np.random.default_rng([args.seed, batch_size, positions]).integers(
            1, args.vocabulary_size, (batch_size, args.prompt_length)).astype(np.int32)
        facts = dict(batch_size=batch_size, positions=positions, new_tokens=new_tokens,
                     prompts=prompts)

        def tfllm(name, prompts=prompts, new_tokens=new_tokens):
            def build():
                if models[name] is None:  # quantized once, when first needed
                    models[name] = int8_copy(model)
                chosen = models[name]
                return lambda: np.asarray(chosen.generate(prompts, max_new_tokens=new_tokens,
                                                          temperature=0.0))
            return build

        def torch_decode(prompts=prompts, new_tokens=new_tokens):
            ids = torch.from_numpy(prompts).long()
            return lambda: torch_greedy(twin, ids, new_tokens)

        for name in models:
            contenders.append(Contender(name, "tfllm", group, "decode", tfllm(name), **facts))
        contenders.append(Contender("torch eager", "torch", group, "decode", torch_decode,
                                    **facts))
    return contenders


def lstm_contenders(args):
    settings = preset("lstm", "default")
    config = TrainingConfig(**settings["training"])
    T, B, V = config.sequence_length, config.batch_size, args.vocabulary_size
    layers, width = settings["model"]["num_layers"], settings["model"]["hidden_dim"]
    tokens = np.random.default_rng(args.seed + 1).integers(0, V, (B, T + 1))
    x, y = tf.constant(tokens[:, :-1], tf.int32), tf.constant(tokens[:, 1:], tf.int32)

    def new_model():
        keras.utils.set_random_seed(args.seed)
        model = LSTMLanguageModel(V, **settings["model"])
        model.build()
        return model

    def torch_step():
        model = copy_lstm(new_model(), TorchLSTMLanguageModel(V, layers, width))
        return torch_training_step(model, config, make_optimizer(config),
                                   (torch.from_numpy(tokens[:, :-1]).long(),),
                                   torch.from_numpy(tokens[:, 1:]).long())

    facts = dict(tokens=B * T, shape=f"{layers} x {width}, B={B}, T={T}, V={V}")
    # The preset times XLA against TensorFlow's kernels (jit_compile "auto"): both run here.
    return [
        *(Contender("tfllm LSTM" + (" + XLA" if xla else ""), "tfllm", "lstm", "train",
                    lambda xla=xla: keras_training_step(new_model(), config, x, y, xla),
                    burst=args.steps, **facts) for xla in (False, True)),
        Contender("torch eager", "torch", "lstm", "train", torch_step, burst=args.steps,
                  **facts),
    ]


def bert_contenders(args):
    settings = preset("bert", "default")
    config = TrainingConfig(**settings["training"])
    T, B = config.sequence_length, config.batch_size
    V = settings["tokenizer"]["vocabulary_size"]
    P = 32  # predicted positions per sequence
    model_settings = dict(settings["model"], position_encoding="learned")  # see the docstring
    rng = np.random.default_rng(args.seed + 2)
    token_ids = rng.integers(5, V, (B, T)).astype(np.int32)  # no padding id (0)
    positions = np.sort(rng.random((B, T)).argsort(axis=1)[:, :P], axis=1).astype(np.int32)
    labels = np.take_along_axis(token_ids, positions, axis=1)
    weights = np.ones((B, P), np.float32)

    def new_model():
        keras.utils.set_random_seed(args.seed)
        model = BertMaskedLM(BertEncoder(vocabulary_size=V, **model_settings))
        model.build((None, None))
        return model

    def tfllm(xla):
        return lambda: keras_training_step(
            new_model(), config, {"token_ids": token_ids, "mask_positions": positions},
            labels, xla, sample_weight=weights)

    def torch_step():
        s = model_settings
        encoder = TorchTransformer(V, s["max_length"], s["num_layers"], s["num_heads"],
                                   s["hidden_dim"], s.get("intermediate_dim") or
                                   4 * s["hidden_dim"], causal=False)
        model = copy_masked_lm(new_model(), TorchMaskedLM(encoder, s["hidden_dim"]))
        inputs = (torch.from_numpy(token_ids).long(), torch.from_numpy(positions).long())
        return torch_training_step(model, config, make_optimizer(config), inputs,
                                   torch.from_numpy(labels).long())

    facts = dict(tokens=B * T, shape=f"{model_settings['num_layers']} x "
                 f"{model_settings['hidden_dim']}, B={B}, T={T}, V={V}, {P} predictions")
    return [Contender("tfllm BERT" + (" + XLA" if xla else ""), "tfllm", "bert", "train",
                      tfllm(xla), burst=args.steps, **facts) for xla in (False, True)] + [
        Contender("torch eager", "torch", "bert", "train", torch_step, burst=args.steps,
                  **facts)]


def torch_matmul_kernel(size, seed, dtype):
    a, q = orthogonal_chain_operands(size, seed)
    a, b = torch.tensor(a, dtype=dtype), torch.tensor(q, dtype=dtype)

    def run():
        start = time.perf_counter()
        with torch.inference_mode():
            x = a
            for _ in range(MATMUL_CHAIN):
                x = x @ b
            x.float().sum().item()
        return time.perf_counter() - start

    return run, 2.0 * size**3 * MATMUL_CHAIN


def matmul_contenders(args, bf16_units):
    contenders = []
    for dtype in ("float32", "bfloat16"):
        # Without bf16 units PyTorch's bf16 matmul runs ~0.3 GFLOP/s here: a smaller chain.
        size = args.matmul_size if dtype == "float32" or bf16_units else args.matmul_size // 4
        for library in ("tensorflow", "torch"):
            if library == "tensorflow":
                run, flops = matmul_peak_kernel(size, args.seed, getattr(tf, dtype))
            else:
                run, flops = torch_matmul_kernel(size, args.seed, getattr(torch, dtype))
            contenders.append(Contender(
                f"{library} {dtype} {size}x{size}", library, "matmul peak", "matmul",
                lambda run=run: run, burst=max(args.steps, 2), dtype=dtype, flops=flops))
    return contenders


# --- checks, tables, JSON -----------------------------------------------------------------

def check_decoding(contenders, args):
    """Every decode returned [B, positions] ids that start with the prompt; agreement."""
    notes = {}
    by_group = {}
    for c in contenders:
        by_group.setdefault(c.group, []).append(c)
    for group, members in by_group.items():
        reference = members[0].outputs[-1]
        for c in members:
            out, prompts = c.outputs[-1], c.facts["prompts"]
            expected = (c.facts["batch_size"], c.facts["positions"])
            if out.shape != expected:
                raise SystemExit(f"{c.label}: output shape {out.shape}, expected {expected}")
            if not np.array_equal(out[:, :args.prompt_length], prompts):
                raise SystemExit(f"{c.label}: the prompt was not kept")
            if (out[:, args.prompt_length:] == 0).any():
                log(f"warning: {c.label}: padding (id 0) among the new tokens")
            new = out[:, args.prompt_length:] == reference[:, args.prompt_length:]
            agreement = float(new.mean())
            notes[c.label] = agreement
    return notes


def group_ratios(contenders):
    """tfllm over PyTorch in every group; best against best where there are several."""
    ratios = []
    by_group = {}
    for c in contenders:
        by_group.setdefault(c.group, []).append(c)
    for group, members in by_group.items():
        if group == "matmul peak":
            continue
        ours = [c for c in members if c.library == "tfllm"]
        theirs = [c for c in members if c.library == "torch"]
        for a in ours:
            for b in theirs:
                ratios.append(dict(ratio_summary(a, b), group=group))
        if len(ours) > 1 or len(theirs) > 1:
            best = lambda cs: min(cs, key=lambda c: median(c.times))  # noqa: E731
            ratios.append(dict(ratio_summary(best(ours), best(theirs)), group=group,
                               best_vs_best=True))
    return ratios


def main(argv=None):
    args = parse_args(argv)
    wall_start = time.perf_counter()
    torch.set_num_threads(args.torch_threads)
    cpu_model, flags = cpu_flags()
    bf16_units = any(flag in flags for flag in BFLOAT16_FLAGS)
    present = [flag for flag in NOTABLE_FLAGS if flag in flags]
    print(f"CPU: {cpu_model}, {os.cpu_count()} cores; flags of note: "
          f"{', '.join(present) or 'none'}; missing: "
          f"{', '.join(f for f in NOTABLE_FLAGS if f not in flags) or 'none'}")
    if not bf16_units:
        print("No bfloat16 units (avx512_bf16 / amx_bf16): bf16 rows run emulated and are "
              "marked (*); float32 is the target on this CPU.")
    print(f"tensorflow {tf.__version__}, keras {keras.__version__}, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads); sections: {', '.join(args.sections)}")
    sys.stdout.flush()

    contenders = []
    if "train" in args.sections:
        contenders += training_contenders(args, bf16_units)
    if "decode" in args.sections:
        contenders += decoding_contenders(args)
    if "lstm" in args.sections:
        contenders += lstm_contenders(args)
    if "bert" in args.sections:
        contenders += bert_contenders(args)
    contenders += matmul_contenders(args, bf16_units)

    dropped = []
    for c in contenders:
        try:
            c.prepare(args.warmup)
        except Exception as error:  # only the optional torch.compile contender may fail
            if "torch.compile" not in c.name:
                raise
            log(f"{c.label} dropped: {type(error).__name__}: {str(error)[:200]}")
            dropped.append(c.name)
    contenders = [c for c in contenders if c.name not in dropped]
    for c in contenders:
        if c.kind == "train" and not all(math.isfinite(loss) for loss in c.outputs):
            raise SystemExit(f"{c.label}: a loss is not finite: {c.outputs}")
    agreement = check_decoding([c for c in contenders if c.kind == "decode"], args)

    run_rounds(contenders, args.rounds)

    peaks = {}
    for c in contenders:
        if c.kind == "matmul":
            c.gflops = c.facts["flops"] / median(c.times) / 1e9
            peaks[c.facts["dtype"]] = max(peaks.get(c.facts["dtype"], 0.0), c.gflops)
    rows = []
    for c in contenders:
        seconds = median(c.times)
        row = {"name": c.name, "library": c.library, "group": c.group,
               "ms_median": seconds * 1e3, "iqr_fraction": interquartile_fraction(c.times),
               "rss_growth_mb": c.rss_growth / 2**20, "warmup_seconds": c.warmup_seconds,
               "ms": [t * 1e3 for t in c.times]}
        facts = {k: v for k, v in c.facts.items() if k != "prompts"}
        row.update(facts)
        if c.kind == "train":
            row["tokens_per_second"] = c.facts["tokens"] / seconds
            row["losses"] = c.outputs  # warm-up steps first
            if "flops_per_token" in c.facts:
                row["gflops_per_second"] = c.facts["flops_per_token"] * row[
                    "tokens_per_second"] / 1e9
                row["fraction_of_peak"] = row["gflops_per_second"] / peaks[c.facts["dtype"]]
        elif c.kind == "decode":
            row["tokens_per_second"] = c.facts["batch_size"] * c.facts["new_tokens"] / seconds
            row["ms_per_step"] = seconds * 1e3 / c.facts["new_tokens"]
            row["tokens_equal_to_first_contender"] = agreement[c.label]
        else:
            row["gflops_per_second"] = c.gflops
        rows.append(row)
    ratios = group_ratios(contenders)

    growth = []
    decode_rows = [r for r in rows if "ms_per_step" in r]
    for r in decode_rows:
        shorter = [s for s in decode_rows if s["name"] == r["name"]
                   and s["batch_size"] == r["batch_size"] and s["positions"] < r["positions"]]
        for s in shorter:
            growth.append({"name": r["name"], "batch_size": r["batch_size"],
                           "long": r["positions"], "short": s["positions"],
                           "ratio": r["ms_per_step"] / s["ms_per_step"]})

    print_tables(args, rows, ratios, growth, peaks, bf16_units)
    high_water = peak_resident_bytes()
    print(f"\nProcess RSS high-water mark (getrusage): {high_water / 2**20:.0f} MB; "
          f"wall time {time.perf_counter() - wall_start:.0f} s")

    if args.json:
        report = {
            "config": {k: (v if k != "cases" else [list(c) for c in v])
                       for k, v in vars(args).items() if k != "json"},
            "environment": {
                "cpu": cpu_model, "cpu_flags": present, "bfloat16_units": bf16_units,
                "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                "tensorflow": tf.__version__, "keras": keras.__version__,
                "torch": torch.__version__, "python": platform.python_version(),
            },
            "matmul_peak_gflops": peaks,
            "rows": rows,
            "ratios": ratios,
            "per_step_growth": growth,
            "rss_high_water_mb": high_water / 2**20,
        }
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2) + "\n")
        log(f"wrote {path}")


def print_tables(args, rows, ratios, growth, peaks, bf16_units):
    mark = lambda group: " (*)" if "bf16" in group and not bf16_units else ""  # noqa: E731
    print(f"\n{args.rounds} rounds after {args.warmup} warm-up step(s) or call(s); medians. "
          f"Matmul peak (GFLOP/s, the faster framework): "
          + ", ".join(f"{dtype} {value:.1f}" for dtype, value in peaks.items()))
    training = [r for r in rows if "losses" in r]
    if training:
        print("\nTraining" + (f": GPT {args.num_layers} x {args.hidden_dim}, {args.num_heads} "
                              f"heads, feed-forward {args.intermediate_dim}, "
                              f"V={args.vocabulary_size}, B={args.batch_size}, "
                              f"T={args.sequence_length}" if "train" in args.sections else "")
              + ("; LSTM and BERT as noted" if {"lstm", "bert"} & set(args.sections) else ""))
        print_table(
            [("group", "<18"), ("contender", "<26"), ("step ms", "9.1f"), ("IQR %", "6.1f"),
             ("tokens/s", "9.0f"), ("GFLOP/s", "8.1f"), ("% peak", "7.1f"),
             ("RSS +MB", "8.0f"), ("first loss", "10.4f")],
            [(r["group"] + mark(r["group"]), r["name"], r["ms_median"],
              100 * r["iqr_fraction"], r["tokens_per_second"], r.get("gflops_per_second"),
              100 * r["fraction_of_peak"] if "fraction_of_peak" in r else None,
              r["rss_growth_mb"], r["losses"][0]) for r in training])
        for group in ("lstm", "bert"):
            shapes = {r["shape"] for r in training if r["group"] == group}
            if shapes:
                print(f"  {group}: {shapes.pop()}")
    decoding = [r for r in rows if "ms_per_step" in r]
    if decoding:
        print(f"\nGreedy decoding from {args.prompt_length}-token prompts (prompt reading "
              "included); 'same %' = new tokens equal to tfllm GPT's")
        print_table(
            [("group", "<22"), ("contender", "<16"), ("call ms", "9.1f"), ("IQR %", "6.1f"),
             ("ms/step", "8.2f"), ("tokens/s", "9.0f"), ("RSS +MB", "8.0f"),
             ("same %", "7.1f")],
            [(r["group"], r["name"], r["ms_median"], 100 * r["iqr_fraction"],
              r["ms_per_step"], r["tokens_per_second"], r["rss_growth_mb"],
              100 * r["tokens_equal_to_first_contender"]) for r in decoding])
        for g in growth:
            print(f"  ms/step B={g['batch_size']}, {g['long']} / {g['short']} positions, "
                  f"{g['name']}: {g['ratio']:.2f}")
    print("\nMatmul peaks (chains of square matmuls)")
    for r in rows:
        if r["group"] == "matmul peak":
            print(f"  {r['name']:<32} {r['gflops_per_second']:8.1f} GFLOP/s "
                  f"(IQR {100 * r['iqr_fraction']:.0f} %)")
    if ratios:
        print("\nRatios: tfllm tokens/s over torch tokens/s")
        print_table(
            [("group", "<24"), ("compares", "<46"), ("value", "6.2f"), ("low", "6.2f"),
             ("high", "6.2f")],
            [(r["group"] + mark(r["group"]), ("best: " if r.get("best_vs_best") else "")
              + f"{r['numerator']} / {r['denominator']}", r["ratio"], r["round_min"],
              r["round_max"]) for r in ratios])


if __name__ == "__main__":
    main()
