"""dlarules: will this ONNX model run on NVIDIA's DLA, and if not, what exactly must change?

The public API lives in `dlarules.api`; the most used names are re-exported here.
"""
__version__ = "0.1.0"

__all__ = ["__version__", "load_db", "check", "Report"]


def __getattr__(name: str):  # keep `import dlarules` cheap: the API (and onnx) load on first use
    if name in ("load_db", "check", "Report"):
        from . import api
        return getattr(api, name)
    raise AttributeError(name)
