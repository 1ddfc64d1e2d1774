"""Train an LSTM language model on Shakespeare's plays, report held-out loss, sample, save.

    python examples/train_lstm.py --quick         # a few minutes on 2 CPU cores
    python examples/train_lstm.py                 # the default run (~10-20 minutes)

The same job, and the same options, as `examples/train_gpt.py` (and `tfllm train --model
lstm`) with `tfllm.models.LSTMLanguageModel`: stacked LSTM layers with residual connections
and layer normalisation, and a tied output head. The run goes to `runs/lstm-quick` or
`runs/lstm-default`.
"""

from train_gpt import main

if __name__ == "__main__":
    main("lstm", description=__doc__.splitlines()[0])
