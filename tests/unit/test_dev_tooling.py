"""The developer tooling stays true: the CI workflow passes actionlint and runs the README's test
command; pre-commit runs the checks of ``./recomart test`` from the project's venv; the static
checks report a failure in one line; the fast path's arguments and marker work."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from recomart.cli import parse_args
from recomart.config import load_settings
from recomart.static_checks import CheckResult, StaticCheck, report, run_check, select_checks
from recomart.tools import venv_bin

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"


def _actionlint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [venv_bin("actionlint"), "-no-color", str(path)], cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def test_ci_workflow_passes_actionlint() -> None:
    result = _actionlint(WORKFLOW)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_rejects_a_broken_workflow(tmp_path: Path) -> None:
    broken = WORKFLOW.read_text().replace("runs-on: ubuntu-latest", "runs-on: ubuntu-lastest")
    broken = broken.replace("${{ github.ref }}", "${{ github.reff }}")
    path = tmp_path / ".github" / "workflows" / "ci.yml"
    path.parent.mkdir(parents=True)
    path.write_text(broken)
    result = _actionlint(path)
    assert result.returncode == 1, result.stdout
    assert 'label "ubuntu-lastest" is unknown' in result.stdout
    assert '"reff" is not defined' in result.stdout


def test_ci_workflow_runs_the_readme_test_command_on_ubuntu_with_python_311() -> None:
    readme_commands = re.findall(r"^\./recomart test\b[^#\n]*", (ROOT / "README.md").read_text(), re.MULTILINE)
    assert "./recomart test" in [command.strip() for command in readme_commands]
    (job,) = yaml.safe_load(WORKFLOW.read_text())["jobs"].values()
    assert job["runs-on"].startswith("ubuntu-")
    steps = job["steps"]
    (setup,) = [step for step in steps if step.get("uses", "").startswith("actions/setup-python@")]
    assert str(setup["with"]["python-version"]) == "3.11"
    assert [step["run"] for step in steps if "run" in step] == ["./recomart test"]
    assert (ROOT / ".ci" / "run").read_text().rstrip().endswith("exec ./recomart test")


def test_pre_commit_runs_every_static_check_from_the_venv() -> None:
    subprocess.run([venv_bin("pre-commit"), "validate-config", ".pre-commit-config.yaml"], cwd=ROOT, check=True)
    (repo,) = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())["repos"]
    assert repo["repo"] == "local"  # nothing to download
    hooks = repo["hooks"]
    assert {hook["language"] for hook in hooks} == {"system"}
    assert all(hook["entry"].startswith(".venv/bin/") for hook in hooks)
    entries = " | ".join(hook["entry"] for hook in hooks)
    for tool in ("ruff format --check", "ruff check", "lint-imports", "mypy", "recomart.static_checks sqlfluff"):
        assert tool in entries, f"pre-commit does not run {tool}"


def test_static_checks_fast_path_and_selection(tmp_path: Path) -> None:
    s = load_settings({"RECOMART_STATE_DIR": str(tmp_path)})
    assert [check.name for check in select_checks(s, slow=False)] == ["ruff format", "ruff check", "import contracts"]
    assert [check.name for check in select_checks(s)][3:] == [
        "mypy",
        "sqlfluff (generated models)",
        "sqlfluff (uci models)",
    ]
    passes = select_checks(s, only=["sqlfluff"])
    assert [dict(check.env or {})["RECOMART_DATASET"] for check in passes] == ["generated", "uci"]
    for check in passes:
        env = dict(check.env or {})
        assert env["PGDATABASE"] == "postgres" and check.needs_postgres
        assert Path(env["DBT_TARGET_PATH"]).is_relative_to(tmp_path)  # never dbt_project/target


def test_a_failing_check_prints_its_output_and_one_line_with_the_fix(tmp_path: Path) -> None:
    (tmp_path / "ugly.py").write_text("x = {  'a':1 }\n")
    check = StaticCheck(
        "ruff format", ("ruff", "format", "--check", "--no-cache", "ugly.py"), "run ruff format", tmp_path
    )
    result = run_check(check)
    assert result.returncode == 1
    lines: list[str] = []
    report(result, lines.append)
    assert "1 file would be reformatted" in lines[0]
    assert lines[-1].startswith("static check FAILED: ruff format (") and lines[-1].endswith("): run ruff format")
    lines.clear()
    report(CheckResult(check, 0, "ignored", 1.25), lines.append)
    assert lines == ["static check passed: ruff format (1.2 s)"]


@pytest.mark.parametrize(
    ("argv", "no_static", "pytest_args"),
    [
        (["test"], False, []),
        (["test", "--no-static", "-m", "unit"], True, ["-m", "unit"]),
        (["test", "-m", "unit", "--no-static", "-q"], True, ["-m", "unit", "-q"]),
        (["test", "tests/unit", "-x"], False, ["tests/unit", "-x"]),
    ],
)
def test_test_command_arguments(argv: list[str], no_static: bool, pytest_args: list[str]) -> None:
    args = parse_args(argv)
    assert (args.no_static, args.pytest_args) == (no_static, pytest_args)


def test_tests_under_unit_are_marked_unit(request: pytest.FixtureRequest) -> None:
    assert request.node.get_closest_marker("unit") is not None
