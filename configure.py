#!/usr/bin/env python3
"""Non-interactive build configuration for tf_opt_plugin.

    python3 configure.py [--python PATH] [--cuda auto|on|off] [--offline auto|on|off]

Reads tf.sysconfig.get_compile_flags() / get_link_flags() of the given Python (default: the
Python running this script) and writes

  .bazelrc          Bazel settings: the TF repository (via --repo_env), the ABI define and C++
                    standard exactly as TF reports them, optimisation flags, CUDA switch and,
                    when the network is not there, --override_repository lines for the offline
                    stand-ins in third_party/offline/.
  .configure.json   What was found (python, TF version, CUDA, ...); pip_pkg.sh
                    takes the Python from it.

Both files are generated and gitignored. This script never installs or uninstalls anything.
"""

import argparse
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.abspath(__file__))
BAZELRC = os.path.join(ROOT, ".bazelrc")
CONFIG_JSON = os.path.join(ROOT, ".configure.json")
OFFLINE_DIR = os.path.join(ROOT, "third_party", "offline")
# Repositories Bazel 4 downloads implicitly: any C++ target needs rules_cc and rules_java,
# `bazel test` also needs remote_coverage_tools.
OFFLINE_REPOS = ("rules_cc", "rules_java", "remote_coverage_tools")
# Hosts Bazel 4 downloads those repositories from (its built-in WORKSPACE suffix).
PROBE_URLS = (
    "https://mirror.bazel.build/",
    "https://github.com/",
)

_TF_QUERY = r"""
import json, os, sys
import tensorflow as tf
print(json.dumps({
    "version": tf.__version__,
    "compile_flags": tf.sysconfig.get_compile_flags(),
    "link_flags": tf.sysconfig.get_link_flags(),
    "include_dir": tf.sysconfig.get_include(),
    "lib_dir": tf.sysconfig.get_lib(),
    "executable": sys.executable,
}))
"""


def die(msg):
  sys.stderr.write("configure.py: error: %s\n" % msg)
  sys.exit(1)


def query_tensorflow(python):
  env = dict(os.environ)
  env["TF_CPP_MIN_LOG_LEVEL"] = "3"
  env["CUDA_VISIBLE_DEVICES"] = env.get("CUDA_VISIBLE_DEVICES", "")
  try:
    proc = subprocess.run([python, "-c", _TF_QUERY], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, env=env, cwd="/", check=False,
                          universal_newlines=True)
  except OSError as e:
    die("cannot run %s: %s" % (python, e))
  if proc.returncode != 0:
    die("%s cannot import tensorflow:\n%s" %
        (python, proc.stderr.strip()[-2000:]))
  # TF may print to stdout while importing; the JSON is the last line.
  lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
  if not lines:
    die("unexpected output from %s:\n%s" % (python, proc.stdout))
  return json.loads(lines[-1])


def parse_compile_flags(flags):
  """Splits tf.sysconfig compile flags into include dirs, defines and other flags."""
  includes, copts, cxxopts = [], [], []
  for flag in flags:
    if flag.startswith("-I"):
      includes.append(flag[2:])
    elif flag.startswith("--std=") or flag.startswith("-std="):
      # Normalise to the spelling both g++ and nvcc accept.
      cxxopts.append("-std=" + flag.split("=", 1)[1])
    else:
      copts.append(flag)
  return includes, copts, cxxopts


def parse_link_flags(flags):
  lib_dir, lib_name = None, None
  for flag in flags:
    if flag.startswith("-L"):
      lib_dir = flag[2:]
    elif flag.startswith("-l:"):
      lib_name = flag[3:]
    elif flag.startswith("-l"):
      lib_name = "lib%s.so" % flag[2:]
  if not lib_dir or not lib_name:
    die("cannot find the TF framework library in link flags %r" % (flags,))
  return lib_dir, lib_name


def find_nvcc():
  for candidate in (os.environ.get("NVCC"), shutil.which("nvcc"),
                    "/usr/local/cuda/bin/nvcc"):
    if candidate and os.path.isfile(candidate) and os.access(
        candidate, os.X_OK):
      return os.path.abspath(candidate)
  return None


def network_reachable(timeout=4.0):
  """True when Bazel's download hosts answer (any HTTP status counts as reachable)."""
  for url in PROBE_URLS:
    try:
      req = urllib.request.Request(url, method="HEAD")
      urllib.request.urlopen(req, timeout=timeout).close()
      return True
    except urllib.error.HTTPError:
      return True
    except (urllib.error.URLError, socket.timeout, OSError, ValueError):
      continue
  return False


def write_if_changed(path, text):
  """Keeps the mtime (and Bazel's caches) when a rerun produces the same file."""
  try:
    with open(path) as f:
      if f.read() == text:
        return
  except OSError:
    pass
  with open(path + ".tmp", "w") as f:
    f.write(text)
  os.replace(path + ".tmp", path)


def rc_quote(value):
  return shlex.quote(value)


