"""The documents users read first say what the code does."""
import re
from pathlib import Path

import trainers  # noqa: F401  (registers the trainers)
from engine.registry import TRAINER_REGISTRY

REPO = Path(__file__).resolve().parents[1]


def test_readme_first_paragraph_names_every_trainer():
    paragraph = (REPO / "README.md").read_text().split("\n\n")[1]
    named = set(re.findall(r"[A-Za-z+]+", paragraph))
    assert set(TRAINER_REGISTRY.names()) <= named, set(TRAINER_REGISTRY.names()) - named
