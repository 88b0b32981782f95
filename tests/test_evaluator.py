import numpy as np
import torch

from engine.config import get_cfg
from engine.evaluator import Classification, macro_f1


def test_macro_f1_matches_hand_computation():
    y_true = np.array([0, 0, 1, 1, 2])
    y_pred = np.array([0, 1, 1, 1, 0])
    # class 0: p=1/2 r=1/2 f=1/2; class 1: p=2/3 r=1 f=0.8; class 2: p=0 r=0 f=0
    assert macro_f1(y_true, y_pred) == (0.5 + 0.8 + 0.0) / 3


def test_result_lines_are_dasslike(capsys):
    ev = Classification(get_cfg())
    logits = torch.tensor([[2.0, 1.0], [0.0, 1.0], [3.0, 0.0], [1.0, 0.0]])
    ev.process(logits, torch.tensor([0, 1, 1, 1]))
    res = ev.evaluate()
    assert res["accuracy"] == 50.0 and res["error"] == 50.0
    out = capsys.readouterr().out.splitlines()
    assert out[:5] == ["=> result", "* total: 4", "* correct: 2", "* accuracy: 50.0%", "* error: 50.0%"]
    assert out[5].startswith("* macro_f1: ")
