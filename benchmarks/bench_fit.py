"""A whole fit() step of a small transformer encoder: ours vs Keras's optimizers.

A thin entry point: the benchmark is `tf_opt_plugin.benchmark.fit` (the same
arguments; `--help`). Prefers an installed tf_opt_plugin, falls back to the
source tree.

  python benchmarks/bench_fit.py [--steps N] [--warmup N] [--batch N]
                                 [--tiny] [--markdown PATH]
"""

import sys

import _entry

_entry.use_installed_or_source_tree()

from tf_opt_plugin.benchmark.fit import main  # noqa: E402

if __name__ == "__main__":
  sys.exit(main())
