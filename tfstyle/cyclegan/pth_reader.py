"""Reading PyTorch state dicts (`.pth` files of `torch.save`) without PyTorch, tensors only.

`torch.save` has written two formats, and both are read here:

- **zip** (the default since PyTorch 1.6): a zip archive whose one top folder holds
  `data.pkl` (the pickled object; each tensor's storage is a persistent id naming a record),
  `data/<key>` (each storage's raw bytes) and `byteorder` (absent before 2.1: little endian).
- **legacy** (older releases, and `_use_new_zipfile_serialization=False`): one stream of a
  pickled magic number, a pickled protocol version (1001), a pickled dict of system facts (the
  byte order among them), the pickled object, a pickled list of storage keys, and then, for
  each key in that order, an int64 element count followed by the storage's raw bytes.

Pickles can run code, so every pickle in the file is read by an unpickler whose `find_class`
admits only what a state dict of tensors is made of: `collections.OrderedDict`, torch's tensor
rebuild functions (answered by our own, which only record offsets, sizes and strides) and
torch's storage type names (answered by numpy dtypes). Any other global (`os.system`,
`builtins.eval`, a class of another package) is refused by name before it is looked up, so
nothing named in the file is imported or called. Storage bytes are read only within the file,
and every tensor's view is checked to lie inside its storage.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np

#: The first pickle of a legacy-format file, and the protocol version that follows it.
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001

#: torch's storage type names (module torch, or torch.cuda for a file saved from a GPU)
#: and the element type they hold; BFloat16Storage is read as uint16 and widened.
STORAGE_DTYPES = {
    "FloatStorage": "f4", "DoubleStorage": "f8", "HalfStorage": "f2",
    "BFloat16Storage": "u2", "LongStorage": "i8", "IntStorage": "i4", "ShortStorage": "i2",
    "CharStorage": "i1", "ByteStorage": "u1", "BoolStorage": "b1",
}


class PthError(ValueError):
    """A file that is not a readable state dict of tensors; the message names the file."""


class _Record:
    """Base of what the unpickler makes: a pickle cannot set its attributes (BUILD)."""
    __slots__ = ()

    def __setstate__(self, state):
        raise PthError(f"a {type(self).__name__.strip('_')} record is given extra state")


class _StorageType(_Record):
    __slots__ = ("name", "code")

    def __init__(self, name: str, code: str):
        self.name, self.code = name, code


class _Storage(_Record):
    """A storage named by a persistent id: filled from the file once the pickle is read.
    `view` is (root key, element offset, element count) for a legacy view of a root."""
    __slots__ = ("key", "type", "numel", "view")

    def __init__(self, key: str, storage_type: _StorageType, numel: int, view=None):
        self.key, self.type, self.numel, self.view = key, storage_type, numel, view


class _TensorRef(_Record):
    """What a tensor rebuild call left: its storage, offset, size and stride (elements)."""
    __slots__ = ("storage", "offset", "size", "stride")

    def __init__(self, storage, offset, size, stride):
        if not isinstance(storage, _Storage):
            raise PthError(f"a tensor is rebuilt from {type(storage).__name__}, not a storage")
        ints = lambda v: isinstance(v, (tuple, list)) and all(  # noqa: E731
            isinstance(i, int) and i >= 0 for i in v)
        if not (isinstance(offset, int) and offset >= 0 and ints(size) and ints(stride)
                and len(size) == len(stride)):
            raise PthError(f"a tensor has an invalid offset {offset!r}, size {size!r} or "
                           f"stride {stride!r}")
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), \
            tuple(stride)


def _rebuild_tensor(storage, storage_offset, size, stride, *_ignored):
    """torch._utils._rebuild_tensor, _rebuild_tensor_v2 (requires_grad, backward hooks and
    metadata follow; none of them matters to the values)."""
    return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_parameter(data, *_ignored):
    """torch._utils._rebuild_parameter: a Parameter's data is its tensor."""
    return data


_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch", "Size"): tuple,
}


