"""The study notebooks: stored executed, built on the library, and each runs end to end.

Execution uses the quick budget (``DIGITS_ZOO_QUICK=1``) and a kernel spec
written to a temporary folder that starts this interpreter, so the test needs
no kernel installed anywhere: the one ``notebooks/run.py`` (``make notebooks``)
writes for its full runs.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"


def _load_runner():
    # notebooks/ is a folder of notebooks, not a package: load its runner by path.
    spec = importlib.util.spec_from_file_location("notebooks_run", NOTEBOOKS_DIR / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


runner = _load_runner()
NOTEBOOKS = runner.notebooks()
# What each notebook leaves in its working directory, beyond its figures.
WRITES = {
    "04_search_and_ship": [
        "runs/notebook-quick/leaderboard.csv",
        "runs/notebook-quick/trials.csv",
        "runs/notebook-quick/report/index.html",
        "runs/notebook-quick/export/*/1/saved_model.pb",
        "hand_drawn_7.png",
    ],
}
# Each notebook draws at least this many figures, on either budget.
MIN_FIGURES = 4
# A notebook's figures stay small enough to review in a diff and to load in a browser.
MAX_STORED_BYTES = 1_000_000
# A path of the machine a notebook ran on: a temporary folder, a home, a checkout.
LOCAL_PATH = re.compile(r"(?<![\w.~])/(?:tmp|work|root|home|Users|private|var)/|\b[A-Za-z]:\\")
# Building or training a model inside a notebook: the notebooks call zoo and search instead.
MODEL_CODE = re.compile(
    r"^\s*class\s|keras\.(layers|Sequential|Model\b)|\bSequential\(|\bDense\(|"
    r"from sklearn\.(ensemble|neighbors|tree|svm|linear_model|neural_network)|\bimport keras\b",
    re.MULTILINE,
)


def _output_texts(outputs) -> list[str]:
    # What a reader sees as text: streams, and every text form of results and displays.
    texts = [output.text for output in outputs if output.output_type == "stream"]
    for output in outputs:
        for kind, value in output.get("data", {}).items():
            if kind.startswith("text/"):
                texts.append(value if isinstance(value, str) else "".join(value))
    return texts


def _code(path: Path) -> list[str]:
    notebook = nbformat.read(path, as_version=4)
    return [cell.source for cell in notebook.cells if cell.cell_type == "code"]


def test_the_study_notebooks_are_all_there():
    assert [path.name for path in NOTEBOOKS] == [
        "01_data.ipynb",
        "02_classic_models.ipynb",
        "03_dense_networks.ipynb",
        "04_search_and_ship.ipynb",
        "05_new_writers.ipynb",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_is_stored_executed(path):
    # Stored as `make notebooks` leaves it: every code cell run once, in order, with no
    # error, the figures in, and nothing in the outputs that names the machine it ran on.
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    assert notebook.cells[0].cell_type == "markdown"
    assert notebook.cells[0].source.startswith("# ")
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert [cell.execution_count for cell in code_cells] == list(range(1, len(code_cells) + 1))
    outputs = [output for cell in code_cells for output in cell.outputs]
    assert not [output for output in outputs if output.output_type == "error"]
    assert not [output for output in outputs if output.get("name") == "stderr"]
    assert not [cell for cell in notebook.cells if "execution" in cell.metadata]
    figures = [output for output in outputs if "image/png" in output.get("data", {})]
    assert len(figures) >= MIN_FIGURES, f"{path.name} holds {len(figures)} figures"
    for text in _output_texts(outputs):
        assert LOCAL_PATH.search(text) is None, LOCAL_PATH.search(text)
    assert path.stat().st_size < MAX_STORED_BYTES, f"{path.name}: {path.stat().st_size} bytes"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_reads_the_budget_and_defines_no_models(path):
    code = "\n".join(_code(path))
    assert 'os.environ.get("DIGITS_ZOO_QUICK"' in code
    assert MODEL_CODE.search(code) is None, MODEL_CODE.search(code)
    assert "from zoo import" in code or "from search" in code


@pytest.fixture(scope="module")
def kernel_environment(tmp_path_factory) -> dict[str, str]:
    """Environment variables for a kernel that runs this interpreter on the quick budget."""
    environment = runner.kernel_environment(tmp_path_factory.mktemp("jupyter"), quick=True)
    # Compiled XLA programs are shared between folds of one architecture; this
    # only saves time, the numbers are the same.
    environment["JAX_COMPILATION_CACHE_DIR"] = str(tmp_path_factory.mktemp("jax-cache"))
    environment["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    return environment


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_runs_end_to_end(path, kernel_environment, tmp_path, monkeypatch):
    for name, value in kernel_environment.items():
        monkeypatch.setenv(name, value)
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        kernel_name=runner.KERNEL_NAME,
        timeout=600,
        startup_timeout=180,
        resources={"metadata": {"path": str(tmp_path)}},
    )

    client.execute()

    outputs = [output for cell in notebook.cells for output in cell.get("outputs", [])]
    assert not [output for output in outputs if output.output_type == "error"]
    figures = [output for output in outputs if "image/png" in output.get("data", {})]
    assert len(figures) >= MIN_FIGURES, f"{path.name} drew {len(figures)} figures"
    for pattern in WRITES.get(path.stem, []):
        assert list(tmp_path.glob(pattern)), f"{path.name} wrote no {pattern}"