def main():
  parser = argparse.ArgumentParser(
      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument(
      "--python", default=sys.executable,
      help="Python interpreter with TensorFlow installed (default: %(default)s)"
  )
  parser.add_argument(
      "--cuda", choices=("auto", "on", "off"), default="auto",
      help="build the CUDA kernels: auto = when nvcc is found (default)")
  parser.add_argument("--nvcc", default=None,
                      help="path of nvcc (default: search PATH)")
  parser.add_argument(
      "--offline", choices=("auto", "on", "off"), default="auto",
      help="use the in-tree stand-ins for Bazel's rule repositories: "
      "auto = when the download hosts cannot be reached (default)")
  args = parser.parse_args()

  python = shutil.which(args.python) or args.python
  if not os.path.exists(python):
    die("python %s does not exist" % args.python)
  # Keep venv paths as given (a venv's python is a symlink to the base interpreter).
  python = os.path.abspath(python)

  tf = query_tensorflow(python)
  includes, copts, cxxopts = parse_compile_flags(tf["compile_flags"])
  include_dir = includes[0] if includes else tf["include_dir"]
  lib_dir, lib_name = parse_link_flags(tf["link_flags"])
  if not os.path.isfile(
      os.path.join(include_dir, "tensorflow", "core", "framework",
                   "op_kernel.h")):
    die("TF include dir %s has no tensorflow/core/framework/op_kernel.h" %
        include_dir)
  if not os.path.isfile(os.path.join(lib_dir, lib_name)):
    die("TF library %s not found" % os.path.join(lib_dir, lib_name))

  version = tf["version"]
  try:
    major, minor = (int(x) for x in version.split(".")[:2])
  except ValueError:
    die("cannot parse TF version %r" % version)

  nvcc = os.path.abspath(args.nvcc) if args.nvcc else find_nvcc()
  if args.cuda == "on" and not nvcc:
    die("--cuda on but nvcc not found (pass --nvcc PATH)")
  cuda = args.cuda == "on" or (args.cuda == "auto" and nvcc is not None)

  if args.offline == "auto":
    offline = not network_reachable()
  else:
    offline = args.offline == "on"

  tf_cflags = " ".join(copts + cxxopts)
  lines = [
      "# Generated by configure.py -- do not edit; rerun `python3 configure.py` instead.",
      "# python: %s" % python,
      "# tensorflow: %s" % version,
      "",
      "# TensorFlow headers and framework library (third_party/tensorflow/tf_configure.bzl).",
      "build --repo_env=TF_INCLUDE_DIR=%s" % rc_quote(include_dir),
      "build --repo_env=TF_LIB_DIR=%s" % rc_quote(lib_dir),
      "build --repo_env=TF_LIB_NAME=%s" % rc_quote(lib_name),
      "build --repo_env=TF_CFLAGS=%s" % rc_quote(tf_cflags),
      "build --repo_env=TF_VERSION=%s" % rc_quote(version),
      "",
      "# Compile flags exactly as tf.sysconfig.get_compile_flags() reports them.",
  ]
  lines += ["build --copt=%s" % rc_quote(f) for f in copts]
  lines += ["build --cxxopt=%s" % rc_quote(f) for f in cxxopts]
  lines += [
      "",
      "build --compilation_mode=opt",
      "build --copt=-O3",
      "build --copt=-fno-math-errno",
      "",
      "# The sandbox would symlink ~18k TF headers per action (+8-25 s per compile).",
      "build --spawn_strategy=standalone",
      "build --genrule_strategy=standalone",
      "",
      "# Tests (e.g. Bazel's Python toolchain) run the interpreter found on PATH.",
      "test --test_env=PATH=%s" %
      rc_quote(os.path.dirname(python) + ":/usr/local/bin:/usr/bin:/bin"),
      "test --test_output=errors",
      "",
  ]
  if cuda:
    lines += [
        "# CUDA kernels (//cc/kernels:gpu_kernels), nvcc found at configure time.",
        "build --define=tf_opt_plugin_cuda=1",
        "build --define=tf_opt_plugin_nvcc=%s" % rc_quote(nvcc),
        "",
    ]
  else:
    lines += [
        "# CUDA kernels disabled (--cuda=%s, nvcc=%s)." % (args.cuda, nvcc), ""
    ]
  if offline:
    lines += [
        "# Offline: in-tree stand-ins for the repositories Bazel 4 would download."
    ]
    for repo in OFFLINE_REPOS:
      lines.append("build --override_repository=%s=%s" %
                   (repo, rc_quote(os.path.join(OFFLINE_DIR, repo))))
    lines.append("")
  else:
    lines += [
        "# Online: Bazel downloads rules_cc / rules_java itself (--offline=%s)."
        % args.offline, ""
    ]
  lines += [
      "# Machine-local additions (not generated) go into .bazelrc.user.",
      "try-import %workspace%/.bazelrc.user",
      "",
  ]

  write_if_changed(BAZELRC, "\n".join(lines))

  config = {
      "python": python,
      "tf_version": version,
      "tf_include_dir": include_dir,
      "tf_lib": os.path.join(lib_dir, lib_name),
      "tf_compile_flags": tf["compile_flags"],
      "tf_link_flags": tf["link_flags"],
      "cuda": cuda,
      "nvcc": nvcc if cuda else None,
      "offline": offline,
  }
  write_if_changed(CONFIG_JSON,
                   json.dumps(config, indent=2, sort_keys=True) + "\n")

  print("configure.py: TensorFlow %s from %s" % (version, python))
  print("configure.py: the wheel will require TensorFlow %d.%d" %
        (major, minor))
  print("configure.py: CUDA %s%s" %
        ("on" if cuda else "off", " (nvcc %s)" % nvcc if cuda else ""))
  print(
      "configure.py: Bazel rule repositories: %s" %
      ("offline stand-ins (third_party/offline)" if offline else "downloaded"))
  print("configure.py: wrote %s and %s" % (os.path.relpath(
      BAZELRC, os.getcwd()), os.path.relpath(CONFIG_JSON, os.getcwd())))


if __name__ == "__main__":
  main()
