"""CPU: one multi-tensor op vs one fused op per variable, for AdamW and LAMB.

    python tools/bench_multi_tensor_cpu.py [--sets mlp,encoder-small,encoder,bert-base]

Times a tf.function step of each variant over each variable set, the two variants alternating
step by step on the same variables (so load changes hit both alike), and prints the median of
each and their ratio. Uses the installed tf_opt_plugin, or the library named by
TF_OPT_PLUGIN_LIBRARY. docs/gpu.md and docs/benchmarks.md record runs.
"""

import argparse
import time

import numpy as np
import tensorflow as tf

import tf_opt_plugin.ops as ops
from tf_opt_plugin.benchmark.bert_base_shapes import BERT_BASE_SHAPES

HYPER = dict(learning_rate=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-6)


def encoder_shapes(width, layers, vocab, inner):
  """A transformer encoder's variables: embedding + norm, then per layer four projections,
  two norms and the feed-forward pair."""
  shapes = [(vocab, width), (width,), (width,)]
  for _ in range(layers):
    shapes += [(width, width), (width,)] * 4
    shapes += [(width,), (width,), (width, inner), (inner,), (inner, width), (width,),
               (width,), (width,)]
  return shapes


SETS = {  # name -> (shapes, timed steps per variant)
    "mlp": ([(64, 32), (32,), (32, 32), (32,), (32, 10), (10,)], 200),
    "encoder-small": (encoder_shapes(128, 2, 1000, 512), 200),
    "encoder": (encoder_shapes(256, 4, 8000, 1024), 60),
    "bert-base": ([tuple(s) for _, s in BERT_BASE_SHAPES], 12),
}


def step_functions(algorithm, ws, ms, vs, gs):
  """(multi-tensor step, per-variable step), each a tf.function of the step count."""
  if algorithm == "adamw":
    multi_fn, single_fn, decay = (ops.multi_tensor_apply_adamw, ops.resource_apply_adamw,
                                  {"weight_decay": 0.01})
  else:
    multi_fn, single_fn, decay = (ops.multi_tensor_apply_lamb, ops.resource_apply_lamb,
                                  {"weight_decay_rate": 0.01})

  @tf.function
  def multi(step):
    multi_fn(ws, ms, vs, gs, step=step, **decay, **HYPER)

  @tf.function
  def per_variable(step):
    for w, m, v, g in zip(ws, ms, vs, gs):
      single_fn(w, m, v, g, step=step, **decay, **HYPER)

  return multi, per_variable


def bench(name, algorithm):
  shapes, steps = SETS[name]
  ws = [tf.Variable(tf.random.normal(s)) for s in shapes]
  ms = [tf.Variable(tf.zeros(s)) for s in shapes]
  vs = [tf.Variable(tf.zeros(s)) for s in shapes]
  gs = [tf.random.normal(s) * 0.01 for s in shapes]
  multi, per_variable = step_functions(algorithm, ws, ms, vs, gs)
  step = tf.constant(1, tf.int64)
  for fn in (multi, per_variable) * 3:
    fn(step)
  times = {multi: [], per_variable: []}
  for i in range(steps):
    for fn in (multi, per_variable) if i % 2 == 0 else (per_variable, multi):
      start = time.perf_counter()
      fn(step)
      times[fn].append(time.perf_counter() - start)
  multi_us = 1e6 * np.median(times[multi])
  per_us = 1e6 * np.median(times[per_variable])
  params = sum(int(np.prod(s)) for s in shapes)
  print(f"{algorithm:6s} {name:14s} {len(shapes):4d} tensors {params:10d} params: "
        f"multi {multi_us:11.1f} us  per-variable {per_us:11.1f} us  "
        f"per-variable / multi {per_us / multi_us:5.2f}x")


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--sets", default="mlp,encoder-small,encoder",
                      help="comma-separated: " + ", ".join(SETS))
  parser.add_argument("--algorithms", default="adamw,lamb", help="adamw, lamb or both")
  args = parser.parse_args()
  for algorithm in args.algorithms.split(","):
    for name in args.sets.split(","):
      bench(name, algorithm)


if __name__ == "__main__":
  main()
