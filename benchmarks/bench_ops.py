"""One optimizer step over BERT-base: fused ops vs Keras vs TF, and the bandwidth floor.

A thin entry point: the benchmark is `tf_opt_plugin.benchmark.ops` (the same
arguments; `--help`). Prefers an installed tf_opt_plugin, falls back to the
source tree.

  python benchmarks/bench_ops.py [--steps N] [--warmup N] [--only adamw,lamb,...]
                                 [--shapes bert-base|tiny] [--markdown PATH]
"""

import sys

import _entry

_entry.use_installed_or_source_tree()

from tf_opt_plugin.benchmark.ops import main  # noqa: E402

if __name__ == "__main__":
  sys.exit(main())
