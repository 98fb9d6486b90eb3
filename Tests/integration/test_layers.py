"""The folder dependency order (README, "Source layout") and its checker,
scripts/check_layers.py: the tree keeps the order, and the checker fails
on a use that breaks it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHECKER = ROOT / "scripts" / "check_layers.py"
SOURCES = ROOT / "Sources" / "Singyeong"

def run(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(CHECKER), "--root", str(root), *args],
                          capture_output=True, text=True, timeout=60)


def broken_pairs(root: Path) -> set[tuple[str, str]]:
    report = run(root, "--report")
    assert report.returncode == 0, report.stderr
    pairs = set()
    for line in report.stdout.splitlines():
        user, arrow, owner, verdict, *_ = line.split()
        assert arrow == "->"
        if verdict == "BAD":
            pairs.add((user, owner))
    return pairs


def test_the_tree_keeps_the_order():
    assert broken_pairs(SOURCES) == set()
    result = run(SOURCES)
    assert result.returncode == 0 and result.stdout == "", result.stdout


def copy_of_sources(tmp_path: Path) -> Path:
    copy = tmp_path / "Singyeong"
    shutil.copytree(SOURCES, copy)
    return copy


def test_a_use_from_above_fails(tmp_path):
    """A Loop file that names a Gateway type: the checker exits 1 and names
    the file, the line, the type and both folders."""
    copy = copy_of_sources(tmp_path)
    (copy / "Loop" / "Wrong.swift").write_text(
        "/// Deliberately wrong: the loop must not know the gateway.\n"
        "// GatewaySession in a comment does not count, nor in \"GatewaySession\".\n"
        "final class Wrong {\n    weak var session: GatewaySession?\n}\n")
    result = run(copy)
    assert result.returncode == 1
    wrong = [line for line in result.stdout.splitlines() if "Wrong.swift" in line]
    assert wrong == [f"{copy / 'Loop' / 'Wrong.swift'}:4: uses GatewaySession from Gateway/, which is above Loop/"]


def test_a_use_on_the_same_layer_fails(tmp_path):
    """Folders on one layer may not use each other: Config naming a Metrics type."""
    copy = copy_of_sources(tmp_path)
    (copy / "Config" / "Wrong.swift").write_text("/// Deliberately wrong.\nenum Wrong { static var m: Metrics? }\n")
    result = run(copy)
    assert result.returncode == 1
    assert f"{copy / 'Config' / 'Wrong.swift'}:2: uses Metrics from Metrics/, which is on the same layer as Config/" \
        in result.stdout.splitlines()


def test_a_use_from_below_passes(tmp_path):
    """Node may use anything; a new Node file adds no problem line."""
    copy = copy_of_sources(tmp_path)
    before = run(copy).stdout
    (copy / "Node" / "Fine.swift").write_text("/// Fine.\nenum Fine { static var loop: EventLoop? }\n")
    assert run(copy).stdout == before


def test_an_unknown_folder_fails(tmp_path):
    copy = copy_of_sources(tmp_path)
    (copy / "Elsewhere").mkdir()
    (copy / "Elsewhere" / "X.swift").write_text("enum X {}\n")
    result = run(copy)
    assert result.returncode == 1
    assert "folder 'Elsewhere' has no layer" in result.stdout
