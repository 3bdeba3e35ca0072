import os, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("MPLBACKEND", "Agg")
if str(ROOT) not in sys.path: sys.path.insert(0, str(ROOT))

@pytest.fixture(scope="session")
def root(): return ROOT
