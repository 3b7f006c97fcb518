"""matplotlib, imported only when a picture is asked for (an optional extra)."""


def pyplot():
  """`matplotlib.pyplot` with the file-only Agg backend, or SystemExit saying how to get it.

  >>> plt = pyplot()  # doctest: +SKIP
  """
  try:
    import matplotlib  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise SystemExit(
        "This picture needs matplotlib, which is not installed. Install it with\n"
        "  pip install \"tf_opt_plugin[demo]\"   (or: pip install matplotlib)\n"
        "or pass --no-plot to skip the picture.") from None
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt
