"""Read a ``torch.save``'d checkpoint so that nothing in the file can run code or corrupt memory.

``torch.load(weights_only=True)`` already refuses every global outside torch's own allowlist
(tensors, ``OrderedDict``, ``torch.Size``, dtypes, ...). Checkpoints of real trainings also hold
numpy arrays and scalars (MMEngine's message hub, Lightning's loops), and allowlisting numpy's own
reconstructors is not safe: ``numpy.core.multiarray._reconstruct`` + a BUILD of a structured
``numpy.dtype`` with an object field and cleared flags makes an array whose bytes from the file
are dereferenced as pointers (a crash or worse).

:func:`safe_load` therefore maps every non-torch global a checkpoint may name to a *stand-in* of
this module: an inert :class:`Record` that only stores validated plain data (shapes, byte strings,
numeric dtype codes). After unpickling, :func:`materialize` walks the result and replaces each record
by the real object, built by this module from that data alone (``numpy.frombuffer`` of a numeric
dtype, ...). No function, class or ``__setstate__`` of numpy or of any framework is ever called with
arguments from the file.

Allowed besides torch's own globals:

* ``numpy.core.multiarray._reconstruct`` / ``numpy._core.multiarray._reconstruct`` + ``numpy.ndarray``
  -> :class:`NumpyArrayRecord` (arrays of the numeric kinds ``b i u f c``, C or Fortran order);
* ``numpy.dtype`` -> :class:`NumpyDTypeRecord` (those kinds only; no fields, sub-arrays or flags);
* ``numpy.core.multiarray.scalar`` / ``numpy._core.multiarray.scalar`` -> a numeric numpy scalar;
* ``builtins.bytes`` called with no argument (the data of an empty array) -> ``b""``;
* whatever an adapter passes as ``stand_ins`` (e.g. MMEngine's ``HistoryBuffer`` in
  :mod:`hcl_plugin.mmengine_support.checkpoint_loading`), built on :class:`Record` the same way.

Any other global, a structured/object dtype, inconsistent array bytes or an unknown BUILD state
raises :class:`UnsafeCheckpointError` naming the file and what was refused.
"""

from __future__ import annotations

import math
import os
import pickle
import re
from collections import OrderedDict
from typing import Any, Callable, Dict, Mapping, Optional, Union

import numpy as np
import torch

__all__ = [
    "CheckpointReadError",
    "NumpyArrayRecord",
    "NumpyDTypeRecord",
    "Record",
    "UnsafeCheckpointError",
    "materialize",
    "numpy_stand_ins",
    "safe_load",
]

PathLike = Union[str, "os.PathLike[str]"]
MapLocation = Optional[Union[str, torch.device, Callable, Dict[str, str]]]


class UnsafeCheckpointError(pickle.UnpicklingError):
    """The file asks for something outside the allowlist; the message names the file and what was refused."""


class CheckpointReadError(ValueError):
    """The file is not a readable torch checkpoint (truncated, not a zip/pickle); the message names it."""