class _Unpickler(pickle.Unpickler):
    """Admits only the globals of a state dict; storages become _Storage records."""

    def __init__(self, file):
        super().__init__(file, encoding="utf-8")

    def find_class(self, module, name):
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module in ("torch", "torch.cuda") and name in STORAGE_DTYPES:
            return _StorageType(name, STORAGE_DTYPES[name])
        raise PthError(f"refused: it names {module}.{name}; a state dict is read only as "
                       "tensors of torch's storage types in OrderedDicts (nothing in the file "
                       "was run)")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) in (5, 6)
                and pid[0] in ("storage", b"storage")):
            raise PthError(f"unknown persistent id {str(pid)[:80]!r}")
        storage_type, key, numel = pid[1], _text(pid[2]), pid[4]
        view = pid[5] if len(pid) == 6 else None
        if not (isinstance(storage_type, _StorageType) and isinstance(key, str)
                and isinstance(numel, int) and numel >= 0):
            raise PthError(f"invalid storage record {str(pid)[:80]!r}")
        if view is None:
            return _Storage(key, storage_type, numel)
        # A legacy view: (view key, element offset, element count) of the root storage.
        if not (isinstance(view, tuple) and len(view) == 3 and isinstance(_text(view[0]), str)
                and all(isinstance(v, int) and v >= 0 for v in view[1:])):
            raise PthError(f"invalid storage view {str(view)[:80]!r}")
        return _Storage(_text(view[0]), storage_type, view[2], (key, view[1], view[2]))


def _text(value):
    return value.decode("ascii") if isinstance(value, bytes) else value


def _unpickle(stream):
    return _Unpickler(stream).load()


def _element_dtype(code: str, little_endian: bool) -> np.dtype:
    return np.dtype(code if code in ("i1", "u1", "b1") else ("<" if little_endian else ">") + code)


def _as_float_view(values: np.ndarray, code: str) -> np.ndarray:
    """bfloat16 (read as uint16) widened to float32; other types as they are."""
    if code == "u2":
        return (values.astype(np.uint32) << 16).view(np.float32)
    return values


def _materialize(ref: _TensorRef, storages: dict) -> np.ndarray:
    storage = ref.storage
    root_key, start, count = storage.view or (storage.key, 0, storage.numel)
    flat = storages[root_key]
    if start + count > flat.size:
        raise PthError(f"storage {storage.key!r} lies outside its data")
    flat = flat[start:start + count]
    if any(s == 0 for s in ref.size):
        return np.zeros(ref.size, flat.dtype)
    last = ref.offset + sum((n - 1) * s for n, s in zip(ref.size, ref.stride, strict=True))
    if last >= flat.size:
        raise PthError(f"a tensor of size {ref.size} reaches past its storage "
                       f"{storage.key!r} ({flat.size} elements)")
    view = np.lib.stride_tricks.as_strided(
        flat[ref.offset:], shape=ref.size, strides=[s * flat.itemsize for s in ref.stride],
        writeable=False)
    return np.array(view)


def _collect_storages(obj) -> dict[str, _Storage]:
    found = {}
    for value in obj.values():
        if isinstance(value, _TensorRef):
            found.setdefault(value.storage.key, value.storage)
    return found


def _check_state_dict(obj, path) -> None:
    if not isinstance(obj, dict):
        raise PthError(f"{path}: holds a {type(obj).__name__}, not a state dict (a mapping of "
                       "names to tensors, as net.state_dict() gives)")
    bad = [k for k, v in obj.items() if not (isinstance(k, str) and isinstance(v, _TensorRef))]
    if bad:
        raise PthError(f"{path}: entries {_list(bad)} are not tensors: not a state dict (a "
                       "whole training checkpoint? save net.state_dict() instead)")


