"""The export layout: file names, the serving signature and the numbered version folders.

Writing an export (:mod:`digits_zoo.ship.export`) and loading one
(:mod:`digits_zoo.ship.load`) both read these names from here, so the two
sides cannot drift apart and neither imports the other. Layout of an export
(the TensorFlow Serving layout)::

    OUT/                      the export's base folder
      1/                      one folder per export, numbered 1, 2, ...; never overwritten
        saved_model.pb        Keras rows: a SavedModel whose ``serving_default``
        variables/            signature takes raw pixels and returns
                              ``probabilities`` and ``class``
        model.onnx            with --format onnx or all: the same function as ONNX
        model.tflite          with --format litert or all: the same function for LiteRT
        metadata.json         what the version holds, each file verified by its own runtime
      2/
        model.skops           scikit-learn rows: a skops file (no pickle)
        model.onnx            with --format onnx or all
        metadata.json
      .partial-<random>/      an export being written; a killed one's is removed by the next

Every version holds its model's own format (a SavedModel for networks, so that
TensorFlow Serving pointed at ``OUT`` can serve any version; a skops file for
scikit-learn models); the portable files --format asks for lie beside it, made
from the same fitted model and checked in the same export.

A numbered folder without ``metadata.json`` is never one of ours (a version is
complete before it gets its number): loading and exporting refuse it. The
numbers are handed out here too: :func:`publish_version` renames a checked
export to :func:`next_version` and never reuses a number.
"""

from __future__ import annotations

import os
from pathlib import Path

from zoo.errors import ZooError

METADATA = "metadata.json"
SAVED_MODEL = "saved_model.pb"
SKOPS_MODEL = "model.skops"
ONNX_MODEL = "model.onnx"
LITERT_MODEL = "model.tflite"
SIGNATURE = "serving_default"
# The input and the outputs of every format's serving function, as the SavedModel names them.
INPUT_NAME = "pixels"
OUTPUT_NAMES = ("probabilities", "class")
# The prefix of the hidden folder an export is written in before it gets its number.
PARTIAL_PREFIX = ".partial-"
# The metadata's format names (Keras's names where Keras has one) and each one's model file.
MODEL_FILES = {
    "tf_saved_model": SAVED_MODEL,
    "skops": SKOPS_MODEL,
    "onnx": ONNX_MODEL,
    "litert": LITERT_MODEL,
}
# A model file's name tells its format: ``predict OUT/3/model.onnx`` runs the ONNX file.
FILE_FORMATS = {file: name for name, file in MODEL_FILES.items()}
# How messages name each format.
FORMAT_LABELS = {
    "tf_saved_model": "SavedModel",
    "skops": "skops file",
    "onnx": "ONNX",
    "litert": "LiteRT",
}
# The --format choices of ``digits-zoo export``: the portable formats each adds beside the
# model's own. ``savedmodel`` adds none (a scikit-learn row's own format is skops).
FORMAT_CHOICES = {
    "savedmodel": (),
    "onnx": ("onnx",),
    "litert": ("litert",),
    "all": ("onnx", "litert"),
}


def version_folders(base: str | Path) -> list[tuple[int, Path]]:
    """Returns the numbered version folders in an export's base folder, lowest number first.

    Every numbered folder counts, whole or not, so that a version number is
    never handed out twice; a version is whole when it holds its
    ``metadata.json`` (see :func:`is_version`).

    Args:
        base: the export's base folder; a missing one has no versions.
    """
    base = Path(base)
    if not base.is_dir():
        return []
    return sorted(
        (int(child.name), child)
        for child in base.iterdir()
        if child.name.isdigit() and child.is_dir()
    )


def is_version(folder: str | Path) -> bool:
    """Whether ``folder`` is one version of an export (it holds its ``metadata.json``)."""
    return (Path(folder) / METADATA).is_file()


def taken_numbers(base: str | Path) -> set[int]:
    """Every number used by a name in an export's base folder: folders, files and links alike."""
    base = Path(base)
    if not base.is_dir():
        return set()
    return {int(name) for name in os.listdir(base) if name.isdigit()}


def check_versions(base: str | Path) -> None:
    """Refuses an export's base folder that holds a numbered folder without its ``metadata.json``.

    digits-zoo renames a version to its number only once it is complete, so
    such a folder is not one of its own: TensorFlow Serving would still serve
    its number, newer than the versions beside it perhaps.

    Raises:
        ZooError: naming the first such folder.
    """
    for _, folder in version_folders(base):
        if not is_version(folder):
            raise ZooError(
                f"incomplete export version: a numbered folder without {METADATA}, which "
                f"TensorFlow Serving would still serve (got {str(folder)!r}); delete that "
                "folder, then rerun"
            )


def check_base_folder(base: Path) -> None:
    """Refuses an export's base folder that is a file, or a version folder rather than its parent.

    Raises:
        ZooError: saying which, and what to pass instead.
    """
    if base.exists() and not base.is_dir():
        raise ZooError(f"--out is a file (got {str(base)!r}); pass a folder for the export")
    if is_version(base) or (base / SAVED_MODEL).is_file():
        raise ZooError(
            f"--out is a version folder of an export (got {str(base)!r}); pass its parent, "
            "the base folder, so that the new export gets the next version number"
        )


def next_version(base: str | Path) -> int:
    """Returns the next free version number in an export's base folder (1 for a new one).

    Any numbered name counts, a file or a link too, so a number is never reused.
    """
    return max(taken_numbers(base), default=0) + 1


def publish_version(partial: Path, base: Path) -> tuple[Path, int]:
    """Renames a checked export to the next free version number; never overwrites one."""
    for _ in range(1000):
        version = next_version(base)
        target = base / str(version)
        if os.path.lexists(target):
            continue
        try:
            os.rename(partial, target)
        except OSError:
            # Another export took this number between the look and the rename.
            continue
        return target, version
    raise ZooError(f"could not find a free version number in {str(base)!r}")


def check_contained(root: str | Path, folder: str | Path) -> None:
    """Refuses ``folder`` (an export version) if it, or a link in it, leads outside ``root``.

    Args:
        root: the export folder the user named (base or version folder).
        folder: the version folder inside it.

    Raises:
        ZooError: naming the link.
    """
    root = Path(root).resolve()
    paths = [Path(folder)]
    for parent, folders, files in os.walk(folder):
        paths.extend(Path(parent) / name for name in (*folders, *files))
    for path in paths:
        resolved = path.resolve()
        if resolved != root and root not in resolved.parents:
            raise ZooError(
                f"a link in the export leads outside it, to {str(resolved)!r} (got "
                f"{str(path)!r}); remove the link or export again"
            )
