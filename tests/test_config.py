import pytest

import trainers  # noqa: F401
from engine.config import ConfigKeyError, get_cfg, merge_file, merge_list
from engine.registry import TRAINER_REGISTRY
from train import parse_args, setup_cfg


def write(path, text):
    path.write_text(text)
    return str(path)


def test_merge_order_dataset_method_flags_opts(tmp_path):
    ds = write(tmp_path / "ds.yaml", "DATASET:\n  NAME: Caltech101\n  NUM_SHOTS: 4\nOPTIM:\n  LR: 0.5\n")
    method = write(tmp_path / "m.yaml", "OPTIM:\n  LR: 0.002\n  MAX_EPOCH: 7\nDATASET:\n  ROOT: from_yaml\n")
    args = parse_args([
        "--root", "from_flag", "--seed", "3", "--trainer", "CoOp", "--dataset-config-file", ds,
        "--config-file", method, "--output-dir", str(tmp_path / "out"), "OPTIM.MAX_EPOCH", "9",
    ])
    cfg = setup_cfg(args)
    assert cfg.DATASET.NAME == "Caltech101" and cfg.DATASET.NUM_SHOTS == 4
    assert cfg.OPTIM.LR == 0.002  # method yaml after dataset yaml
    assert cfg.DATASET.ROOT == "from_flag"  # flags after yaml
    assert cfg.OPTIM.MAX_EPOCH == 9  # trailing opts last
    assert cfg.SEED == 3 and cfg.TRAINER.NAME == "CoOp"


def test_seed_zero_is_applied(tmp_path):
    assert setup_cfg(parse_args(["--seed", "0"])).SEED == 0
    assert setup_cfg(parse_args([])).SEED == -1


def test_trainer_nodes_are_declared_next_to_the_trainer():
    cfg = get_cfg()
    assert dict(cfg.TRAINER.COOP) == TRAINER_REGISTRY.get("CoOp").CONFIG
    assert cfg.TRAINER.COOP.N_CTX == 16 and cfg.TRAINER.COOP.PREC == "fp16"


def test_unknown_key_in_file_names_file_and_suggests(tmp_path):
    path = write(tmp_path / "bad.yaml", "OPTIM:\n  MAX_EPOCHS: 3\n")
    with pytest.raises(ConfigKeyError) as e:
        merge_file(get_cfg(), path)
    assert str(e.value) == f"Unknown config key 'OPTIM.MAX_EPOCHS' in {path}. Did you mean 'OPTIM.MAX_EPOCH'?"


def test_unknown_key_on_command_line_suggests():
    with pytest.raises(ConfigKeyError, match=r"'TRAINER.COOP.NCTX' on the command line. Did you mean 'TRAINER.COOP.N_CTX'\?"):
        merge_list(get_cfg(), ["TRAINER.COOP.NCTX", "4"])


def test_odd_option_count_is_an_error():
    with pytest.raises(ValueError, match="KEY VALUE pairs"):
        merge_list(get_cfg(), ["OPTIM.LR"])


def test_unknown_trainer_did_you_mean():
    with pytest.raises(KeyError, match="Unknown trainer 'COOP'. Did you mean 'CoOp'"):
        TRAINER_REGISTRY.get("COOP")
