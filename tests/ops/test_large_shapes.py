"""Shapes that cross the CPU kernels' block and tile boundaries.

The kernels cut work into blocks of 16384 elements (AdamW, LAMB, Lion,
unfactored Adafactor), and factored Adafactor into bands of 128 whole rows with
per-band column partial sums, added up in blocks of 256 columns. The small
shapes of the other op tests fit in one block; these do not, so every
partial-sum path is compared with the float64 references here, in float64
(tight tolerances expose a lost or double-counted partial) and float32.
"""

import pytest

import op_harness as H

# Not multiples of the block / tile sizes, so every ragged edge is exercised.
ELEMENTWISE_SHAPES = [(3 * 16384 + 7,), (129, 401)]
FACTORED_SHAPES = [
    (300, 1030),  # 3 bands x 5 column blocks, ragged both ways
    (2, 129, 2049),  # batch of 2, one row past a band, one column past a block
    (5000, 3),  # many bands, narrow
]
MODES = ("fused-function", "twin-function")


def _not_factored(adapter, shape=ELEMENTWISE_SHAPES[1]):
  return all(s == shape for s in adapter.spec.slot_shapes(shape))


# The algorithms whose slots are all shaped like their variable.
ELEMENTWISE = {n: cls for n, cls in H.ADAPTERS.items() if _not_factored(cls)}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("shape", ELEMENTWISE_SHAPES, ids=str)
@pytest.mark.parametrize("algo_cls", list(ELEMENTWISE.values()),
                         ids=list(ELEMENTWISE))
def test_elementwise_ops_across_blocks(algo_cls, shape, dtype, mode):
  H.run_and_compare(algo_cls(), shape, dtype, mode, steps=5, seed=11)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("shape", FACTORED_SHAPES + [(3 * 16384 + 7,)], ids=str)
# RMS(u) only reaches the weights when it exceeds clip_threshold; 0.05 makes
# every step clip, so the partial sums of u^2 across bands are checked too.
@pytest.mark.parametrize("clip_threshold", [1.0, 0.05])
def test_adafactor_across_tiles(shape, clip_threshold, dtype, mode):
  H.run_and_compare(H.Adafactor(clip_threshold=clip_threshold), shape, dtype,
                    mode, steps=5, seed=12)
