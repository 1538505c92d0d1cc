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
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path),
         str(ROOT)],
        check=True, capture_output=True, timeout=300, cwd=tmp_path,
    )
    (wheel,) = tmp_path.glob("monitor-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "twisted/plugins/monitor_plugins.py" in names
    assert "twisted/__init__.py" not in names and "twisted/plugins/__init__.py" not in names
    assert {"monitor/hub.py", "monitor/tap.py", "monitor/store/sqlite.py"} <= names
    assert not any(n.startswith("tests/") for n in names)


def test_twistd_lists_plugin_from_checkout(tmp_path):
    """With the checkout on the path, twistd's plugin discovery finds monitor and still finds web."""
    code = ("from twisted.plugin import getPlugins\n"
            "from twisted.application.service import IServiceMaker\n"
            "print(sorted(p.tapname for p in getPlugins(IServiceMaker)))")
    out = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=str(ROOT)),
                         cwd=tmp_path, capture_output=True, text=True, check=True, timeout=120).stdout
    assert "'monitor'" in out and "'web'" in out
