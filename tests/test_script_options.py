"""Every method script takes config options (KEY VALUE ...) after its positional arguments and
passes them, last, to every train.py it runs; its header says so. The script lines below are the
ones the headers and README show, run literally with an override."""
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
OVERRIDE = ["OPTIM.LR", "0.123", "TRAINER.MMRLpp.BETA", "0.5"]  # a lower-case node name is still a key
# script -> its positional arguments, as its header's usage line names them
LINES = {
    "coop/main.sh": "caltech101 vit_b16_ep50 end 16 1 False",
    "coop/eval.sh": "imagenetv2 vit_b16_ep50",
    "zsclip/zeroshot.sh": "caltech101 vit_b16",
    "zsclip/base2new.sh": "dtd 1",
    "dear/tiny_attr_base2new.sh": "attr_hue_shift 1",
    **{f"{m}/{s}": "dtd 1" for m in ("coop", "cocoop", "ivlp", "maple", "promptsrc", "mmrl", "mmrlpp", "dear")
       for s in ("base2new_train.sh", "base2new_test.sh")},
    **{f"{m}/xd_train.sh": "1" for m in ("cocoop", "ivlp", "maple", "promptsrc", "mmrl", "mmrlpp", "dear")},
    **{f"{m}/xd_test.sh": "eurosat 1" for m in ("cocoop", "ivlp", "maple", "promptsrc", "mmrl", "mmrlpp", "dear")},
    **{f"{m}/few_shot.sh": "dtd 1" for m in ("promptsrc", "mmrl", "mmrlpp", "dear")},
}


def run(script, *args, stub, check=True):
    environ = {**os.environ, "PYTHON": str(stub), "DATA": "/data/x", "SHOTS_LIST": "4", "SEEDS": "1"}
    return subprocess.run(["bash", str(REPO / "scripts" / script), *args], env=environ, capture_output=True,
                          text=True, check=check)


def train_calls(log):
    calls = [line.split() for line in log.read_text().splitlines() if line.startswith("train.py")]
    log.unlink()
    return calls


def test_every_method_script_is_listed_here():
    scripts = {str(p.relative_to(REPO / "scripts")) for p in (REPO / "scripts").glob("*/*.sh")}
    assert scripts == set(LINES)


@pytest.mark.parametrize("script", sorted(LINES))
def test_script_passes_key_value_options_last_to_every_run(fake_python, script):
    stub, log = fake_python
    header = (REPO / "scripts" / script).read_text().split("\nset -e")[0]
    assert "[KEY VALUE ...]" in header or "[DeAR KEY VALUE ...]" in header
    run(script, *LINES[script].split(), *OVERRIDE, stub=stub)
    calls = train_calls(log)
    if script == "dear/tiny_attr_base2new.sh":  # the options are DeAR's; zero-shot CLIP and CoOp run as they are
        assert [c[c.index("--trainer") + 1] for c in calls] == ["ZeroshotCLIP"] * 2 + ["CoOp"] * 2 + ["DeAR"] * 2
        assert all(c[-4:] != OVERRIDE for c in calls[:4])
        calls = calls[4:]
    assert calls and all(c[-4:] == OVERRIDE for c in calls), calls


def test_the_optional_cfg_and_the_options(fake_python):
    stub, log = fake_python
    run("mmrl/base2new_train.sh", "dtd", "2", "vit_b16_few_shot", "OPTIM.MAX_EPOCH", "3", stub=stub)
    (named,) = train_calls(log)
    run("mmrl/base2new_train.sh", "dtd", "2", "OPTIM.MAX_EPOCH", "3", stub=stub)
    (default,) = train_calls(log)
    assert "configs/trainers/MMRL/vit_b16_few_shot.yaml" in named and "MMRL/vit_b16_few_shot/seed2" in " ".join(named)
    assert "configs/trainers/MMRL/vit_b16.yaml" in default
    assert named[-4:] == default[-4:] == ["TASK", "B2N", "OPTIM.MAX_EPOCH", "3"]


@pytest.mark.parametrize("args, message", [
    (["vit_b16_typo", "OPTIM.LR", "1"], "'vit_b16_typo' is neither a config of DeAR"),
    (["OPTIM.LR"], "config option OPTIM.LR has no VALUE"),
    (["OPTIM.LR", "1", "extra", "2"], "'extra' stands where a config KEY goes"),
])
def test_misplaced_words_stop_the_script_before_any_run(fake_python, args, message):
    stub, log = fake_python
    out = run("dear/base2new_train.sh", "dtd", "1", *args, stub=stub, check=False)
    assert out.returncode == 2 and message in out.stderr and not log.exists()
    if "typo" in args[0]:
        assert "vit_b16_cross_datasets" in out.stderr  # the configs it could have meant
