"""`ballast crds`: write or check the generated CRDs (crds/ and the chart's templates), the admission policies
and the README field reference."""

from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path

from ballast.api.admission_policy import POLICY_FILE, render_policy
from ballast.api.crd import CHART_CRD_FOLDER, rendered_chart_crds, rendered_crds
from ballast.api.reference import replace_reference


def generated_files(root: Path) -> dict[Path, str]:
    """Every generated file under `root` and the text it must have."""
    files = {root / "crds" / name: text for name, text in rendered_crds().items()}
    files.update({root.joinpath(*CHART_CRD_FOLDER, name): text for name, text in rendered_chart_crds().items()})
    files[root / "charts" / "ballast" / "files" / POLICY_FILE] = render_policy()
    readme = root / "README.md"
    if readme.exists():
        files[readme] = replace_reference(readme.read_text(encoding="utf-8"))
    return files


def stale_files(root: Path) -> list[tuple[Path, str]]:
    """(file, unified diff) for each generated file that differs from the models."""
    stale = []
    for path, expected in generated_files(root).items():
        actual = path.read_text(encoding="utf-8") if path.exists() else ""
        if actual != expected:
            diff = difflib.unified_diff(
                actual.splitlines(keepends=True),
                expected.splitlines(keepends=True),
                fromfile=f"{path} (on disk)",
                tofile=f"{path} (from the models)",
                n=1,
            )
            stale.append((path, "".join(diff)))
    return stale


def run(args: argparse.Namespace) -> int:
    root = Path(args.root)
    if args.check:
        stale = stale_files(root)
        for path, diff in stale:
            print(f"stale: {path} differs from the models; run `ballast crds` and commit the result", file=sys.stderr)
            print(diff[:4000], file=sys.stderr)
        if not stale:
            print(
                f"ok: crds/, the chart's CRD templates, the admission policies and the README field reference under"
                f" {root} match the models"
            )
        return 1 if stale else 0
    for path, text in generated_files(root).items():
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "crds", help="write crds/, the chart's CRDs and policies and the README field reference from the models"
    )
    parser.add_argument("--root", default=".", help="project root holding crds/ and README.md (default: .)")
    parser.add_argument("--check", action="store_true", help="exit 1 naming each stale file instead of writing")
    parser.set_defaults(func=run)
