from __future__ import annotations

import sys
from pathlib import Path

# tests/ holds shared helpers (ctags oracle, fake Ollama): make them importable by name.
sys.path.insert(0, str(Path(__file__).parent))
