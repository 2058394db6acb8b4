"""The models a server holds: every version of every export named on the command line.

Each argument of ``digits-zoo serve`` is one of

* an export's base folder (``RUN_DIR/export/<model>``): every version in it;
* one version folder (``RUN_DIR/export/<model>/2``): that version only;
* a run's ``export/`` folder, or the run directory itself: every export in it.

Each model is named as its base folder, as TensorFlow Serving names a model by
``--model_name``; requests without a version get the newest one. Every version
is loaded (and so checked) before the server starts; a base folder is then
watched for newer versions (:mod:`digits_zoo.serve.reload`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from digits_zoo.rundir import EXPORT_DIR, RUN_FILE
from digits_zoo.serve.batching import Batcher
from digits_zoo.serve.collect import COLLECTED, CollectFile
from digits_zoo.serve.errors import NotFound
from digits_zoo.serve.tfserving import signature_def
from digits_zoo.ship.layout import check_versions, is_version, version_folders
from digits_zoo.ship.load import LoadedExport, load_export
from zoo.errors import ZooError

_WHAT_TO_PASS = (
    "pass an export's base folder, one of its numbered versions, a run's export/ folder or "
    "the run directory"
)


@dataclass
class ExportSource:
    """One model found on the command line, before it is loaded.

    Attributes:
        name: the model's name (its base folder's name).
        versions: version number -> version folder.
        collect: where its drawn digits go unless ``--collect`` says otherwise.
        base: its base folder, watched for new versions; ``None`` when one
            version folder was named (that version only is served).
    """

    name: str
    versions: dict[int, Path]
    collect: Path
    base: Path | None = None


@dataclass
class ServedModel:
    """A model being served: its loaded versions and where its drawn digits are collected.

    A version is added whole by :meth:`add_version`: requests see it only once
    its export, signature and batcher are all in place.

    Attributes:
        name: the name in the URLs (``/v1/models/<name>``).
        versions: version number -> the loaded export.
        collect: the CSV its collected digits are appended to.
        signature_defs: version number -> its ``serving_default`` SignatureDef
            (TensorFlow Serving's JSON).
        base: the base folder watched for new versions (``None``: not watched).
        folder: what ``digits-zoo adapt`` is given to adapt this model: the
            base folder, or the one version folder served.
        batchers: version number -> the batcher its predict requests share.
        failed: version number -> why it failed to load (a newer version
            found while serving; see :mod:`digits_zoo.serve.reload`).
    """

    name: str
    versions: dict[int, LoadedExport]
    collect: CollectFile
    signature_defs: dict[int, dict[str, Any]] = field(default_factory=dict)
    base: Path | None = None
    folder: Path | None = None
    batchers: dict[int, Batcher] = field(default_factory=dict)
    failed: dict[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for number, export in self.versions.items():
            self.batchers.setdefault(number, Batcher(export))
            if number not in self.signature_defs:
                self.signature_defs[number] = signature_def(export)

    def add_version(self, number: int, export: LoadedExport, signature: dict[str, Any]) -> None:
        """Serves a loaded version; requests without a version get it if it is the newest.

        Each mapping is replaced by a new one, the versions last, so that a
        request running meanwhile (on another thread) sees the version whole
        or not at all.
        """
        self.signature_defs = {**self.signature_defs, number: signature}
        self.batchers = {**self.batchers, number: Batcher(export)}
        self.failed = {key: value for key, value in self.failed.items() if key != number}
        self.versions = {**self.versions, number: export}

    @property
    def newest(self) -> int:
        """The highest version number: the one a request without a version gets."""
        return max(self.versions)

    def get(self, version: int | None = None) -> tuple[int, LoadedExport]:
        """Returns ``(number, export)`` of a version; the newest when ``version`` is ``None``.

        Raises:
            NotFound: no such version is served.
        """
        number = self.newest if version is None else version
        if number not in self.versions:
            served = ", ".join(str(v) for v in sorted(self.versions))
            raise NotFound(
                f"model {self.name!r} has no version {number} (served versions: {served}); "
                "leave out /versions/N for the newest"
            )
        return number, self.versions[number]


def find_exports(argument: str | Path) -> list[ExportSource]:
    """Returns the models one ``EXPORT_DIR`` argument names, with their version folders.

    Raises:
        ZooError: no folder there, no export in it, or a numbered folder that
            is not a whole version.
    """
    path = Path(argument)
    if not path.is_dir():
        what = "not a folder" if path.exists() else "not found"
        raise ZooError(f"export folder {what} (got {str(path)!r}); {_WHAT_TO_PASS}")
    if is_version(path):
        if not path.name.isdigit():
            raise ZooError(
                f"a version folder is named by its number (got {str(path)!r}); {_WHAT_TO_PASS}"
            )
        base = path.resolve().parent
        return [ExportSource(base.name, {int(path.name): path.resolve()}, base / COLLECTED)]
    if version_folders(path):
        return [_base_source(path, path.resolve() / COLLECTED)]
    folder = path / EXPORT_DIR if (path / RUN_FILE).is_file() else path
    # The digits collected from a run's exports go into the run directory.
    collect_dir = folder.parent if (folder.parent / RUN_FILE).is_file() else folder
    bases = (
        sorted(
            child
            for child in folder.iterdir()
            if child.is_dir() and not child.name.startswith(".") and version_folders(child)
        )
        if folder.is_dir()
        else []
    )
    if not bases and (path / RUN_FILE).is_file():
        raise ZooError(
            f"the run directory has no export in its {EXPORT_DIR}/ folder (got {str(path)!r}); "
            "an export written elsewhere with 'digits-zoo export --out FOLDER' is served from "
            f"there: pass that FOLDER, or run 'digits-zoo export {path}' first"
        )
    if not bases:
        raise ZooError(f"no export found in {str(path)!r}; {_WHAT_TO_PASS}")
    return [_base_source(base, collect_dir.resolve() / COLLECTED) for base in bases]


def _base_source(base: Path, collect: Path) -> ExportSource:
    check_versions(base)
    base = base.resolve()
    return ExportSource(base.name, dict(version_folders(base)), collect, base)


def load_models(
    arguments: list[str | Path],
    collect: str | Path | None = None,
    progress: Callable[[str], None] = print,
) -> dict[str, ServedModel]:
    """Finds and loads every model the arguments name, and checks where digits are collected.

    Args:
        arguments: ``EXPORT_DIR`` arguments (see the module docstring).
        collect: one CSV for every model's collected digits (default: each
            export's or run's ``collected.csv``).
        progress: receives one line per model loaded.

    Returns:
        Name -> model, in the order given.

    Raises:
        ZooError: a bad argument, two models with one name, a damaged export, or
            a collect file that cannot take these models' rows.
    """
    sources: list[ExportSource] = []
    for argument in arguments:
        sources += find_exports(argument)
    seen: dict[str, ExportSource] = {}
    for source in sources:
        if source.name in seen:
            first, second = (
                str(next(iter(s.versions.values())).parent) for s in (seen[source.name], source)
            )
            raise ZooError(
                f"two exports are both named {source.name!r} (got {first!r} and {second!r}); a "
                "model is named by its folder: serve them apart or rename one"
            )
        seen[source.name] = source
    collect_files: dict[Path, CollectFile] = {}
    models: dict[str, ServedModel] = {}
    for source in sources:
        versions = {
            number: load_export(folder) for number, folder in sorted(source.versions.items())
        }
        newest = versions[max(versions)]
        path = Path(collect).resolve() if collect is not None else source.collect
        collect_file = collect_files.get(path)
        if collect_file is None:
            collect_file = CollectFile(path, newest.n_features, newest.pixel_max)
            collect_file.check()
            collect_files[path] = collect_file
        elif (collect_file.n_features, collect_file.pixel_max) != (
            newest.n_features,
            newest.pixel_max,
        ):
            raise ZooError(
                f"models of different image formats cannot share one collect file ({source.name!r} "
                f"takes {newest.n_features} pixels 0..{newest.pixel_max:g}, another "
                f"{collect_file.n_features} pixels 0..{collect_file.pixel_max:g}; got "
                f"{str(path)!r}); serve them apart or leave out --collect"
            )
        models[source.name] = ServedModel(
            source.name,
            versions,
            collect_file,
            base=source.base,
            folder=source.base or next(iter(source.versions.values())),
        )
        numbers = ", ".join(str(number) for number in versions)
        progress(
            f"loaded {source.name} (version{'s' if len(versions) > 1 else ''} {numbers}; "
            f"{newest.format}, {'x'.join(map(str, newest.image_shape))} pixels "
            f"0..{newest.pixel_max:g})"
        )
    return models


def lookup(models: dict[str, ServedModel], name: str) -> ServedModel:
    """Returns the served model of this name.

    Raises:
        NotFound: no model of that name is served.
    """
    model = models.get(name)
    if model is None:
        raise NotFound(
            f"unknown model (got {name!r}); this server serves {', '.join(map(repr, models))}"
        )
    return model
