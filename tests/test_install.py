"""The repository is an installable package: ``pip install .`` into a fresh virtual environment gives the ``ptuning``
command and the library, with its version, importable from anywhere (not from this checkout)."""

from __future__ import annotations

import subprocess
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_pip_install_gives_the_ptuning_command_and_the_library(tmp_path):
    source = tmp_path / "src"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split()  # fmt: skip
    for name in files:  # a copy of the tracked tree: the build writes nothing into the checkout
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            (source / name).write_bytes((ROOT / name).read_bytes())
    env_dir = tmp_path / "venv"
    # The fresh environment sees this one's packages (torch, transformers... are not downloaded again), pip and the
    # setuptools and wheel of requirements-dev.txt included, so the build needs no network.
    venv.create(env_dir, system_site_packages=True, with_pip=False)
    python = env_dir / "bin" / "python"
    done = subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-build-isolation", str(source)],
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    helped = subprocess.run([str(env_dir / "bin" / "ptuning"), "--help"], cwd=elsewhere, capture_output=True,
                            text=True, timeout=300)  # fmt: skip
    assert helped.returncode == 0, helped.stderr
    assert helped.stdout.startswith("usage: ptuning ") and "train" in helped.stdout and "serve" in helped.stdout
    version = subprocess.run([str(env_dir / "bin" / "ptuning"), "--version"], cwd=elsewhere, capture_output=True,
                             text=True, timeout=300)  # fmt: skip
    where = subprocess.run([str(python), "-c", "import ptuning; print(ptuning.__file__); print(ptuning.__version__)"],
                           cwd=elsewhere, capture_output=True, text=True, timeout=300)  # fmt: skip
    path, number = where.stdout.split()
    assert Path(path).is_relative_to(env_dir) and not Path(path).is_relative_to(ROOT)
    assert version.stdout.strip() == f"ptuning {number}"
    extras = subprocess.run([str(python), "-c", "import importlib.metadata as m; "
                             "print(*m.metadata('ptuning').get_all('Provides-Extra'))"],
                            capture_output=True, text=True, cwd=elsewhere)  # fmt: skip
    assert set(extras.stdout.split()) >= {"app", "serve", "ray", "dev"}
