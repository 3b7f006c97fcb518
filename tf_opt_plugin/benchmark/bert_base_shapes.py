"""The variable set of BERT-base (uncased, 110M parameters) as (name, shape) pairs.

Used by ``tf_opt_plugin.benchmark.ops`` to time one optimizer step over a realistic mix of tensor sizes:
76 matrices (among them the 23.4M-element word-embedding table) and 123 small 1-D tensors (biases,
LayerNorm parameters).  ``python -m tf_opt_plugin.benchmark.bert_base_shapes`` prints a summary.
"""

import math

VOCAB_SIZE = 30522
HIDDEN = 768
INTERMEDIATE = 3072
MAX_POSITIONS = 512
TYPE_VOCAB = 2
NUM_LAYERS = 12

# Checked at import time so a typo in the list cannot silently change what is benchmarked.
EXPECTED_NUM_TENSORS = 199
EXPECTED_NUM_PARAMS = 109_482_240  # "110M"


def bert_base_shapes():
  """Returns a list of (name, shape) for all 199 trainable variables of BERT-base."""
  h, i = HIDDEN, INTERMEDIATE
  shapes = [
      ("embeddings/word_embeddings", (VOCAB_SIZE, h)),
      ("embeddings/position_embeddings", (MAX_POSITIONS, h)),
      ("embeddings/token_type_embeddings", (TYPE_VOCAB, h)),
      ("embeddings/LayerNorm/gamma", (h,)),
      ("embeddings/LayerNorm/beta", (h,)),
  ]
  for layer in range(NUM_LAYERS):
    p = "encoder/layer_%d/" % layer
    for proj in ("attention/self/query", "attention/self/key",
                 "attention/self/value", "attention/output/dense"):
      shapes.append((p + proj + "/kernel", (h, h)))
      shapes.append((p + proj + "/bias", (h,)))
    shapes.append((p + "attention/output/LayerNorm/gamma", (h,)))
    shapes.append((p + "attention/output/LayerNorm/beta", (h,)))
    shapes.append((p + "intermediate/dense/kernel", (h, i)))
    shapes.append((p + "intermediate/dense/bias", (i,)))
    shapes.append((p + "output/dense/kernel", (i, h)))
    shapes.append((p + "output/dense/bias", (h,)))
    shapes.append((p + "output/LayerNorm/gamma", (h,)))
    shapes.append((p + "output/LayerNorm/beta", (h,)))
  shapes.append(("pooler/dense/kernel", (h, h)))
  shapes.append(("pooler/dense/bias", (h,)))
  return shapes


# A small stand-in with the same kinds of tensors (an embedding table, matrices, 1-D
# parameters), for quick runs and tests: 11 tensors, 404,736 parameters.
TINY_SHAPES = [
    ("embeddings/word_embeddings", (2000, 128)),
    ("embeddings/LayerNorm/gamma", (128,)),
    ("embeddings/LayerNorm/beta", (128,)),
] + [(f"encoder/layer_0/{name}", shape) for name, shape in (
    ("attention/self/query/kernel", (128, 128)),
    ("attention/self/query/bias", (128,)),
    ("intermediate/dense/kernel", (128, 512)),
    ("intermediate/dense/bias", (512,)),
    ("output/dense/kernel", (512, 128)),
    ("output/dense/bias", (128,)),
    ("output/LayerNorm/gamma", (128,)),
    ("output/LayerNorm/beta", (128,)),
)]


def num_params(shapes):
  """The number of elements over a list of (name, shape).

  >>> num_params(BERT_BASE_SHAPES), num_params(TINY_SHAPES)
  (109482240, 404736)
  """
  return sum(math.prod(s) for _, s in shapes)


BERT_BASE_SHAPES = bert_base_shapes()
assert len(BERT_BASE_SHAPES) == EXPECTED_NUM_TENSORS, len(BERT_BASE_SHAPES)
assert num_params(BERT_BASE_SHAPES) == EXPECTED_NUM_PARAMS, num_params(
    BERT_BASE_SHAPES)
assert len({n for n, _ in BERT_BASE_SHAPES
           }) == EXPECTED_NUM_TENSORS  # names are unique

if __name__ == "__main__":
  by_rank = {}
  for _, s in BERT_BASE_SHAPES:
    n, p = by_rank.get(len(s), (0, 0))
    by_rank[len(s)] = (n + 1, p + math.prod(s))
  print("%d tensors, %d parameters" %
        (len(BERT_BASE_SHAPES), num_params(BERT_BASE_SHAPES)))
  for rank, (n, p) in sorted(by_rank.items()):
    print("  rank %d: %3d tensors, %11d parameters" % (rank, n, p))