class Record:
    """An inert stand-in for an object a checkpoint names; :meth:`materialize` builds the real one.

    Subclasses validate everything they are given (constructor arguments and ``__setstate__``) and
    raise :class:`UnsafeCheckpointError` for anything they do not expect.
    """

    def materialize(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def __reduce__(self) -> Any:
        raise TypeError(f"{type(self).__name__} is a loading stand-in and cannot be pickled")


class _NdarrayType:
    """What the global ``numpy.ndarray`` resolves to: a marker, accepted only as ``_reconstruct``'s type."""

    def __init__(self, *args: Any) -> None:
        raise UnsafeCheckpointError("numpy.ndarray may only appear as the type argument of _reconstruct")


#: numeric dtype codes a checkpoint may name: bool, signed/unsigned ints, floats, complex
_NUMERIC_DTYPE = re.compile(r"(b1|[iu](1|2|4|8)|f(2|4|8|16)|c(8|16|32))")
_BYTE_ORDERS = ("<", ">", "|", "=")


class NumpyDTypeRecord(Record):
    """Stand-in for ``numpy.dtype(code, align, copy)`` + BUILD ``(3, byteorder, None, None, None, -1, -1, 0)``.

    Only the numeric kinds (``b1``, ``i1``..``i8``, ``u1``..``u8``, ``f2``..``f16``, ``c8``..``c32``)
    are accepted, with the state numpy writes for them: no names, fields, sub-array, metadata or flags.
    """

    def __init__(self, code: Any = None, align: Any = False, copy: Any = True) -> None:
        if not (isinstance(code, str) and _NUMERIC_DTYPE.fullmatch(code)):
            raise UnsafeCheckpointError(f"numpy.dtype({code!r}) is refused: only plain numeric dtypes are allowed")
        if align not in (False, 0) or copy not in (True, 1, False, 0):
            raise UnsafeCheckpointError(f"numpy.dtype({code!r}, align={align!r}) is refused")
        self.dtype = np.dtype(code)

    def __setstate__(self, state: Any) -> None:
        expected_tail = (None, None, None, -1, -1, 0)
        if not (isinstance(state, tuple) and len(state) == 8 and state[0] in (3, 4) and state[1] in _BYTE_ORDERS
                and tuple(state[2:]) == expected_tail):
            raise UnsafeCheckpointError(
                f"numpy dtype state {state!r} is refused: only plain numeric dtypes (no fields, sub-arrays, "
                "metadata or flags) are allowed"
            )
        if state[1] in ("<", ">") and self.dtype.itemsize > 1:
            self.dtype = self.dtype.newbyteorder(state[1])

    def materialize(self) -> np.dtype:
        return self.dtype


def _plain_bytes(data: Any, what: str) -> bytes:
    if isinstance(data, (bytes, bytearray)):
        return bytes(data)
    raise UnsafeCheckpointError(f"{what}: expected raw bytes, got {type(data).__name__}")


class NumpyArrayRecord(Record):
    """Stand-in for ``numpy.core.multiarray._reconstruct(ndarray, (0,), b'b')`` + BUILD
    ``(1, shape, dtype, is_fortran, raw_bytes)``: the array is rebuilt with ``numpy.frombuffer``.
    """

    def __init__(self, subtype: Any = None, shape: Any = (0,), code: Any = b"b") -> None:
        if subtype is not _NdarrayType:
            raise UnsafeCheckpointError(f"_reconstruct of {subtype!r} is refused: only numpy.ndarray is allowed")
        self.array: Optional[np.ndarray] = None

    def __setstate__(self, state: Any) -> None:
        if not (isinstance(state, tuple) and len(state) == 5 and state[0] == 1):
            raise UnsafeCheckpointError(f"numpy array state of type {type(state).__name__} is refused")
        _, shape, dtype_record, is_fortran, data = state
        if not isinstance(dtype_record, NumpyDTypeRecord):
            raise UnsafeCheckpointError(f"numpy array with dtype {type(dtype_record).__name__} is refused")
        if not (isinstance(shape, tuple) and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0
                                                 for n in shape)):
            raise UnsafeCheckpointError(f"numpy array shape {shape!r} is refused")
        data = _plain_bytes(data, "numpy array data")
        dtype = dtype_record.dtype
        if math.prod(shape) * dtype.itemsize != len(data):
            raise UnsafeCheckpointError(
                f"numpy array of shape {shape} and dtype {dtype} needs {math.prod(shape) * dtype.itemsize} bytes, "
                f"the file has {len(data)}"
            )
        flat = np.frombuffer(data, dtype=dtype).copy()  # writable, owns its memory
        self.array = flat.reshape(shape, order="F" if is_fortran else "C")

    def materialize(self) -> np.ndarray:
        if self.array is None:
            raise UnsafeCheckpointError("a numpy array without its data (no BUILD) is refused")
        return self.array


def _numpy_scalar(dtype_record: Any, data: Any = None) -> Any:
    """Stand-in for ``numpy.core.multiarray.scalar(dtype, raw_bytes)``: a numeric numpy scalar."""
    if not isinstance(dtype_record, NumpyDTypeRecord):
        raise UnsafeCheckpointError(f"numpy scalar of dtype {type(dtype_record).__name__} is refused")
    data = _plain_bytes(data, "numpy scalar data")
    if len(data) != dtype_record.dtype.itemsize:
        raise UnsafeCheckpointError(f"numpy scalar of dtype {dtype_record.dtype} with {len(data)} bytes is refused")
    return np.frombuffer(data, dtype=dtype_record.dtype)[0]


def _empty_bytes(*args: Any) -> bytes:
    """Stand-in for ``bytes()``, which pickles the data of an empty numpy array; no other use is allowed."""
    if args:
        raise UnsafeCheckpointError("bytes(...) with arguments is refused (only bytes() of an empty array)")
    return b""


