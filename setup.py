"""Build hook: ``edged.models`` (the ``models/`` folder) ships data only.

Everything else is configured in pyproject.toml; this keeps ``models/build.py``, which
rebuilds the bundled model with build-only dependencies, out of the wheel.
"""

from setuptools import setup
from setuptools.command.build_py import build_py

DATA_ONLY = {"edged.models"}


class BuildPy(build_py):  # type: ignore[misc]
    def find_package_modules(self, package: str, package_dir: str) -> list[tuple[str, str, str]]:
        if package in DATA_ONLY:
            return []
        modules: list[tuple[str, str, str]] = super().find_package_modules(package, package_dir)
        return modules


setup(cmdclass={"build_py": BuildPy})
