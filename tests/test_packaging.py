"""
Packaging: the wheel carries the twistd plugin without shadowing Twisted's
own packages, and twistd finds the plugin from the checkout.
"""

import os
import subprocess
import sys
import zipfile

from tests.conftest import ROOT


def test_wheel_has_plugin_and_no_twisted_init(tmp_path):
    """The built wheel holds twisted/plugins/monitor_plugins.py, the package, and no twisted __init__."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=300,
        cwd=tmp_path,
    )
    (wheel,) = tmp_path.glob("monitor-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "twisted/plugins/monitor_plugins.py" in names
    assert "twisted/__init__.py" not in names and "twisted/plugins/__init__.py" not in names
    assert {"monitor/hub.py", "monitor/tap.py", "monitor/store/sqlite.py"} <= names
    assert not any(n.startswith("tests/") for n in names)


def test_twistd_lists_plugin_from_checkout(tmp_path):
    """With the checkout on the path, twistd's plugin discovery finds monitor and still finds web."""
    code = (
        "from twisted.plugin import getPlugins\n"
        "from twisted.application.service import IServiceMaker\n"
        "print(sorted(p.tapname for p in getPlugins(IServiceMaker)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    assert "'monitor'" in out and "'web'" in out


def _imported_modules(paths):
    """The top-level modules that the Python files under C{paths} import (absolute imports only)."""
    import ast

    found: dict[str, str] = {}
    for base in paths:
        for path in sorted(base.rglob("*.py")):
            if "vendor" in path.parts:
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    found.setdefault(
                        name.split(".")[0] if not name.startswith("zope.") else "zope", str(path.relative_to(ROOT))
                    )
    return found


def _declared():
    """The distributions setup.cfg declares: (install_requires, the test extra), as normalised names."""
    import configparser
    import re

    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")

    def names(text):
        return {
            re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9_.-]+", line.strip()).group(0)).lower()
            for line in text.splitlines()
            if line.strip() and not line.strip().startswith("#")
        }

    return names(parser["options"]["install_requires"]), names(parser["options.extras_require"]["test"])


def test_every_import_is_declared():
    """
    Each third-party module that the code imports comes from a distribution
    that setup.cfg names: the package's in install_requires, the tests' and
    benches' in install_requires or the test extra.  (A distribution that
    happens to arrive with another one is not declared, and may not arrive.)
    """
    import re
    from importlib.metadata import packages_distributions

    owners = packages_distributions()
    runtime, test = _declared()
    # The benches run as scripts and import their neighbours.
    local = {"monitor", "tests", "bench"} | {path.stem for path in (ROOT / "bench").glob("*.py")}
    problems = []
    for paths, allowed in (
        ([ROOT / "monitor", ROOT / "twisted"], runtime),
        ([ROOT / "tests", ROOT / "bench", ROOT / "docs"], runtime | test),
    ):
        for module, where in sorted(_imported_modules(paths).items()):
            if module in sys.stdlib_module_names or module in local or module == "__future__":
                continue
            dists = {re.sub(r"[-_.]+", "-", d).lower() for d in owners.get(module, ())}
            if not dists:
                problems.append(f"{module} (imported in {where}) is not installed")
            elif not dists & allowed:
                problems.append(f"{module} (imported in {where}) comes from {sorted(dists)}, not declared")
    assert not problems, "\n".join(problems)