def numpy_stand_ins() -> Dict[str, Any]:
    """The globals numpy arrays, dtypes and scalars are pickled with (numpy 1 and 2 names) -> stand-ins."""
    stand_ins: Dict[str, Any] = {"numpy.ndarray": _NdarrayType, "numpy.dtype": NumpyDTypeRecord,
                                 "builtins.bytes": _empty_bytes}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        stand_ins[f"{module}._reconstruct"] = NumpyArrayRecord
        stand_ins[f"{module}.scalar"] = _numpy_scalar
    return stand_ins


def materialize(obj: Any) -> Any:
    """Replace every :class:`Record` in ``obj`` (dicts, lists, tuples, sets, nested) by its real object."""
    if isinstance(obj, Record):
        return obj.materialize()
    if isinstance(obj, (dict, OrderedDict)):
        out = type(obj)() if type(obj) in (dict, OrderedDict) else {}
        for key, value in obj.items():
            out[materialize(key)] = materialize(value)
        return out
    if isinstance(obj, list):
        return [materialize(item) for item in obj]
    if isinstance(obj, tuple) and type(obj) is tuple:
        return tuple(materialize(item) for item in obj)
    if isinstance(obj, (set, frozenset)):
        return type(obj)(materialize(item) for item in obj)
    return obj


def _unpickler_reason(error: BaseException) -> str:
    """The informative line of torch's weights-only error (the rest is generic advice)."""
    text = str(error)
    if "WeightsUnpickler error:" in text:
        reason = " ".join(text.split("WeightsUnpickler error:", 1)[1].strip().split("\n\n")[0].split())
    else:
        paragraphs = [" ".join(p.split()) for p in text.split("\n\n") if p.strip()]
        if len(paragraphs) >= 2 and paragraphs[0].startswith("Weights only load failed"):
            paragraphs = paragraphs[1:]
        reason = paragraphs[0] if paragraphs else type(error).__name__
    return reason.split(" Please use `torch.serialization", 1)[0].rstrip(".")


#: unpickler errors that mean "not a pickle / checkpoint at all" rather than "asks for something refused"
_NOT_A_CHECKPOINT = ("Unsupported operand", "unsupported persistent id")


def safe_load(
    path: PathLike,
    map_location: MapLocation = "cpu",
    stand_ins: Optional[Mapping[str, Any]] = None,
) -> Any:
    """Load ``path`` with ``torch.load(weights_only=True)``, numpy through validating stand-ins.

    Args:
        path: a local ``torch.save`` file.
        map_location: as for ``torch.load``.
        stand_ins: extra ``{"module.Name": stand-in}`` globals (a :class:`Record` subclass, or a
            function returning plain data or records) for other frameworks' types.

    Returns:
        The checkpoint with every record materialised.

    Raises:
        FileNotFoundError: ``path`` does not exist or is not a file (the message has the path).
        UnsafeCheckpointError: the file names a global outside the allowlist, or a stand-in refused
            its data (the message names the file and what was refused).
        CheckpointReadError: the file is not a readable torch checkpoint.
    """
    source = os.fspath(path)
    if not os.path.isfile(source):
        raise FileNotFoundError(f"checkpoint file {source!r} does not exist or is not a file")
    allowed: Dict[str, Any] = {**numpy_stand_ins(), **dict(stand_ins or {})}
    entries = [(value, name) for name, value in allowed.items()]
    # stand-in classes must also be types the unpickler may BUILD (it checks type(inst) against these values)
    entries += [(value, f"{value.__module__}.{value.__qualname__}") for value in set(allowed.values())
                if isinstance(value, type)]
    try:
        with torch.serialization.safe_globals(entries):
            loaded = torch.load(source, map_location=map_location, weights_only=True)
        return materialize(loaded)
    except UnsafeCheckpointError as error:
        raise UnsafeCheckpointError(f"{source}: {error}") from None
    except pickle.UnpicklingError as error:
        reason = _unpickler_reason(error)
        if reason.startswith(_NOT_A_CHECKPOINT):
            raise CheckpointReadError(f"{source}: not a readable torch checkpoint ({reason})") from None
        raise UnsafeCheckpointError(
            f"{source}: torch.load(weights_only=True) refused it ({reason}); nothing from the "
            "file was run. hcl_plugin allows tensors, plain containers, numeric numpy arrays and its adapters' "
            "stand-ins; a file that needs more is loaded only by code that states it trusts the file"
        ) from None
    except RecursionError:
        raise CheckpointReadError(f"{source}: nested too deeply to be a checkpoint") from None
    except (RuntimeError, EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError,
            MemoryError, UnicodeDecodeError) as error:
        raise CheckpointReadError(f"{source}: not a readable torch checkpoint ({type(error).__name__}: "
                                  f"{_unpickler_reason(error)})") from None

