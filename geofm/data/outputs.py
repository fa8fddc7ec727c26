"""Where geofm writes: checked before any work, never onto an input, replaced atomically.

Every command that writes files calls :func:`check_outputs` before it reads or trains
anything: an output that is a folder, sits under a file or an unwritable folder, already
exists (without ``overwrite``) or *is* one of the inputs (the same path, a symbolic link to
it or a hard link of it; refused even with ``overwrite``) stops the command with an error
naming both paths. :func:`write_atomic` then writes a file under a temporary name and
renames it onto the target, so an interrupted write leaves the old file or none.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

__all__ = ["InputOverwriteError", "check_outputs", "input_files", "write_atomic"]

PathLike = str | os.PathLike


class InputOverwriteError(ValueError):
    """An output path that resolves to an input file."""


def _file_id(path: Path) -> tuple[int, int] | None:
    """``(device, inode)``: one file on disk, whatever path or link leads to it."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


def input_files(path: PathLike) -> list[Path]:
    """The files an input path stands for: the file; every file under a folder (a band
    folder); an ENVI header and its binary, whichever is given. A file with a header beside
    it (``b.bsq`` and ``b.hdr``, even ``x.tif`` and ``x.hdr``) counts its header too, and the
    binary that header pairs with when it is opened by the header, if that is another file."""
    p = Path(path)
    if p.is_dir():
        return [f for f in p.rglob("*") if f.is_file()]
    from geofm.data.hyperspectral import envi_paths

    files = [p]
    try:
        files += [f for f in envi_paths(p) if f != p]
        files += [f for f in envi_paths(files[1]) if f not in files]
    except (FileNotFoundError, ValueError):
        pass
    return files


def check_outputs(
    outputs: Iterable[PathLike], inputs: Iterable[PathLike | None] = (), overwrite: bool = False
) -> list[Path]:
    """Refuse, before any work, outputs that cannot or must not be written; returns them.

    Raises :class:`InputOverwriteError` for an output that is an input file (whatever
    ``overwrite`` says), ``IsADirectoryError`` for an output that is a folder,
    ``FileExistsError`` for existing outputs without ``overwrite``, and ``PermissionError``
    or ``NotADirectoryError`` when the output's folder cannot be created or written.
    """
    outs = [Path(o) for o in outputs]
    for out in outs:
        if out.is_dir():
            raise IsADirectoryError(f"output {out} is a folder; give a file path")
        _check_writable_folder(out.parent)
    # only an existing output can be an input: each file is looked at once
    existing = {fid: out for out in outs if (fid := _file_id(out)) is not None}
    if existing:
        for source in (f for i in inputs if i is not None for f in input_files(i)):
            out = existing.get(_file_id(source))
            if out is not None:
                how = "" if out == source else f" ({source} by another path or a link)"
                raise InputOverwriteError(
                    f"output {out} is the input {source}{how}: geofm "
                    "never writes over an input; choose another output"
                )
    existing = [str(o) for o in outs if o.exists()]
    if existing and not overwrite:
        raise FileExistsError(
            f"{', '.join(existing)} exist; pass --overwrite (overwrite=True) to replace them"
        )
    return outs


def _check_writable_folder(folder: Path) -> None:
    existing = folder
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise NotADirectoryError(f"cannot write into {folder}: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(f"cannot write into {folder}: {existing} is not writable")


def write_atomic(path: PathLike, write: Callable[[Path], object]) -> Path:
    """Call ``write(temporary path)``, then rename the result onto ``path``: an
    interruption leaves the previous file (or none), never a partial one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(f".{path.name}.part{path.suffix}")
    try:
        write(part)
        os.replace(part, path)
    finally:
        part.unlink(missing_ok=True)
    return path
