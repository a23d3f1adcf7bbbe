"""Everything is in pyproject.toml but one step: a built wheel gets a
dicom_triage/__init__.py, which the repository has no folder for.

Python finds `dicom_triage` on disk as a namespace package, but not inside a
zip: Spark's `--py-files dist/*.whl` puts the wheel on the workers' path as a
zip archive, where only a regular package imports. Editable installs map the
folders with their own finder and need no file."""
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class WithPackageInit(build_py):
    def run(self):
        super().run()
        if not self.editable_mode:
            init = Path(self.build_lib) / "dicom_triage" / "__init__.py"
            init.write_text('"""dicom-triage: triage of DICOM deliveries on Apache Spark."""\n')


setup(cmdclass={"build_py": WithPackageInit})
