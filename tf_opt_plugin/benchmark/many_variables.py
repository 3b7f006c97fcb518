"""One multi-tensor AdamW step over N tiny variables: its time against N.

`python -m tf_opt_plugin.benchmark.many_variables`;
`python -m tf_opt_plugin.benchmark --many-variables` runs it too
(docs/benchmarks.md).

For each N of --counts (default 1000, 4000, 16000): N float32 variables of
--size elements (default 4), their m and v slots, and one
`ResourceMultiTensorApplyAdamW` op over all of them
(`tf_opt_plugin.ops.multi_tensor_apply_adamw(..., fused=True)`). Three times:

  * op: the op's own run time (its kernel's Compute: locking, validation, the
    update), from TensorFlow's step statistics (RunMetadata, FULL_TRACE) of a
    graph holding the op, median of --steps runs;
  * call: one call of a tf.function holding the op, as a training step calls
    it (median of --steps calls after --warmup): the op plus TensorFlow's cost
    of running a function with 3N variable handles and N gradients;
  * first call: the first call of that tf.function (tracing and graph
    optimisation).

"op" and "call" are printed per step, per variable, and as "growth": (time at
N / time at the previous N) / (N / previous N), 1.0 for linear growth, above 1
for superlinear. The gradients come from one [N, size] tensor unstacked in the
graph, as gradients computed in the same function would.

Grappler's dependency optimizer takes time quadratic in the inputs of one node
when it first optimises the function (measured: 13 of the 20 s of the first
call at N = 4000; at N = 16000 the first call had not ended after 18 minutes);
it is off here unless --dependency-optimizer on, which measures the first call
as TensorFlow's defaults make it.
"""

import os
import statistics
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
from tensorflow.core.protobuf import rewriter_config_pb2  # noqa: E402

from tf_opt_plugin.benchmark import _machine  # noqa: E402
from tf_opt_plugin.benchmark import _timing  # noqa: E402

OP_TYPE = "ResourceMultiTensorApplyAdamW"
HYPERPARAMETERS = dict(learning_rate=1e-3, beta_1=0.9, beta_2=0.999,
                       epsilon=1e-7, weight_decay=0.01)


def _model(ops, count, size):
  """The variables, slots and gradients of one N, and the update (call it in
  a graph)."""
  variables = [tf.Variable(tf.fill([size], 0.5)) for _ in range(count)]
  ms = [tf.Variable(tf.zeros([size])) for _ in range(count)]
  vs = [tf.Variable(tf.zeros([size])) for _ in range(count)]
  step = tf.Variable(0, dtype=tf.int64)

  def update():
    grads = tf.unstack(tf.fill([count, size], 1e-3))
    return ops.multi_tensor_apply_adamw(
        variables,
        ms,
        vs,
        grads,
        step=step.assign_add(1),
        fused=True,
        **HYPERPARAMETERS,
    )

  return update, (variables, ms, vs, step)


def measure_call(ops, count, args):
  """(first call, median call) in seconds of a tf.function holding the op."""
  update, keep = _model(ops, count, args.size)

  @tf.function(autograph=False)
  def call():
    update()

  first, times = _timing.call_times(call, args.steps, args.warmup)
  del keep
  return first, statistics.median(times)


def measure_op(ops, count, args):
  """The median run time in seconds of the op's kernel, from TensorFlow's
  step statistics."""
  graph = tf.Graph()
  with graph.as_default():
    update, _ = _model(ops, count, args.size)
    step_op = update()
    init = tf.compat.v1.global_variables_initializer()
    (name,) = [op.name for op in graph.get_operations() if op.type == OP_TYPE]
  config = tf.compat.v1.ConfigProto()
  if args.dependency_optimizer == "off":
    config.graph_options.rewrite_options.dependency_optimization = (
        rewriter_config_pb2.RewriterConfig.OFF)
  options = tf.compat.v1.RunOptions(
      trace_level=tf.compat.v1.RunOptions.FULL_TRACE)
  durations = []
  with tf.compat.v1.Session(graph=graph, config=config) as session:
    session.run(init)
    for _ in range(args.warmup):
      session.run(step_op)
    for _ in range(args.steps):
      metadata = tf.compat.v1.RunMetadata()
      session.run(step_op, options=options, run_metadata=metadata)
      # The node can be listed once per device stream of the step.
      durations.append(
          max(1e-6 * (node.op_end_rel_micros - node.op_start_rel_micros)
              for device in metadata.step_stats.dev_stats
              for node in device.node_stats
              if node.node_name == name))
  return statistics.median(durations)


