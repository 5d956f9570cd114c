"""The `ballast` command: crds --check, validate, and the module entry point."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ballast.api.modeldeployment import Fallback
from ballast.cli.main import main
from tests.examples import EXAMPLES, invalid_examples

ROOT = Path(__file__).resolve().parents[2]


CHART_CRDS = Path("charts", "ballast", "templates", "crds")


def _copy_generated(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "crds", tmp_path / "crds")
    shutil.copytree(ROOT / "charts", tmp_path / "charts")
    shutil.copy(ROOT / "README.md", tmp_path / "README.md")
    return tmp_path


def test_crds_check_passes_on_the_repository(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["crds", "--check", "--root", str(ROOT)]) == 0
    assert "match the models" in capsys.readouterr().out


def test_crds_check_names_the_stale_file_after_a_model_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _copy_generated(tmp_path)
    monkeypatch.setattr(Fallback.model_fields["name"], "description", "A changed description.")
    assert main(["crds", "--check", "--root", str(root)]) == 1
    err = capsys.readouterr().err
    assert f"stale: {root / 'crds' / 'ballast.dev_modeldeployments.yaml'} differs from the models" in err
    assert f"stale: {root / CHART_CRDS / 'ballast.dev_modeldeployments.yaml'} differs from the models" in err
    assert f"stale: {root / 'README.md'}" in err
    assert "killswitches" not in err
    assert "+" in err  # the diff shows the change


def test_crds_writes_what_check_then_accepts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _copy_generated(tmp_path)
    monkeypatch.setattr(Fallback.model_fields["name"], "description", "A changed description.")
    assert main(["crds", "--root", str(root)]) == 0
    assert "A changed description." in (root / "crds" / "ballast.dev_modeldeployments.yaml").read_text()
    assert "A changed description." in (root / CHART_CRDS / "ballast.dev_modeldeployments.yaml").read_text()
    assert main(["crds", "--check", "--root", str(root)]) == 0


def test_crds_check_fails_when_the_chart_lacks_a_crd(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _copy_generated(tmp_path)
    (root / CHART_CRDS / "ballast.dev_clusterkillswitches.yaml").unlink()
    assert main(["crds", "--check", "--root", str(root)]) == 1
    assert f"{CHART_CRDS / 'ballast.dev_clusterkillswitches.yaml'} differs" in capsys.readouterr().err


def test_crds_check_fails_when_a_crd_is_missing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _copy_generated(tmp_path)
    (root / "crds" / "ballast.dev_killswitches.yaml").unlink()
    assert main(["crds", "--check", "--root", str(root)]) == 1
    assert "ballast.dev_killswitches.yaml differs" in capsys.readouterr().err


def test_validate_accepts_the_valid_examples(capsys: pytest.CaptureFixture[str]) -> None:
    files = sorted(str(p) for p in EXAMPLES.glob("*.yaml"))
    assert main(["validate", *files]) == 0
    assert capsys.readouterr().out.count("valid") == len(files)


@pytest.mark.parametrize("example", invalid_examples()[:5], ids=lambda e: e.path.stem)
def test_validate_rejects_with_the_field_path(example: object, capsys: pytest.CaptureFixture[str]) -> None:
    path = example.path  # type: ignore[attr-defined]
    assert main(["validate", str(path)]) == 1
    err = capsys.readouterr().err
    assert example.expected in err  # type: ignore[attr-defined]
    assert str(path) in err


def test_validate_skips_other_kinds_but_refuses_files_without_ballast_resources(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    only_other = tmp_path / "ns.yaml"
    only_other.write_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n")
    assert main(["validate", str(only_other)]) == 1
    assert "no Ballast resources found" in capsys.readouterr().err
    mixed = tmp_path / "mixed.yaml"
    mixed.write_text(only_other.read_text() + "---\n" + (EXAMPLES / "killswitch.yaml").read_text())
    assert main(["validate", str(mixed)]) == 0


def test_validate_reports_wrong_versions_and_unreadable_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("apiVersion: ballast.dev/v1\nkind: KillSwitch\nmetadata: {name: a}\nspec: {}\n")
    broken = tmp_path / "broken.yaml"
    broken.write_text("spec: [unclosed\n")
    assert main(["validate", str(wrong), str(broken)]) == 1
    err = capsys.readouterr().err
    assert 'no kind "KillSwitch" is registered for version "ballast.dev/v1"' in err
    assert "broken.yaml: cannot read" in err


def test_python_dash_m_ballast_runs_the_cli() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ballast", "validate", str(EXAMPLES / "killswitch.yaml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "1 valid" in result.stdout
