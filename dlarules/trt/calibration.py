"""INT8 calibration data for the Python-API backend: batches from the user's .npz or random data of the input
shapes, copied into device memory with the CUDA runtime (libcudart through ctypes, so no extra package).

The data only sets INT8 scales; where a layer runs does not depend on it, so random data is a fair default."""
from __future__ import annotations

import ctypes
import ctypes.util
from pathlib import Path
from types import ModuleType
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import OptionError
from .errors import VerifyError

InputSpecs = Mapping[str, tuple[tuple[int, ...], Any]]   # input name -> (static shape, numpy dtype)
RANDOM_BATCHES = 2
_H2D = 1                                                # cudaMemcpyHostToDevice
_CUDART_NAMES = ("libcudart.so", "libcudart.so.12", "libcudart.so.11.0", "/usr/local/cuda/lib64/libcudart.so")


def calibration_batches(specs: InputSpecs, npz: Path | None, *, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """One dict of input arrays per calibration batch."""
    if npz is None:
        rng = np.random.default_rng(seed)
        return [{name: _random(rng, shape, dtype) for name, (shape, dtype) in specs.items()}
                for _ in range(RANDOM_BATCHES)]
    return _from_npz(specs, npz)


# Calibration batches are all held in memory for the build: an .npz whose arrays hold more is refused.
MAX_CALIBRATION_BYTES = 2 << 30


def _random(rng: np.random.Generator, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    dt = np.dtype(dtype)
    if dt.kind in "iub":
        return rng.integers(0, 2, size=shape).astype(dt)
    return rng.uniform(-1.0, 1.0, size=shape).astype(dt)


def _from_npz(specs: InputSpecs, npz: Path) -> list[dict[str, np.ndarray]]:
    from ..errors import DlarulesError
    from ..readers import read_npz
    try:   # a regular file of numbers within the budget (readers.read_npz)
        arrays = read_npz(npz, "calibration data", MAX_CALIBRATION_BYTES)
    except DlarulesError as exc:
        raise OptionError("--inputs", f"{npz}: {exc.problem}") from None
    missing = [n for n in specs if n not in arrays]
    if missing:
        raise OptionError("--inputs", f"{npz}: no array for input(s) {', '.join(missing)} "
                                      f"(it has {', '.join(arrays) or 'none'})")
    per_input = {name: _split(npz, name, arrays[name], shape) for name, (shape, _) in specs.items()}
    counts = {len(v) for v in per_input.values()}
    if len(counts) > 1:
        raise OptionError("--inputs", f"{npz}: the inputs hold different numbers of batches "
                                      f"({', '.join(f'{n}: {len(v)}' for n, v in per_input.items())})")
    n = counts.pop() if counts else 0
    return [{name: np.ascontiguousarray(v[i], dtype=specs[name][1]) for name, v in per_input.items()}
            for i in range(n)]


def _split(npz: Path, name: str, arr: np.ndarray, shape: tuple[int, ...]) -> list[np.ndarray]:
    """An array of the input's shape is one batch; (N, *shape) is N batches; N*B along the batch axis is N."""
    if arr.shape == shape:
        return [arr]
    if arr.shape[1:] == shape:
        return list(arr)
    if shape and arr.ndim == len(shape) and arr.shape[1:] == shape[1:] and arr.shape[0] % shape[0] == 0:
        return list(arr.reshape((-1, *shape)))
    dims = "x".join(map(str, shape))
    raise OptionError("--inputs", f"{npz}: array {name!r} has shape {'x'.join(map(str, arr.shape))}; "
                                  f"the input is {dims} (give {dims}, N x {dims}, or a multiple of the batch)")


class CudaRuntime:
    """The three CUDA runtime calls calibration needs."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self.lib = lib
        lib.cudaMalloc.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_size_t]
        lib.cudaMemcpy.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        lib.cudaFree.argtypes = [ctypes.c_void_p]
        lib.cudaGetErrorString.restype = ctypes.c_char_p

    def _check(self, status: int, what: str) -> None:
        if status != 0:
            reason = self.lib.cudaGetErrorString(status).decode(errors="replace")
            raise VerifyError(None, f"CUDA {what} failed for INT8 calibration: {reason}")

    def malloc(self, nbytes: int) -> int:
        ptr = ctypes.c_void_p()
        self._check(self.lib.cudaMalloc(ctypes.byref(ptr), nbytes), "cudaMalloc")
        return int(ptr.value or 0)

    def to_device(self, ptr: int, array: np.ndarray) -> None:
        self._check(self.lib.cudaMemcpy(ptr, array.ctypes.data, array.nbytes, _H2D), "cudaMemcpy")

    def free(self, ptr: int) -> None:
        self.lib.cudaFree(ptr)


def load_cudart() -> CudaRuntime:
    found = ctypes.util.find_library("cudart")
    for name in ((found,) if found else ()) + _CUDART_NAMES:
        try:
            return CudaRuntime(ctypes.CDLL(name))
        except OSError:
            continue
    raise VerifyError(None, "INT8 calibration needs the CUDA runtime (libcudart.so), which was not found; "
                            "add /usr/local/cuda/lib64 to LD_LIBRARY_PATH, or verify in fp16")


class DeviceBatches:
    """Hands TensorRT one batch at a time in device buffers (one per input, reused), then frees them."""

    def __init__(self, batches: Sequence[Mapping[str, np.ndarray]], cuda: CudaRuntime) -> None:
        self.batches = list(batches)
        self.cuda = cuda
        self.next_index = 0
        names = self.batches[0] if self.batches else {}
        self.buffers = {name: cuda.malloc(max(b[name].nbytes for b in self.batches)) for name in names}

    def next(self, names: Sequence[str]) -> list[int] | None:
        if self.next_index >= len(self.batches):
            return None
        batch = self.batches[self.next_index]
        self.next_index += 1
        for name in names:
            self.cuda.to_device(self.buffers[name], batch[name])
        return [self.buffers[name] for name in names]

    def close(self) -> None:
        for ptr in self.buffers.values():
            self.cuda.free(ptr)
        self.buffers = {}


def make_calibrator(trt: ModuleType, feed: DeviceBatches) -> Any:
    """An IInt8EntropyCalibrator2 (the calibrator DLA requires) that reads `feed`; no cache is read or written,
    so every verification calibrates afresh."""

    class Calibrator(trt.IInt8EntropyCalibrator2):  # type: ignore[name-defined,misc]
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)

        def get_batch_size(self) -> int:
            return 1   # explicit-batch networks: the batch is part of each input's shape

        def get_batch(self, names: Sequence[str], *_: Any) -> list[int] | None:
            return feed.next(names)

        def read_calibration_cache(self, *_: Any) -> None:
            return None

        def write_calibration_cache(self, cache: Any) -> None:
            pass

    return Calibrator()
