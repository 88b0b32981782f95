import json

import pytest

from tools.compare import base2new_rows, harmonic_mean, main


def put(root, part, dataset, trainer, seed, acc):
    d = root / "base2new" / part / dataset / "shots_16" / trainer / "cfg" / f"seed{seed}"
    d.mkdir(parents=True)
    (d / "results.json").write_text(json.dumps({"evaluations": {"test": {"metrics": {"accuracy": acc}}}}))


def test_base2new_table_values_and_missing(tmp_path, capsys):
    put(tmp_path, "train_base", "dtd", "CoOp", 1, 80.0)
    put(tmp_path, "train_base", "dtd", "CoOp", 2, 90.0)
    put(tmp_path, "test_new", "dtd", "CoOp", 1, 50.0)
    put(tmp_path, "test_new", "dtd", "CoOp", 2, 60.0)
    put(tmp_path, "train_base", "dtd", "CoOp", 3, 70.0)  # its test_new run is missing
    (row,) = base2new_rows(tmp_path)
    assert row.seeds == 2 and row.base == (85.0, pytest.approx(7.0710678)) and row.new[0] == 55.0
    assert row.hm == pytest.approx(2 * 85 * 55 / 140) and row.missing == ["test_new/seed3"]
    main([str(tmp_path), "--format", "md"])
    out = capsys.readouterr().out
    assert "85.00 ± 7.07" in out and f"{harmonic_mean(85, 55):.2f}" in out and "test_new/seed3" in out


def test_no_results_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="No base2new results"):
        main([str(tmp_path)])
