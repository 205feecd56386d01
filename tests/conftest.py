import sys
from pathlib import Path

# Tests import their fixtures as `tests.fixtures...`; the repo root must be importable.
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Fixtures shared by every test package (tests.fixtures.* are plain modules, not plugins).
from tests.fixtures.reference import reference_endpoint  # noqa: E402,F401
