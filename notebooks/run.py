"""Executes the study notebooks in place on the full budget: `make notebooks`.

Usage: ``.venv/bin/python notebooks/run.py [NOTEBOOK ...]`` (all five when none is named).

Each notebook runs in a kernel that starts this interpreter (a kernel spec written to a
temporary folder, so no kernel needs installing), with a scratch folder as its working
directory: the runs and pictures a notebook writes stay out of the repository. What is
written back holds what a reader needs (execution counts, text, tables and figures) and
leaves out what changes from run to run without meaning anything: execution timing, the
kernel's version details, the stderr streams (library warnings, progress) and TensorFlow's
log lines.

The test suite (``tests/test_notebooks.py``) builds its kernel with :func:`kernel_environment`
and runs the same notebooks on the quick budget.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOKS_DIR = Path(__file__).resolve().parent
KERNEL_NAME = "digits-zoo-notebooks"
# TensorFlow's Python logger writes to stdout in a kernel (an interactive session); its lines
# (such as the temporary folder of a SavedModel's assets) are progress, not results.
LOG_LINE = re.compile(r"^(?:INFO|WARNING):tensorflow:.*\n?", re.MULTILINE)
# No cell of a full run should take longer than this (notebook 4's search takes the longest).
CELL_TIMEOUT_SECONDS = 3 * 60 * 60


def notebooks() -> list[Path]:
    """Returns the study notebooks, in reading order."""
    return sorted(NOTEBOOKS_DIR.glob("*.ipynb"))


def kernel_environment(root: Path, *, quick: bool) -> dict[str, str]:
    """Writes a kernel spec that starts this interpreter, and returns the kernel's environment.

    Args:
        root: An empty folder for the kernel spec (it becomes ``JUPYTER_PATH``).
        quick: Whether the notebooks run on the quick budget (``DIGITS_ZOO_QUICK=1``).

    Returns:
        Environment variables to set before starting a kernel named ``KERNEL_NAME``.
    """
    spec = root / "kernels" / KERNEL_NAME
    spec.mkdir(parents=True)
    kernel = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "digits-zoo notebooks",
        "language": "python",
    }
    (spec / "kernel.json").write_text(json.dumps(kernel), encoding="utf-8")
    return {
        "JUPYTER_PATH": str(root),
        "DIGITS_ZOO_QUICK": "1" if quick else "0",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "TF_ENABLE_ONEDNN_OPTS": "0",
    }


def strip_volatile(notebook: nbformat.NotebookNode, metadata: dict) -> None:
    """Leaves out what changes between runs without meaning: timing, stderr, kernel details.

    Args:
        notebook: The executed notebook, changed in place.
        metadata: The notebook's metadata as stored before the run, put back unchanged.
    """
    notebook.metadata = nbformat.from_dict(metadata)
    for cell in notebook.cells:
        cell.metadata.pop("execution", None)
        if cell.cell_type != "code":
            continue
        outputs = []
        for output in cell.outputs:
            if output.output_type == "stream":
                if output.name == "stderr":
                    continue
                output.text = LOG_LINE.sub("", output.text)
                if not output.text:
                    continue
            previous = outputs[-1] if outputs else None
            # One print after another is one block of text, as a viewer shows it.
            if (
                output.output_type == "stream"
                and previous is not None
                and previous.output_type == "stream"
                and previous.name == output.name
            ):
                previous.text += output.text
            else:
                outputs.append(output)
        cell.outputs = outputs


def execute_in_place(path: Path, environment: dict[str, str], workdir: Path) -> float:
    """Executes one notebook with ``workdir`` as its working directory and writes it back.

    Returns:
        The wall time of the run, in seconds.
    """
    notebook = nbformat.read(path, as_version=4)
    metadata = json.loads(json.dumps(notebook.metadata))
    client = NotebookClient(
        notebook,
        kernel_name=KERNEL_NAME,
        timeout=CELL_TIMEOUT_SECONDS,
        startup_timeout=180,
        record_timing=False,
        resources={"metadata": {"path": str(workdir)}},
    )
    start = time.monotonic()
    # The kernel inherits this process's environment.
    saved = {name: os.environ.get(name) for name in environment}
    os.environ.update(environment)
    try:
        client.execute()
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    elapsed = time.monotonic() - start
    strip_volatile(notebook, metadata)
    nbformat.validate(notebook)
    nbformat.write(notebook, path)
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "notebooks", nargs="*", type=Path, help="notebooks to run (default: all five)"
    )
    args = parser.parse_args(argv)
    paths = args.notebooks or notebooks()
    with tempfile.TemporaryDirectory(prefix="digits-zoo-notebooks-") as scratch:
        environment = kernel_environment(Path(scratch) / "jupyter", quick=False)
        workdir = Path(scratch) / "work"
        workdir.mkdir()
        for path in paths:
            print(f"{path.name}: running", flush=True)
            elapsed = execute_in_place(path, environment, workdir)
            size = path.stat().st_size
            print(f"{path.name}: {elapsed / 60:.1f} min, {size / 1024:.0f} kB", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
