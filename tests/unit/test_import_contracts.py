"""The import contracts hold, and they can fail.

`lint-imports` (pyproject.toml's contracts) runs on a copy of ``include/recomart`` into which one
violation is injected: an upward import (absolute, relative, or inside a function), a cycle, or a
package the contracts do not place. Each must break the contracts; the untouched copy must keep
them. The DAG folder is not a package, so its imports are checked here from the source.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"

# (file to edit, text appended to it, what the contracts must report)
VIOLATIONS = {
    "upward import": ("ranking/base.py", "from recomart.model import config\n", "recomart.ranking.base -> recomart"),
    "relative upward import": ("ranking/base.py", "from ..model import config\n", "recomart.ranking.base -> recomart"),
    "upward import inside a function": (
        "model/split.py",
        "def _late():\n    from recomart.recommend import run\n\n    return run\n",
        "recomart.model.split -> recomart.recommend",
    ),
    "cycle inside a layer": ("config.py", "from recomart import tools\n", "No cycles are allowed in recomart.\n"),
    "cycle inside a package": (
        "ranking/base.py",
        "from recomart.ranking import hybrid\n",
        "No cycles are allowed in recomart.ranking.\n",
    ),
    "package not placed in the contracts": ("unplaced/__init__.py", "", "recomart.unplaced"),
}


def _lint_copy(tmp_path: Path, edit: tuple[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`lint-imports` with the repository's contracts on a copy of the package, after ``edit``
    (relative path, text to append) is applied to the copy."""
    shutil.copytree(ROOT / "include" / "recomart", tmp_path / "recomart", ignore=shutil.ignore_patterns("__pycache__"))
    if edit is not None:
        target = tmp_path / "recomart" / edit[0]
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("a") as handle:
            handle.write("\n" + edit[1])
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}  # the copy shadows the editable install
    return subprocess.run(
        [str(LINT_IMPORTS), str(ROOT / "pyproject.toml"), "--no-cache", "--no-logo"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_untouched_copy_keeps_the_contracts(tmp_path: Path) -> None:
    result = _lint_copy(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize("violation", sorted(VIOLATIONS))
def test_injected_violation_breaks_the_contracts(tmp_path: Path, violation: str) -> None:
    path, text, reported = VIOLATIONS[violation]
    result = _lint_copy(tmp_path, (path, text))
    output = result.stdout + result.stderr
    assert result.returncode != 0, f"{violation} went unnoticed:\n{output}"
    assert "BROKEN" in output, output
    assert reported in output, output


# --- dags/: the DAG files are thin; they reach RecoMart only through these modules ---------------
DAG_ALLOWED = ("recomart.tasks", "recomart.config", "recomart.alerts", "recomart.errors", "recomart_dag_utils")


def recomart_imports(source: str) -> list[str]:
    """Every module a Python source imports whose name starts with ``recomart`` (absolute imports;
    a relative import is reported as ``.<module>``), in source order."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if alias.name.startswith("recomart")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                found.append("." * node.level + (node.module or ""))
            elif node.module and node.module.startswith("recomart"):
                found += [f"{node.module}.{alias.name}" for alias in node.names]
    return found


def disallowed_dag_imports(source: str) -> list[str]:
    """The imports of a DAG-folder source outside :data:`DAG_ALLOWED` (relative imports are allowed
    only inside ``recomart_dag_utils``, which the caller checks by path)."""
    return [
        name
        for name in recomart_imports(source)
        if not name.startswith(".") and not any(name == a or name.startswith(a + ".") for a in DAG_ALLOWED)
    ]


def test_dag_folder_imports_only_tasks_config_alerts_errors() -> None:
    sources = sorted((ROOT / "dags").rglob("*.py"))
    assert sources, "no DAG files found"
    offenders = {
        str(path.relative_to(ROOT)): bad for path in sources if (bad := disallowed_dag_imports(path.read_text()))
    }
    relative = {
        str(path.relative_to(ROOT)): names
        for path in sources
        if "recomart_dag_utils" not in path.parts
        and (names := [n for n in recomart_imports(path.read_text()) if n.startswith(".")])
    }
    assert not offenders, f"DAG files may import only {DAG_ALLOWED}: {offenders}"
    assert not relative, f"DAG files use relative imports: {relative}"


def test_dag_import_check_flags_a_model_import() -> None:
    source = "def body():\n    from recomart.model.train import fit\n    import recomart.marts\n"
    assert disallowed_dag_imports(source) == ["recomart.model.train.fit", "recomart.marts"]
    assert disallowed_dag_imports("from recomart.tasks.train import train_and_register\n") == []
