import subprocess
import sys

import pytest


@pytest.mark.parametrize("package,forbidden", [("se_flax", "torch"), ("se_torch_ref", "jax")])
def test_packages_do_not_import_the_other_framework(package, forbidden):
    code = (f"import sys, {package}; {package}.__all__ and [getattr({package}, n) for n in "
            f"{package}.__all__]; assert {forbidden!r} not in sys.modules, {forbidden!r}")
    subprocess.run([sys.executable, "-c", code], check=True)
