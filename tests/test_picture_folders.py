"""Tests of picture folders as data and of several data sources combined into one training set."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from sklearn.datasets import load_digits

import zoo.data
from digits_zoo.cli import build_parser
from digits_zoo.runs import load_run, open_run
from search.spec import SearchContext
from zoo.data import load_dataset, read_picture_folder
from zoo.errors import DataError, ZooError
from zoo.pictures import image_to_pixels, recipe_from_counts

DIGITS = load_digits()


def picture(index: int) -> Image.Image:
    """Bundled digit ``index`` drawn as a 32x32 picture: dark ink on white paper."""
    grey = (255 - DIGITS.images[index] * 255 / 16).astype("uint8")
    return Image.fromarray(grey).resize((32, 32), Image.Resampling.NEAREST)


def write_pictures(folder: Path, per_class: int = 4, start: int = 0) -> Path:
    """A picture folder of ``per_class`` bundled digits per class, ``folder/<class>/<i>.png``."""
    counts: dict[int, int] = {}
    for index in range(start, len(DIGITS.target)):
        label = int(DIGITS.target[index])
        if counts.get(label, 0) == per_class:
            continue
        counts[label] = counts.get(label, 0) + 1
        (folder / str(label)).mkdir(parents=True, exist_ok=True)
        picture(index).save(folder / str(label) / f"{index}.png")
        if len(counts) == 10 and set(counts.values()) == {per_class}:
            break
    return folder


def test_a_picture_folder_loads_as_8x8_counts_split_by_class(tmp_path):
    folder = write_pictures(tmp_path / "mine", per_class=5)
    (folder / "3" / ".DS_Store").write_bytes(b"\0junk")
    dataset = load_dataset(folder, test_size=0.2, seed=0)
    assert dataset.image_shape == (8, 8) and dataset.pixel_max == 16.0
    assert dataset.classes == list(range(10))
    assert (len(dataset.y_train), len(dataset.y_test)) == (40, 10)
    assert sorted(np.bincount(dataset.y_test)) == [1] * 10
    x, y = read_picture_folder(folder)
    # Each row is the picture recipe's own conversion of its file, labelled by its folder.
    first = sorted((folder / "0").iterdir())[0]
    with Image.open(first) as image:
        np.testing.assert_array_equal(x[0], image_to_pixels(image, (8, 8), 16.0))
    assert y[0] == 0 and x.max() <= 16 and x.min() >= 0


def _empty(folder: Path) -> Path:
    (folder / "empty").mkdir()
    return folder / "empty"


def _not_a_class(folder: Path) -> Path:
    write_pictures(folder / "mine", per_class=2)
    (folder / "mine" / "seven").mkdir()
    picture(7).save(folder / "mine" / "seven" / "a.png")
    return folder / "mine"


def _not_a_picture(folder: Path) -> Path:
    write_pictures(folder / "mine", per_class=2)
    (folder / "mine" / "4" / "notes.txt").write_text("a four\n")
    return folder / "mine"


def _damaged_picture(folder: Path) -> Path:
    write_pictures(folder / "mine", per_class=2)
    (folder / "mine" / "4" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return folder / "mine"


def _blank_picture(folder: Path) -> Path:
    write_pictures(folder / "mine", per_class=2)
    Image.new("L", (20, 20), 255).save(folder / "mine" / "2" / "blank.png")
    return folder / "mine"


def _file_beside_the_classes(folder: Path) -> Path:
    write_pictures(folder / "mine", per_class=2)
    picture(0).save(folder / "mine" / "loose.png")
    return folder / "mine"


def _no_pictures(folder: Path) -> Path:
    for label in range(3):
        (folder / "mine" / str(label)).mkdir(parents=True)
    return folder / "mine"


BAD_FOLDERS = [
    (_empty, "is empty"),
    (_not_a_class, "subfolder 'seven' is not a class"),
    (_not_a_picture, "'4/notes.txt' is not a picture (got a .txt file)"),
    (_damaged_picture, "'4/broken.png' is not a readable picture"),
    (_blank_picture, "'2/blank.png': no digit visible"),
    (_file_beside_the_classes, "'loose.png' is a file beside the class folders"),
    (_no_pictures, "its class folders hold no pictures"),
]


@pytest.mark.parametrize(
    ("make", "message"), BAD_FOLDERS, ids=[make.__name__.strip("_") for make, _ in BAD_FOLDERS]
)
def test_a_bad_picture_folder_raises_one_clear_line(tmp_path, make, message):
    with pytest.raises(DataError) as raised:
        load_dataset(make(tmp_path))
    text = str(raised.value)
    assert message in text and "\n" not in text


def test_a_picture_folder_with_too_many_files_is_refused_before_decoding(tmp_path, monkeypatch):
    folder = write_pictures(tmp_path / "mine", per_class=2)
    monkeypatch.setattr(zoo.data, "MAX_PICTURES", 5)
    (folder / "1" / "not-even-read.txt").write_text("x")
    with pytest.raises(DataError, match="holds more than 5 files"):
        load_dataset(folder)


def write_csv(path: Path, x: np.ndarray, y: np.ndarray) -> Path:
    np.savetxt(path, np.column_stack([x, y]), fmt="%d", delimiter=",")
    return path


def test_later_sources_add_training_rows_and_leave_the_test_split_alone(tmp_path):
    alone = load_dataset("digits", seed=0)
    pictures = write_pictures(tmp_path / "mine", per_class=3)
    rows = write_csv(tmp_path / "collected.csv", DIGITS.data[:7], DIGITS.target[:7])
    combined = load_dataset(["digits", pictures, rows], seed=0)
    np.testing.assert_array_equal(combined.x_test, alone.x_test)
    np.testing.assert_array_equal(combined.y_test, alone.y_test)
    assert len(combined.y_train) == len(alone.y_train) + 30 + 7
    np.testing.assert_array_equal(combined.x_train[: len(alone.y_train)], alone.x_train)
    np.testing.assert_array_equal(combined.x_train[-7:], DIGITS.data[:7])
    assert combined.describe()["added"] == [
        {"name": str(pictures), "rows": 30},
        {"name": str(rows), "rows": 7},
    ]
    assert "added" not in alone.describe()
    assert combined.fingerprint() != alone.fingerprint()


def test_a_later_picture_folder_is_drawn_as_thick_as_the_first_sources_digits(tmp_path):
    alone = load_dataset("digits", seed=0)
    pictures = write_pictures(tmp_path / "mine", per_class=1)
    # A thin pen's 0: a one-pixel ring on a 64x64 page.
    thin = Image.new("L", (64, 64), 255)
    ImageDraw.Draw(thin).ellipse((16, 6, 48, 58), outline=0, width=1)
    thin.save(pictures / "0" / "thin.png")
    combined = load_dataset(["digits", pictures], seed=0)
    recipe = recipe_from_counts(alone.x_train, alone.image_shape, alone.pixel_max)
    matched = image_to_pixels(thin, (8, 8), 16.0, recipe)
    plain = image_to_pixels(thin, (8, 8), 16.0)
    added = combined.x_train[len(alone.y_train) :]
    assert any(np.array_equal(row, matched) for row in added)
    assert not any(np.array_equal(row, plain) for row in added)
    # The matched strokes carry more of the training images' share of ink than the plain ones.
    matched_gap = abs(matched.mean() / 16.0 - recipe.ink_fraction)
    plain_gap = abs(plain.mean() / 16.0 - recipe.ink_fraction)
    assert matched_gap < plain_gap - 0.05, (matched_gap, plain_gap)


def test_a_later_source_of_another_format_or_class_is_refused(tmp_path):
    wide = write_csv(tmp_path / "wide.csv", np.full((4, 784), 200), np.arange(4))
    with pytest.raises(DataError, match="rows hold 784 pixels but digits's images have 64"):
        load_dataset(["digits", wide])
    grey = write_csv(tmp_path / "grey.csv", DIGITS.data[:20] * 15, DIGITS.target[:20])
    with pytest.raises(DataError, match=r"pixels range over 0..255 but digits's over 0..16"):
        load_dataset(["digits", grey])
    other = write_csv(tmp_path / "other.csv", DIGITS.data[:3], [1, 2, 12])
    with pytest.raises(DataError, match=r"labels \[12\] are not among"):
        load_dataset(["digits", other])


def test_a_later_source_holding_the_test_digits_is_refused():
    # The bundled digits are optdigits' test part.
    with pytest.raises(DataError, match="1437 of its 1437 digits are digits of optdigits's test"):
        load_dataset(["optdigits", "digits"])


def test_data_is_repeatable_on_the_command_line():
    args = build_parser().parse_args(["baselines", "--data", "optdigits", "--data", "mine/"])
    assert args.data == ["optdigits", "mine/"]
    assert build_parser().parse_args(["baselines"]).data is None


def test_a_run_records_every_source_and_rebuilds_the_same_data(tmp_path):
    pictures = write_pictures(tmp_path / "mine", per_class=2)
    run = open_run(tmp_path / "run", ["digits", pictures], n_folds=2)
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    assert meta["data"] == ["digits", str(pictures.resolve())]
    assert meta["dataset"]["added"] == [{"name": str(pictures.resolve()), "rows": 20}]
    reloaded = load_run(tmp_path / "run")
    assert reloaded.dataset.fingerprint() == run.dataset.fingerprint()
    np.testing.assert_array_equal(reloaded.folds[0][0], run.folds[0][0])
    # The search's workers rebuild it from what the search records.
    source = {"data": meta["data"], "test_size": 0.2, "folds": 2, "seed": 0}
    context = SearchContext.from_source(tmp_path / "run", source)
    assert context.dataset.fingerprint() == run.dataset.fingerprint()
    # Resuming with the same sources is fine; with other ones (or fewer) it is refused.
    assert open_run(tmp_path / "run", ["digits", pictures], n_folds=2).meta == run.meta
    with pytest.raises(ZooError, match="holds a run with another dataset"):
        open_run(tmp_path / "run", ["digits"], n_folds=2)
    with pytest.raises(ZooError, match="holds a run with another dataset"):
        open_run(tmp_path / "run", None, n_folds=2)
