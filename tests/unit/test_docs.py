"""The documentation: the MkDocs site builds with `--strict` (a broken link or a missing page fails), and the
README stays a short user guide whose every relative link and image exists."""

import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import REPO_ROOT

MAX_README_LINES = 220


def test_the_site_builds_strict(tmp_path):
    mkdocs = Path(sys.executable).with_name("mkdocs")
    done = subprocess.run(
        [str(mkdocs), "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=REPO_ROOT,
        env=os.environ | {"NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    # a page shows what the commands wrote into reports/, not a copy typed by hand
    assert "Written by <code>make scale</code>" in (tmp_path / "site" / "scale" / "index.html").read_text()


def test_the_readme_is_short_and_its_links_resolve():
    readme = (REPO_ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= MAX_README_LINES
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme)
    local = [t for t in targets if not t.startswith(("http://", "https://", "mailto:"))]
    assert local, "the README links no page"
    assert [t for t in local if not (REPO_ROOT / t).exists()] == []
