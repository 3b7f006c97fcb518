"""Golden trajectories published in Keras 3's optimizer tests
(keras/src/optimizers/*_test.py::test_correctness_with_golden).

Every test there starts from x = ones(10), applies one step with gradients
0.01, then steps with gradients arange(0.1, 1.1, 0.1), and checks golden row
i after i + 1 steps with rtol = atol = 5e-4.
"""

import numpy as np

RTOL = 5e-4
FIRST_GRADS = np.full((10,), 0.01)
GRADS = np.arange(1, 11) / 10.0

# AdamW(learning_rate=1.0, weight_decay=0.5, epsilon=2).
ADAMW = np.array([[0.4998] * 10,
                  [
                      0.2486, 0.2475, 0.2463, 0.2451, 0.244, 0.2428, 0.2417,
                      0.2405, 0.2394, 0.2382
                  ],
                  [
                      0.1223, 0.1198, 0.1174, 0.1149, 0.1124, 0.11, 0.1075,
                      0.1051, 0.1027, 0.1003
                  ],
                  [
                      0.0586, 0.0549, 0.0512, 0.0475, 0.0439, 0.0402, 0.0366,
                      0.033, 0.0294, 0.0258
                  ],
                  [
                      0.0263, 0.0215, 0.0167, 0.012, 0.0073, 0.0026, -0.0021,
                      -0.0067, -0.0113, -0.0159
                  ]])
ADAMW_HP = dict(learning_rate=1.0, weight_decay=0.5, epsilon=2.0)

# Adam(amsgrad=True) and Lamb() with their defaults share these values.
ADAM_AMSGRAD = LAMB = np.tile([[0.999], [0.9982], [0.9974], [0.9965], [0.9955]],
                              (1, 10))

# Adafactor(learning_rate=0.5, beta_2_decay=-0.65, epsilon_1=1e-15,
# epsilon_2=1e-4, clip_threshold=0.9, relative_step=False): Keras ignores
# relative_step (defect 5), so these are the values of relative_step=True.
ADAFACTOR = np.array([[0.55] * 10, [0.3031, 0.3026, 0.3025] + [0.3024] * 7,
                      [0.1671, 0.1665] + [0.1663] * 8,
                      [0.0923, 0.0916, 0.0915] + [0.0914] * 7,
                      [0.0554, 0.0548] + [0.0546] * 5 + [0.0545] * 3])
ADAFACTOR_HP = dict(learning_rate=0.5, beta_2_decay=-0.65, epsilon_1=1e-15,
                    epsilon_2=1e-4, clip_threshold=0.9)

# Lion() with its defaults: every step moves each element by lr = 0.001.
LION = np.tile([[0.999], [0.998], [0.997], [0.996], [0.995]], (1, 10))


# ----------------------------------------------------------------------------
# The scenarios of Keras 3's tests, run by a float64 reference (`spec`: an
# entry of algorithms.py), for the reference tests.
# ----------------------------------------------------------------------------
def golden_trajectory(spec, n_rows=5, **hp):
  """w after each step of the Keras golden-test gradient sequence, by the
  float64 reference of the registry entry `spec` from w = ones(10)."""
  w = np.ones([10])
  slots = spec.zero_slots(w.shape, **spec.options_in(hp))
  out = []
  for i in range(n_rows):
    g = FIRST_GRADS if i == 0 else GRADS
    w, slots = spec.reference_step(w, slots, g, step=i + 1, **hp)
    out.append(w.copy())
  return np.array(out)


def assert_single_step(spec, expected, **hp):
  """Keras's test_single_step, by the float64 reference of the registry entry
  `spec`: vars [1, 2, 3, 4], grads [1, 6, 7, 2], then vars == expected
  (rtol=atol=1e-4, the Keras test's)."""
  w = np.array([1.0, 2.0, 3.0, 4.0])
  slots = spec.zero_slots(w.shape, **spec.options_in(hp))
  grads = np.array([1.0, 6.0, 7.0, 2.0])
  w, _ = spec.reference_step(w, slots, grads, step=1, **hp)
  np.testing.assert_allclose(w, expected, rtol=1e-4, atol=1e-4)


def weight_decay_steps(spec, **hp):
  """Keras's test_weight_decay, by the float64 reference of the registry entry
  `spec`: three fresh optimizers (each at step 1, zero slots) apply a zero
  gradient to var1 = 2.0; returns var1."""
  w = np.array(2.0)
  for _ in range(3):
    w, _ = spec.reference_step(w, spec.zero_slots(()), 0.0, step=1, **hp)
  return float(w)


def assert_matches_golden(trajectory, golden):
  np.testing.assert_allclose(trajectory, golden, rtol=RTOL, atol=RTOL)