def _list(items, limit: int = 6) -> str:
    items = [str(i) for i in items]
    more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def _read_zip(path: Path, archive: zipfile.ZipFile) -> dict:
    names = archive.namelist()
    pickles = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(pickles) != 1:
        raise PthError(f"{path}: a zip archive without one <name>/data.pkl: not a torch.save "
                       "file")
    prefix = pickles[0][:-len("data.pkl")]
    info = archive.getinfo(pickles[0])
    if info.compress_type != zipfile.ZIP_STORED:
        raise PthError(f"{path}: {pickles[0]} is compressed; torch.save stores its records "
                       "uncompressed")
    obj = _unpickle(io.BytesIO(archive.read(info)))
    _check_state_dict(obj, path)
    little = True
    if prefix + "byteorder" in names:
        little = archive.read(prefix + "byteorder").strip() != b"big"
    storages = {}
    for key, storage in _collect_storages(obj).items():
        record = prefix + "data/" + key
        if storage.view is not None or record not in names:
            raise PthError(f"{path}: no record {record} for storage {key!r}")
        entry = archive.getinfo(record)
        dtype = _element_dtype(storage.type.code, little)
        need = storage.numel * dtype.itemsize
        if entry.compress_type != zipfile.ZIP_STORED or entry.file_size < need:
            raise PthError(f"{path}: record {record} holds {entry.file_size} bytes, "
                           f"{need} expected (uncompressed)")
        with archive.open(entry) as f:
            data = f.read(need)
        storages[key] = _as_float_view(np.frombuffer(data, dtype), storage.type.code)
    return {name: _materialize(ref, storages) for name, ref in obj.items()}


def _read_legacy(path: Path, stream) -> dict:
    size = path.stat().st_size
    if _unpickle(stream) != LEGACY_MAGIC:
        raise PthError(f"{path}: neither a zip archive nor a legacy torch.save file (no magic "
                       "number)")
    protocol = _unpickle(stream)
    if protocol != LEGACY_PROTOCOL:
        raise PthError(f"{path}: legacy format protocol {protocol!r}, {LEGACY_PROTOCOL} "
                       "expected")
    system = _unpickle(stream)
    little = not isinstance(system, dict) or system.get("little_endian", True) is not False
    obj = _unpickle(stream)
    _check_state_dict(obj, path)
    keys = _unpickle(stream)
    if not (isinstance(keys, list) and all(isinstance(k, str) for k in keys)):
        raise PthError(f"{path}: the storage key list is not a list of names")
    wanted = _collect_storages(obj)
    roots = {}
    for storage in wanted.values():
        root = storage.view[0] if storage.view else storage.key
        roots.setdefault(root, storage)
    storages = {}
    for key in keys:
        header = stream.read(8)
        if len(header) != 8:
            raise PthError(f"{path}: ends before storage {key!r}")
        numel = struct.unpack("<q" if little else ">q", header)[0]
        storage = roots.get(key)
        code = storage.type.code if storage else "u1"
        dtype = _element_dtype(code, little)
        nbytes = numel * dtype.itemsize if numel >= 0 else -1
        if nbytes < 0 or stream.tell() + nbytes > size:
            raise PthError(f"{path}: storage {key!r} claims {numel} elements, more than the "
                           "file holds")
        data = stream.read(nbytes)
        if storage is not None:
            storages[key] = _as_float_view(np.frombuffer(data, dtype), code)
    missing = sorted(set(roots) - set(storages))
    if missing:
        raise PthError(f"{path}: storages {_list(missing)} are not in the file")
    return {name: _materialize(ref, storages) for name, ref in obj.items()}


def load_state_dict(path) -> tuple[dict[str, np.ndarray], str]:
    """(the state dict of the `.pth` file at `path` as {name: numpy array}, its format: "zip"
    or "legacy"). PthError (naming the file) for a missing file, another kind of file, a
    truncated or inconsistent one, or any content but tensors; nothing in the file is run."""
    path = Path(path)
    if not path.is_file():
        raise PthError(f"{path}: no such file")
    errors = (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
              KeyError, IndexError, OverflowError, struct.error, zipfile.BadZipFile,
              UnicodeDecodeError)
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                return _read_zip(path, archive), "zip"
        with open(path, "rb") as stream:
            return _read_legacy(path, stream), "legacy"
    except PthError as err:
        message = str(err)
        raise PthError(message if message.startswith(str(path)) else f"{path}: {message}") \
            from None
    except errors as err:
        raise PthError(f"{path}: not a readable torch.save file ({type(err).__name__}: "
                       f"{str(err)[:120]})") from None
