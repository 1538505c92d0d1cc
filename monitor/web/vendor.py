"""
Put the pinned front-end libraries (charts, map, world outline) in
C{monitor/web/static/vendor/}: C{python -m monitor.web.vendor}.

They come from the npm registry at build time (C{npm pack} of exact
versions, checked against the pinned SHA-512), so nothing is fetched from a
CDN when someone opens a page.  Quick when already done: a stamp file
records the manifest it was built from.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
MANIFEST = os.path.join(HERE, "vendor.json")
TARGET = os.path.join(HERE, "static", "vendor")
STAMP = os.path.join(TARGET, ".manifest-sha256")


def _manifest_digest() -> str:
    with open(MANIFEST, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def up_to_date() -> bool:
    try:
        with open(STAMP, encoding="ascii") as f:
            if f.read().strip() != _manifest_digest():
                return False
    except FileNotFoundError:
        return False
    with open(MANIFEST, encoding="utf-8") as f:
        packages = json.load(f)["packages"]
    return all(os.path.exists(os.path.join(TARGET, dest)) for p in packages for dest in p["files"].values())


def _fetch(package: dict, workdir: str) -> str:
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("npm is needed to fetch the front-end libraries (apt-get install npm)")
    spec = f"{package['name']}@{package['version']}"
    result = subprocess.run(
        [npm, "pack", "--json", "--silent", "--pack-destination", workdir, spec],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    info = json.loads(result.stdout)[0]
    path = os.path.join(workdir, info["filename"])
    with open(path, "rb") as f:
        digest = "sha512-" + base64.b64encode(hashlib.sha512(f.read()).digest()).decode("ascii")
    if digest != package["integrity"]:
        raise SystemExit(f"{spec}: the tarball's SHA-512 is {digest}, the pin says {package['integrity']}")
    return path


def build() -> None:
    with open(MANIFEST, encoding="utf-8") as f:
        packages = json.load(f)["packages"]
    with tempfile.TemporaryDirectory() as workdir:
        staging = os.path.join(workdir, "vendor")
        for package in packages:
            tarball = _fetch(package, workdir)
            with tarfile.open(tarball, "r:gz") as tar:
                for member, dest in package["files"].items():
                    source = tar.extractfile(member)
                    if source is None:
                        raise SystemExit(f"{package['name']}: {member} is not a file in the package")
                    out = os.path.join(staging, dest)
                    os.makedirs(os.path.dirname(out), exist_ok=True)
                    with open(out, "wb") as f:
                        shutil.copyfileobj(source, f)
            print(f"vendor: {package['name']}@{package['version']}")
        with open(os.path.join(staging, ".manifest-sha256"), "w", encoding="ascii") as f:
            f.write(_manifest_digest() + "\n")
        if os.path.exists(TARGET):
            shutil.rmtree(TARGET)
        shutil.copytree(staging, TARGET)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--check" in argv:
        return 0 if up_to_date() else 1
    if up_to_date() and "--force" not in argv:
        return 0
    build()
    return 0


if __name__ == "__main__":
    sys.exit(main())