def measure(ops, count, args):
  """{"n", "first", "call", "op"} in seconds."""
  first, call = measure_call(ops, count, args)
  op = measure_op(ops, count, args)
  return {"n": count, "first": first, "call": call, "op": op}


def format_table(rows, markdown):
  """The curve as text or markdown lines."""
  header = [
      "variables",
      "op: ms",
      "op: us/variable",
      "op: growth",
      "call: ms",
      "call: us/variable",
      "call: growth",
      "first call: s",
  ]
  body = []
  previous = None
  for row in rows:
    cells = ["%d" % row["n"]]
    for key in ("op", "call"):
      growth = ("-" if previous is None else "%.2f" %
                ((row[key] / previous[key]) / (row["n"] / previous["n"])))
      cells += [
          "%.2f" % (1e3 * row[key]),
          "%.2f" % (1e6 * row[key] / row["n"]),
          growth,
      ]
    cells.append("%.1f" % row["first"])
    body.append(cells)
    previous = row
  return _timing.table_lines(header, body, markdown)


def build_parser():
  parser = _timing.argument_parser("tf_opt_plugin.benchmark.many_variables",
                                   __doc__)
  _timing.add_counts_argument(parser, "--counts", "1000,4000,16000", "the Ns")
  parser.add_argument("--size", type=_timing.positive_int, default=4,
                      help="elements per variable")
  _timing.add_step_arguments(parser, steps=20, warmup=3)
  parser.add_argument(
      "--dependency-optimizer",
      choices=("off", "on"),
      default="off",
      help="grappler's dependency optimizer (quadratic in the op's inputs "
      "when it first optimises the graph)",
  )
  return parser


def run(args, log=None):
  """Runs the curve for parsed `args`; returns {"rows", "markdown", "load"}."""
  if log is None:

    def log(msg=""):
      print(msg, flush=True)

  from tf_opt_plugin import ops  # pylint: disable=g-import-not-at-top

  grappler = tf.config.optimizer.get_experimental_options()
  tf.config.optimizer.set_experimental_options(
      {"dependency_optimization": args.dependency_optimizer == "on"})
  try:
    return _run(ops, args.counts, args, log)
  finally:  # as it was, for what runs next in this process
    tf.config.optimizer.set_experimental_options({
        "dependency_optimization": grappler.get("dependency_optimization", True)
    })


def _run(ops, counts, args, log):
  load_before = _machine.load_average()
  log("tf_opt_plugin many-variables benchmark: one %s step over N float32 "
      "variables of %d elements" % (OP_TYPE, args.size))
  log("  library %s" % ops.library_path())
  log("  grappler dependency optimizer %s" % args.dependency_optimizer)
  log("  load average at start %s" % load_before)
  rows = []
  for count in counts:
    row = measure(ops, count, args)
    rows.append(row)
    log("  N=%d: op %.2f ms, call %.2f ms, first call %.1f s" %
        (count, 1e3 * row["op"], 1e3 * row["call"], row["first"]))
  load_after = _machine.load_average()
  log()
  for line in format_table(rows, markdown=False):
    log(line)
  log("load average at start %s, at end %s (2 cores: values well above ~2 mean "
      "concurrent load)" % (load_before, load_after))
  markdown = ("\n".join(
      ["# One multi-tensor AdamW step over N tiny variables", ""] +
      format_table(rows, markdown=True) + [
          "",
          "%d float32 elements per variable; grappler dependency optimizer "
          "%s; load average at start %s, at end %s." %
          (args.size, args.dependency_optimizer, load_before, load_after),
      ]) + "\n")
  return {"rows": rows, "markdown": markdown, "load": (load_before, load_after)}


def main(argv=None):
  return _timing.main(build_parser(), run, argv)


if __name__ == "__main__":
  sys.exit(main())
