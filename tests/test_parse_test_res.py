"""tools/parse_test_res.py: CoOp's log parsing (markers, last value wins, population std, ci95),
results.json first, resumed runs' logs, multi-experiment averages and the errors."""
import json
import math

import pytest

from engine.errors import UserError
from tests.manifests import whole_manifest
from tools.parse_test_res import main

TRAIN_LOG = """epoch [1/2] batch [1/1] loss 1.0
Evaluate on the *val* set
=> result
* accuracy: {val}%
{marker}
Deploy the last-epoch model
Evaluate on the *test* set
=> result
* total: 100
* accuracy: {acc}%
* error: {err}%
* macro_f1: {f1}%
Elapsed: 0:00:01
"""


def write_log(run, acc, marker="Finish training", name="log.txt", val=11.0):
    run.mkdir(parents=True, exist_ok=True)
    (run / name).write_text(TRAIN_LOG.format(val=val, marker=marker, acc=acc, err=100 - acc, f1=acc - 1))


def test_training_logs_both_markers_std_and_ci95(tmp_path, capsys):
    write_log(tmp_path / "seed1", 70.5)
    write_log(tmp_path / "seed2", 80.0, marker="Finished training")  # CoOp's own spelling
    (tmp_path / "seed3").mkdir()
    (tmp_path / "seed3" / "log.txt").write_text("epoch [1/2]\n=> result\n* accuracy: 50.0%\n")  # unfinished
    assert main([str(tmp_path)]) == {str(tmp_path): 75.25}
    out = capsys.readouterr().out
    assert (f"file: {tmp_path}/seed1/log.txt. accuracy: 70.50%. \n"
            f"file: {tmp_path}/seed2/log.txt. accuracy: 80.00%. \n") in out
    assert f"skipped: {tmp_path}/seed3/log.txt" in out
    assert "* accuracy: 75.25% +- 4.75%" in out  # population std of (70.5, 80.0), as numpy.std
    main([str(tmp_path), "--ci95"])
    assert f"* accuracy: 75.25% +- {1.96 * 4.75 / math.sqrt(2):.2f}%" in capsys.readouterr().out  # 6.58
    main([str(tmp_path), "--keyword", "macro_f1"])
    assert "* macro_f1: 74.25% +- 4.75%" in capsys.readouterr().out


def test_test_log_marker_takes_the_last_result(tmp_path, capsys):
    run = tmp_path / "seed1"
    run.mkdir()
    (run / "log.txt").write_text("* accuracy: 1.0%\n=> result\n* accuracy: 60.0%\n=> result\n* accuracy: 61.5%\n")
    assert main([str(tmp_path), "--test-log"]) == {str(tmp_path): 61.5}
    with pytest.raises(UserError, match="Nothing found in .*after Finish training / Finished training.*--test-log"):
        main([str(tmp_path)])


def test_results_json_wins_and_agrees_with_the_log(tmp_path, capsys):
    run = tmp_path / "seed1"
    write_log(run, 71.2)
    (run / "results.json").write_text(json.dumps({
        "config": {"TEST": {"SPLIT": "test"}},
        "evaluations": {"val": {"metrics": {"accuracy": 11.0}},
                        "test": {"metrics": {"accuracy": 71.234, "error": 28.766}}},
        "manifest": whole_manifest(),
    }))
    assert main([str(tmp_path)]) == {str(tmp_path): 71.234}
    assert f"file: {run}/results.json. accuracy: 71.23%." in capsys.readouterr().out
    assert main([str(tmp_path), "--from-log"]) == {str(tmp_path): 71.2}
    with pytest.raises(UserError, match=r"its 'test' evaluation has no 'top5'; it has \['accuracy', 'error'\]"):
        main([str(tmp_path), "--keyword", "top5"])


def test_resumed_run_reads_its_logs_in_order(tmp_path):
    run = tmp_path / "seed1"
    run.mkdir()
    (run / "log.txt").write_text("epoch [1/2]\n")  # killed
    write_log(run, 65.0, name="log.txt-2026-01-02-03-04-05")
    write_log(run, 66.0, name="log.txt-2026-01-02-09-00-00")  # a later rerun
    assert main([str(tmp_path)]) == {str(tmp_path): 66.0}


def test_multi_exp_averages_the_experiment_means(tmp_path, capsys):
    for exp, accs in (("exp-1", (60.0, 70.0)), ("exp-2", (80.0, 80.0))):
        for seed, acc in enumerate(accs, 1):
            write_log(tmp_path / exp / f"seed{seed}", acc)
    assert main([str(tmp_path), "--multi-exp"]) == {str(tmp_path / "exp-1"): 65.0, str(tmp_path / "exp-2"): 80.0}
    assert capsys.readouterr().out.endswith("Average performance\n* accuracy: 72.50%\n")


def test_errors_name_the_folder(tmp_path):
    with pytest.raises(UserError, match="Nothing found in"):
        main([str(tmp_path)])
    (tmp_path / "seed1").mkdir()
    with pytest.raises(UserError, match="seed1 has neither results.json nor log.txt"):
        main([str(tmp_path)])
    with pytest.raises(UserError, match="is not a folder"):
        main([str(tmp_path / "missing")])
