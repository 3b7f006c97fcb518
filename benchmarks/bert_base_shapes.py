"""The variable set of BERT-base; it lives in `tf_opt_plugin.benchmark.bert_base_shapes`.

`python benchmarks/bert_base_shapes.py` prints a summary.
"""

import runpy

import _entry

_entry.use_installed_or_source_tree()

from tf_opt_plugin.benchmark.bert_base_shapes import *  # noqa: E402,F401,F403

if __name__ == "__main__":
  runpy.run_module("tf_opt_plugin.benchmark.bert_base_shapes", run_name="__main__")
