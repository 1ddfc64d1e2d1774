"""`python -m tfllm.cli ARGS`: the `tfllm` command line."""

import sys

from tfllm.cli import main

sys.exit(main())
