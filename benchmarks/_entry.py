"""Makes `import tf_opt_plugin` work for the scripts in benchmarks/.

Prefers an installed tf_opt_plugin; without one, falls back to the source tree
(the repository root, one level up).
"""

import importlib.util
import os
import sys


def use_installed_or_source_tree():
  if importlib.util.find_spec("tf_opt_plugin") is None:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
