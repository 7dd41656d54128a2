"""Where the harness reads and writes; tests point these at a temporary directory."""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]  # benchmarks/
REPO = HERE.parent
EMDA = [sys.executable, "-m", "emda"]
