"""The editable install README documents: twistd finds the plugin, edits show without a
reinstall, and the repository's own plugins load."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.twistd_process import REPO

pytestmark = pytest.mark.slow

# README's contributor install, without its extras (the test venv has them already).
EDITABLE = re.compile(r"pip install -e '\.\[[^\]]*\]' (--config-settings editable_mode=\w+)")


def _without_this_project(site: Path, into: Path) -> None:
    """The test venv's packages as links, minus the installed copy of this project (its
    twistd plugin above all), so that only the editable install can provide it."""
    into.mkdir()
    for entry in site.iterdir():
        if entry.name.startswith(("bullmq_proxy", "__editable__")) or entry.name == "twisted":
            continue
        (into / entry.name).symlink_to(entry)
    (into / "twisted").mkdir()
    for entry in (site / "twisted").iterdir():
        if entry.name != "plugins":
            (into / "twisted" / entry.name).symlink_to(entry)
    (into / "twisted" / "plugins").mkdir()
    for entry in (site / "twisted" / "plugins").iterdir():
        if not entry.name.startswith(("bullmq_proxy", "dropin.cache")):
            (into / "twisted" / "plugins" / entry.name).symlink_to(entry)


def test_the_documented_editable_install_lets_twistd_find_the_plugin(tmp_path):
    readme = (REPO / "README.md").read_text()
    (mode,) = EDITABLE.findall(readme)
    source = tmp_path / "src"
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True,
                           check=True).stdout.split()
    for name in files:
        if (REPO / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(REPO / name, source / name)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    deps = tmp_path / "deps"
    _without_this_project(Path(sysconfig.get_paths()["purelib"]), deps)
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "test-deps.pth").write_text(f"{deps}\n")
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--no-deps", "-e", str(source),
                    *mode.split()], check=True, capture_output=True, timeout=300)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    twistd = [str(venv / "bin" / "python"), "-c",
              "from twisted.scripts.twistd import run; run()"]

    def version() -> str:
        result = subprocess.run([*twistd, "bullmq-proxy", "--version"], cwd=elsewhere, env=env,
                                capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    assert version().startswith("bullmq-proxy 0.1.0 ")
    # An edit shows at once: the install links to the sources rather than copying them.
    init = source / "bullmq_proxy" / "__init__.py"
    init.write_text(init.read_text().replace('"0.1.0"', '"0.1.0+edited"'))
    assert version().startswith("bullmq-proxy 0.1.0+edited ")
    plugin = subprocess.run(
        [str(venv / "bin" / "python"), "-c",
         "from importlib.metadata import entry_points; "
         "print(entry_points(group='bullmq_proxy.plugins')['static-tokens'].load())"],
        cwd=elsewhere, env=env, capture_output=True, text=True, timeout=60, check=True)
    assert "StaticTokens" in plugin.stdout
