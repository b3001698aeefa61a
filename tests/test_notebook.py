"""docs/notebook.ipynb runs from top to bottom, so the Python API example cannot rot.

The notebook is stored without outputs; this executes it in a fresh kernel of this very
interpreter (a kernelspec written into a temporary directory, so no other ``python3`` kernel on
the machine is picked up), from a temporary working directory with ``TMPDIR`` in the test's
temporary directory, and fails on any cell error.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parent.parent / "docs" / "notebook.ipynb"


def _kernel_manager(tmp: Path) -> KernelManager:
    """A ``python3`` kernel running ``sys.executable`` (the venv with liqsim and ipykernel)."""
    spec = tmp / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "Python 3 (liqsim tests)",
                "language": "python",
            }
        )
    )
    ksm = KernelSpecManager(kernel_dirs=[str(tmp / "kernels")])
    return KernelManager(kernel_name="python3", kernel_spec_manager=ksm)


def _text(cell) -> str:
    """All text a code cell printed or displayed."""
    parts = []
    for out in cell.get("outputs", []):
        if "text" in out:
            parts.append(out["text"])
        data = out.get("data", {})
        parts.extend(data[k] for k in ("text/plain", "text/html") if k in data)
    return "\n".join(parts)


def test_notebook_runs(tmp_path, monkeypatch):
    stored = nbformat.read(NOTEBOOK, as_version=4)
    for cell in stored.cells:  # kept without outputs, so diffs stay clean
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, (
                "docs/notebook.ipynb holds outputs: clear them before committing"
            )
    assert stored.metadata["kernelspec"]["name"] == "python3"

    nb = nbformat.read(NOTEBOOK, as_version=4)
    work, temp = tmp_path / "cwd", tmp_path / "tmp"
    work.mkdir()
    temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(temp))  # the kernel's tempfile writes here
    client = NotebookClient(
        nb,
        km=_kernel_manager(tmp_path),
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(work)}},
    )
    client.execute()  # raises CellExecutionError on any cell error

    cells = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in cells)
    errors = [o for c in cells for o in c.outputs if o.output_type == "error"]
    assert not errors

    (comparison,) = [c for c in cells if "comparison" in c.metadata.get("tags", [])]
    table = _text(comparison)
    for label in ("gas on", "gas off", "liquidations", "peak shortfall (USD)"):
        assert label in table, f"comparison table lacks {label!r}:\n{table}"

    figures = [o for c in cells for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(figures) >= 2, "the wave and the comparison plots should be drawn"
    assert list(work.iterdir()) == [], "the notebook wrote into its working directory"
    assert not list(temp.glob("liqsim-notebook-*")), "the notebook left its run folders behind"
    assert any(c.outputs and "liqsim-notebook-" in _text(c) for c in cells), "TMPDIR unused"
