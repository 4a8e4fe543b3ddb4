"""Every tour notebook executes end to end, offline, on the local model (small parameters).

The executed copies land in test-artifacts/notebooks/, where `make test` then runs
nbval (lax mode) over them as a second check.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
ARTIFACTS = ROOT / "test-artifacts" / "notebooks"

# Small parameters so CI stays inside its time limit; learners run the defaults.
CI_PARAMETERS: dict[str, dict] = {
    "00_welcome": {"N_ROWS": 4},
    "01_foundations": {"N_ROWS": 6, "REPEATS": 2, "CHECK": False},  # exercises: tests/test_exercises.py
    "02_power_phrases": {"N_ROWS": 6, "PHRASES": ["analyst", "cot", "only_label", "answer_prefill", "tip"], "MAX_TOKENS": 40,
                         "CHECK": False},
    "03_model_differences": {"N_ROWS": 6, "REPEATS": 2, "CHECK": False},
    "04_live_builder": {"N_ROWS": 2, "AUTORUN": True},
    "05_structured_output": {"MODEL": "local:smollm2", "N_ROWS": 2, "CHECK": False},
    "06_reasoning": {"MODELS": ["local:smollm2"], "N_ROWS": 2, "THINK_TOKENS": 48, "SHORT_TOKENS": 16, "SC_SAMPLES": 2, "SC_MODEL": "local:smollm2", "CHECK": False},
    "07_grounding": {"MODEL": "local:smollm2", "CONTRAST": "", "N_ROWS": 4, "CHECK": False},
    "08_injection": {"MODEL": "local:smollm2", "N_ROWS": 4, "CHECK": False},
    "09_chaining": {"N_ROWS": 3, "CHECK": False},  # exercises: tests/test_curriculum_b.py
    "10_tools": {"N_ROWS": 3, "CHECK": False},
    "11_retrieval": {"N_ROWS": 3, "CHECK": False},
    "12_capstone": {"N_ROWS": 1, "N_RATED": 2, "JUDGE_MODEL": "local:qwen2.5-0.5b", "MAX_TOKENS": 120, "CHECK": False},
}

pytestmark = [pytest.mark.notebook, pytest.mark.local_model]


@pytest.mark.timeout(1800)  # a chapter runs ~1-2 min on a quiet 2-core machine; far longer when loaded
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes(path, execute_chapter):
    assert os.environ.get("PROMPTKIT_HOME"), "tests run with an isolated PROMPTKIT_HOME"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    out = ARTIFACTS / path.name
    execute_chapter(path.stem, out=out)  # conftest.py: papermill at CI_PARAMETERS, on the session's answer cache
    assert out.exists()
