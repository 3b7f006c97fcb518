"""Benchmarks of tf_opt_plugin against Keras's optimizers and TF's own kernels.

`python -m tf_opt_plugin.benchmark` runs both and writes a report (`--help`):

  * `tf_opt_plugin.benchmark.ops`: one optimizer step over the BERT-base variable
    set (fused ops, `keras.optimizers` with and without XLA, TF's
    `ResourceApplyAdam`, and the memory-bandwidth floor);
  * `tf_opt_plugin.benchmark.fit`: a whole `fit()` step of a small transformer
    encoder with each of our optimizers and its Keras counterpart.

Each module also runs on its own (`python -m tf_opt_plugin.benchmark.ops`).
"""
