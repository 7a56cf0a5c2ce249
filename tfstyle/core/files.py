"""Atomic file writes: a reader sees the old file or the whole new one, never half of one,
and a failed write leaves no temporary file behind.

    write_text_atomic(path, text)        write_bytes_atomic(path, data)
    write_json_atomic(path, document)    with atomic_path(path) as tmp: model.save(tmp)
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path, make_parents: bool = True):
    """Yield a temporary path next to `path` (same folder, same suffix, hidden name) for the
    caller to write; on success it replaces `path` in one rename, on an exception it is
    removed (file or folder) and the exception propagates."""
    path = Path(path)
    if make_parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:8]}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        remove(tmp)
        raise


def remove(path) -> None:
    """Delete a file or a folder tree if it exists."""
    import shutil
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def write_bytes_atomic(path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def write_text_atomic(path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path, document, **dump_options) -> None:
    """`document` as indented JSON (sorted keys unless sort_keys=False is given)."""
    options = {"indent": 2, "sort_keys": True, "default": str, **dump_options}
    write_text_atomic(path, json.dumps(document, **options) + "\n")
