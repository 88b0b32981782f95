"""A real one-node SLURM for tests, started as root from Debian's packages (slurmctld, slurmd,
slurm-client, munge; .ci/run installs them) and stopped again, measured in
../shared/notes/one-node-slurm.md.

Everything lives in one temporary folder and is private to it: munged on its own socket and key,
the daemons on their own ports, state and logs, so a SLURM or munge already on the machine is
neither used nor disturbed. Clients reach it through SLURM_CONF (in `env`), which submitted jobs
inherit. Only the daemons started here are stopped, by the PIDs their pid files record.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

PROGRAMS = ("munged", "slurmctld", "slurmd", "sbatch", "srun", "squeue", "scontrol", "scancel")
PACKAGES = "slurmctld slurmd slurm-client munge"


def missing_reason() -> str | None:
    """Why a one-node SLURM cannot be started here, or None."""
    absent = [p for p in PROGRAMS if shutil.which(p) is None and not Path("/usr/sbin", p).exists()]
    if absent:
        return (f"SLURM is not installed ({', '.join(absent)} not found); as root: apt-get install {PACKAGES} "
                "(.ci/run does)")
    if os.geteuid() != 0:
        return "starting slurmd and munged needs root"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    return 4096


def program(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


class OneNodeSlurm:
    """`with OneNodeSlurm(folder) as cluster:` a controller and a node named after this host,
    partition "debug", every CPU and 90% of the memory; `cluster.env` reaches it."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.host = socket.gethostname().split(".")[0]
        self.conf = self.folder / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        self.pid_files = {"munged": self.folder / "munge" / "munged.pid",
                          "slurmctld": self.folder / "slurmctld.pid", "slurmd": self.folder / "slurmd.pid"}

    def __enter__(self) -> "OneNodeSlurm":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        munge = self.folder / "munge"
        for sub in (munge, self.folder / "state", self.folder / "spool"):
            sub.mkdir(parents=True, exist_ok=True)
        self.folder.chmod(0o755)
        munge.chmod(0o711)  # munged refuses a socket folder others can write to
        key = munge / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        socket_path = munge / "munge.socket"
        self.run([program("munged"), "--force", f"--socket={socket_path}", f"--key-file={key}",
                  f"--pid-file={self.pid_files['munged']}", f"--log-file={munge / 'munged.log'}",
                  f"--seed-file={munge / 'munged.seed'}"])
        f = self.folder
        self.conf.write_text("\n".join([
            "ClusterName=promptlabtest",
            f"SlurmctldHost={self.host}(127.0.0.1)",
            f"SlurmctldPort={free_port()}",
            f"SlurmdPort={free_port()}",
            "SlurmUser=root", "SlurmdUser=root",
            "AuthType=auth/munge", f"AuthInfo=socket={socket_path}",
            f"StateSaveLocation={f / 'state'}", f"SlurmdSpoolDir={f / 'spool'}",
            f"SlurmctldPidFile={self.pid_files['slurmctld']}", f"SlurmdPidFile={self.pid_files['slurmd']}",
            f"SlurmctldLogFile={f / 'slurmctld.log'}", f"SlurmdLogFile={f / 'slurmd.log'}",
            "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "MpiDefault=none",
            "SelectType=select/cons_tres", "SelectTypeParameters=CR_CPU_Memory",
            "ReturnToService=2", "JobAcctGatherType=jobacct_gather/none",
            f"NodeName={self.host} NodeAddr=127.0.0.1 CPUs={os.cpu_count() or 1} "
            f"RealMemory={int(memory_mb() * 0.9)} State=UNKNOWN",
            f"PartitionName=debug Nodes={self.host} Default=YES MaxTime=INFINITE State=UP",
            "",
        ]))
        self.run([program("slurmctld"), "-f", str(self.conf)])
        self.run([program("slurmd"), "-f", str(self.conf)])
        deadline = time.time() + 30
        while time.time() < deadline:
            out = subprocess.run(["sinfo", "--noheader", "--format=%T"], capture_output=True, text=True, env=self.env)
            if out.stdout.strip() == "idle":
                return
            time.sleep(0.2)
        raise RuntimeError(f"the SLURM node did not come up: {out.stdout or out.stderr}\n{self.logs()}")

    def run(self, command: list[str]) -> None:
        """Start a daemon (each forks into the background once it is up)."""
        subprocess.run(command, check=True, env=self.env, capture_output=True, timeout=60)

    def stop(self) -> None:
        """Cancel what is still queued, then stop the daemons started here, by their PIDs."""
        if self.pid_files["slurmctld"].exists():
            subprocess.run(["scancel", "--partition=debug"], env=self.env, capture_output=True, timeout=60)
            deadline = time.time() + 20
            while time.time() < deadline and self.queue():
                time.sleep(0.2)
        for name in ("slurmd", "slurmctld", "munged"):
            try:
                pid = int(self.pid_files[name].read_text().split()[0])
                os.kill(pid, signal.SIGTERM)
            except (OSError, ValueError, IndexError):
                continue
            deadline = time.time() + 10
            while time.time() < deadline and Path(f"/proc/{pid}").exists() and not self.zombie(pid):
                time.sleep(0.1)

    @staticmethod
    def zombie(pid: int) -> bool:
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
        except (OSError, IndexError):
            return True

    def queue(self) -> dict[str, str]:
        """job id -> state, array tasks one by one."""
        out = subprocess.run(["squeue", "--noheader", "--array", "--format=%i|%T"], capture_output=True, text=True,
                             env=self.env, timeout=60)
        return dict(line.split("|", 1) for line in out.stdout.split())

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in
                         (self.folder / "slurmctld.log", self.folder / "slurmd.log") if p.exists())
