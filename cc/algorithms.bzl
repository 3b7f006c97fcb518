"""The algorithms whose ops the library registers, listed once.

Each ALGORITHM has cc/kernels/math/ALGORITHM_math.h (its per-element math),
cc/kernels/ALGORITHM_op.h (its hyperparameters and traits),
cc/kernels/ALGORITHM_op.cc (its CPU functor and kernel registrations),
cc/kernels/gpu/ALGORITHM_kernel.cu.h (its CUDA kernels) and
cc/ops/ALGORITHM_ops.cc (its op registrations).
"""

ALGORITHMS = [
    "adafactor",
    "adamw",
    "lamb",
    "lion",
]
