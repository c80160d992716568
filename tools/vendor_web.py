"""Vendor the web page's JavaScript/CSS libraries into the package, at build time.

    python tools/vendor_web.py            # needs npm and the npm registry; run by a maintainer

Installs each library's registry package with npm into a temporary folder and copies the files
the page uses, with the package's licence, into ``runner/judge/server/static/vendor/<name>/``,
and writes ``runner/judge/server/static/vendor/VENDORED.json`` (name, version, licence, and the
SHA-256 of every copied file). The copied files are committed: nothing is fetched when the judge runs or
in CI, and ``tests/judge/test_judge_web.py`` checks the files against that manifest.

Today: KaTeX (MIT), which typesets the ``\\( \\)`` and ``\\[ \\]`` maths of challenge specs. Only
its ``woff2`` fonts are copied (every browser the page supports reads them; the stylesheet's
``woff``/``ttf`` fallbacks are never requested by such a browser).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENDOR = REPO / "runner" / "judge" / "server" / "static" / "vendor"

LIBRARIES = {
    "katex": {
        "version": "0.16.22",
        "licence": "MIT",
        "files": ["dist/katex.min.js", "dist/katex.min.css", "dist/contrib/auto-render.min.js",
                  "dist/fonts/*.woff2", "LICENSE"],
    },
}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def vendor(name: str, spec: dict, work: Path) -> dict:
    subprocess.run(["npm", "install", "--no-save", "--no-audit", "--no-fund", "--ignore-scripts",
                    "--prefix", str(work), f"{name}@{spec['version']}"], check=True)
    package = work / "node_modules" / name
    installed = json.loads((package / "package.json").read_text())["version"]
    if installed != spec["version"]:
        raise SystemExit(f"npm installed {name} {installed}, not {spec['version']}")
    target = VENDOR / name
    if target.exists():
        shutil.rmtree(target)
    files = {}
    for pattern in spec["files"]:
        matches = sorted(package.glob(pattern))
        if not matches:
            raise SystemExit(f"{name}@{spec['version']} has no {pattern}: update LIBRARIES")
        for source in matches:
            rel = source.relative_to(package)
            rel = rel.relative_to("dist") if rel.parts[0] == "dist" else rel
            dest = target / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, dest)
            files[str(dest.relative_to(VENDOR))] = sha256(dest)
    return {"version": installed, "licence": spec["licence"],
            "source": f"npm package {name}@{installed}", "files": files}


def main() -> int:
    if shutil.which("npm") is None:
        print("error: npm is needed to vendor the page's libraries (apt-get install npm)",
              file=sys.stderr)
        return 2
    VENDOR.mkdir(parents=True, exist_ok=True)
    manifest = {}
    with tempfile.TemporaryDirectory(prefix="vendor-web-") as tmp:
        for name, spec in LIBRARIES.items():
            manifest[name] = vendor(name, spec, Path(tmp))
    (VENDOR / "VENDORED.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    for name, entry in manifest.items():
        print(f"{name} {entry['version']}: {len(entry['files'])} files in {VENDOR / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
