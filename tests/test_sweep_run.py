"""tools/sweep.py's runner with a stand-in PYTHON: a failed run stops only its chain and is
reported with its logs; a rerun skips what finished; SIGTERM stops the sweep and every run."""
import contextlib
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

from sweeps.command import main as sweep_main

REPO = Path(__file__).resolve().parents[1]

# Records each train.py call, writes the run's log.txt, fails the dtd base runs and finishes the rest
# with a results.json whose manifest is the one train.py would record (computed as the sweep's skip
# rule predicts it), so a rerun skips them. `python -c` runs for real.
FAKE_TRAIN = """#!/bin/bash
if [ "$1" = "-c" ]; then exec python "$@"; fi
echo "$@" >> {calls}
out=$(echo "$@" | sed -E 's/.*--output-dir ([^ ]+).*/\\1/')
mkdir -p "$out" && echo "$@" > "$out/log.txt"
case "$*" in *datasets/dtd.yaml*"SUBSAMPLE_CLASSES base"*) echo "boom" >&2; exit 3 ;; esac
python - "$@" > "$out/results.json" <<'PY'
import json, sys
sys.path.insert(0, "{repo}")
import train
from engine.launch import parse_args, planned_manifest, setup_cfg
args = parse_args(sys.argv[2:])
cfg = setup_cfg(args)
print(json.dumps({{"config": {{"OPTIM": {{"MAX_EPOCH": cfg.OPTIM.MAX_EPOCH}}}}, "evaluations": {{}},
                  "manifest": planned_manifest(args, cfg, strict=False)}}))
PY
"""


def fake_python(tmp_path: Path, body: str) -> tuple[Path, Path]:
    calls = tmp_path / "calls.txt"
    stub = tmp_path / "python"
    stub.write_text(body.format(calls=calls, repo=REPO))
    stub.chmod(stub.stat().st_mode | stat.S_IEXEC)
    return stub, calls


def test_failed_runs_are_listed_with_their_logs_and_the_rest_finishes(tmp_path, monkeypatch, capsys):
    stub, calls = fake_python(tmp_path, FAKE_TRAIN)
    monkeypatch.setenv("PYTHON", str(stub))
    out = tmp_path / "out"
    args = ["--protocol", "base2new", "--methods", "ZeroshotCLIP", "CoOp", "--datasets", "dtd", "eurosat",
            "--seeds", "1", "--output", str(out), "--jobs", "2", "--opts", "OPTIM.MAX_EPOCH", "1"]
    assert sweep_main(args) == 1
    printed = capsys.readouterr().out
    (log_dir,) = (out / "sweeps").glob("base2new-*")
    base = out / "base2new" / "train_base" / "dtd" / "shots_16"
    assert "2 of 4 chains done (5 steps run, 0 finished earlier).\n2 failed:\n" in printed
    assert (f"  base2new_train CoOp vit_b16_ep50_ctxv1 dtd 1 OPTIM.MAX_EPOCH 1: exited with 3\n"
            f"    run log:   {base}/CoOp/vit_b16_ep50_ctxv1/seed1/log.txt\n"
            f"    sweep log: {log_dir}/CoOp-vit_b16_ep50_ctxv1-dtd-shots16-seed1.log") in printed
    assert (f"  base2new_zeroshot ZeroshotCLIP vit_b16 dtd 1 OPTIM.MAX_EPOCH 1: exited with 3\n"
            f"    run log:   {base}/ZeroshotCLIP/vit_b16/seed1/log.txt\n"
            f"    sweep log: {log_dir}/ZeroshotCLIP-vit_b16-dtd-shots16-seed1.log") in printed
    assert "boom" in (log_dir / "CoOp-vit_b16_ep50_ctxv1-dtd-shots16-seed1.log").read_text()
    first = calls.read_text().splitlines()
    assert len(first) == 6 and not any("test_new/dtd" in c for c in first)  # a failed chain stops
    assert len(list(out.glob("base2new/*/eurosat/shots_16/*/*/seed1/results.json"))) == 4

    calls.unlink()
    assert sweep_main([*args, "--status"]) == 0  # from the output tree alone: nothing runs
    status = capsys.readouterr().out
    assert not calls.exists()
    assert (f"unfinished   CoOp-vit_b16_ep50_ctxv1-dtd-shots16-seed1  base2new_train stopped before it finished\n"
            f"{'':13}log: {base}/CoOp/vit_b16_ep50_ctxv1/seed1/log.txt") in status
    assert "done         CoOp-vit_b16_ep50_ctxv1-eurosat-shots16-seed1\n" in status
    assert status.endswith("2 done, 2 unfinished (of 4 chains).\n")

    assert sweep_main(args) == 1
    assert "2 of 4 chains done (2 steps run, 3 finished earlier)." in capsys.readouterr().out
    assert all("datasets/dtd.yaml" in c for c in calls.read_text().splitlines())


def test_sigterm_stops_the_sweep_and_its_runs(tmp_path):
    stub, calls = fake_python(tmp_path, "#!/bin/bash\necho $$ >> {calls}\nexec sleep 60\n")
    out = tmp_path / "out"
    sweeper = subprocess.Popen(
        [sys.executable, "tools/sweep.py", "--protocol", "base2new", "--methods", "CoOp", "--datasets", "dtd",
         "eurosat", "--seeds", "1", "--jobs", "2", "--output", str(out)],
        cwd=REPO, env={**os.environ, "PYTHON": str(stub)}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True)
    try:
        deadline = time.time() + 120
        while (not calls.exists() or len(calls.read_text().split()) < 2) and time.time() < deadline:
            time.sleep(0.1)
        runs = [int(pid) for pid in calls.read_text().split()]
        assert len(runs) == 2
        sweeper.send_signal(signal.SIGTERM)  # the sweep only, not its process group
        assert sweeper.wait(timeout=30) == 130
    finally:
        with contextlib.suppress(ProcessLookupError):  # nothing of the sweep should be left to kill
            os.killpg(sweeper.pid, signal.SIGKILL)
    assert "Stopped. Rerun the same command to continue" in sweeper.stdout.read()
    for pid in runs:
        state = Path(f"/proc/{pid}/stat")
        assert not state.exists() or state.read_text().rsplit(")", 1)[1].split()[0] == "Z", pid
    assert not list(out.rglob("results.json"))
