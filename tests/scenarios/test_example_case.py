"""The README's worked example (examples/case/) runs offline in the console: ops hands the deploy
to the deployer (a case of two runs), and one undo in ops' thread puts every file back."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "case"


def test_the_example_case_runs_in_the_console_and_one_undo_puts_every_file_back(tmp_path: Path) -> None:
    here = tmp_path / "case"
    shutil.copytree(EXAMPLE, here, ignore=shutil.ignore_patterns("work", "chatops.db*"))
    subprocess.run(["sh", "setup.sh"], cwd=here, check=True, capture_output=True)
    before = {p.name: p.read_text() for p in (here / "work").rglob("*.py")}
    lines = "transfer_to_deployer brief=deploy_staging\n/thread 1\nundo\n"
    done = subprocess.run(
        [str(Path(sys.executable).with_name("chatops")), "console"],
        cwd=here,
        input=lines,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "*ops* handed this to *deployer*" in done.stdout
    assert "ran the undo of deploy_staging" in done.stdout  # the deployer's step, undone from ops' thread
    assert not (here / "work" / "staging" / "checkout.py").exists()
    assert {p.name: p.read_text() for p in (here / "work").rglob("*.py")} == before
