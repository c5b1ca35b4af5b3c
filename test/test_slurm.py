"""The Slurm runner against a REAL one-node Slurm cluster (no mocks).

The ``slurm_cluster`` fixture uses the running cluster, or starts one with
``tools/slurm/start_local_slurm.sh`` (root needed); if that is impossible the tests FAIL with the
reason, they are never skipped.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SLURM_PY = ROOT / "egs2" / "TEMPLATE" / "speechlm1" / "utils" / "slurm.py"
SLURM_CONF = ROOT / "egs2" / "TEMPLATE" / "speechlm1" / "conf" / "slurm.conf"
START = ROOT / "tools" / "slurm" / "start_local_slurm.sh"
# one pytest-xdist worker runs them all (--dist loadgroup): one cluster, started once, and the
# timing of its queue not shared with other tests' jobs
pytestmark = pytest.mark.xdist_group("slurm")


def _node_ready() -> bool:
    if shutil.which("sinfo") is None:
        return False
    try:
        res = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return False
    states = res.stdout.split()
    return res.returncode == 0 and any(s.rstrip("*~#") in ("idle", "mixed", "allocated") for s in states)


@pytest.fixture(scope="module")
def slurm_cluster() -> None:
    if _node_ready():
        return
    if os.geteuid() != 0:
        pytest.fail(f"no Slurm cluster answers and {START} needs root to start one")
    res = subprocess.run(["bash", str(START)], capture_output=True, text=True, timeout=600)
    if res.returncode != 0 or not _node_ready():
        pytest.fail(f"could not start the local Slurm cluster (exit {res.returncode}):\n{res.stdout}\n{res.stderr}")


def _queued(name: str, timeout: float = 30) -> list[str]:
    """The jobs named ``name`` still in the queue (not completing) after waiting up to ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        res = subprocess.run(["squeue", "-h", "-n", name, "-o", "%i %T"], capture_output=True, text=True)
        left = [line for line in res.stdout.splitlines() if "COMPLETING" not in line]
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.5)


def run_slurm(cwd: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, FASTADASP_SLURM_POLL="0.2", FASTADASP_SLURM_SQUEUE_INTERVAL="1", FASTADASP_SLURM_GRACE="3")
    return subprocess.run(
        [sys.executable, str(SLURM_PY), "--config", str(SLURM_CONF), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_array_of_three_jobs(slurm_cluster, tmp_path):
    command = ["mkdir", "-p", "out", "&&", "echo", "hello", "from", "JOB", "on", "$(hostname)", ">", "out/f.JOB.txt"]
    res = run_slurm(
        tmp_path, "--mem", "100M", "--num-threads", "1", "--time", "5", "JOB=1:3", "exp/log/w.JOB.log", *command
    )
    assert res.returncode == 0, res.stderr
    for j in (1, 2, 3):
        assert (tmp_path / f"out/f.{j}.txt").read_text().startswith(f"hello from {j} on ")
        log = (tmp_path / f"exp/log/w.{j}.log").read_text().splitlines()
        assert log[0] == f"# mkdir -p out && echo hello from {j} on $(hostname) > out/f.{j}.txt"
        assert log[1].startswith("# Started at ")
        assert log[-2].startswith("# Accounting: time=") and log[-1].startswith("# Ended (code 0) at ")
        assert (tmp_path / f"exp/log/q/w.{j}.done").read_text().strip() == "0"
    assert (tmp_path / "exp/log/q/w.sh").is_file()


def test_failed_job_is_reported(slurm_cluster, tmp_path):
    res = run_slurm(tmp_path, "JOB=1:3", "exp/log/decode.JOB.log", "touch ran.JOB; exit $(( JOB == 2 ? 3 : 0 ))")
    assert res.returncode != 0
    assert "1 / 3 failed, log is in exp/log/decode.2.log" in res.stderr
    assert "# Ended (code 3)" in (tmp_path / "exp/log/decode.2.log").read_text()
    assert all((tmp_path / f"ran.{j}").exists() for j in (1, 2, 3))


def test_max_jobs_run_and_single_job_range(slurm_cluster, tmp_path):
    cmd = "s=$(date +%s.%N); sleep 0.3; echo $s $(date +%s.%N) > t.JOB"
    res = run_slurm(tmp_path, "--max-jobs-run", "1", "JOB=1:2", "log/m.JOB.log", cmd)
    assert res.returncode == 0, res.stderr
    stamps = sorted(tuple(map(float, (tmp_path / f"t.{j}").read_text().split())) for j in (1, 2))
    assert all(a[1] <= b[0] for a, b in zip(stamps, stamps[1:])), stamps  # one at a time
    res = run_slurm(tmp_path, "JOB=5:5", "log/s.JOB.log", "echo", "five=JOB")
    assert res.returncode == 0, res.stderr
    assert "five=5" in (tmp_path / "log/s.5.log").read_text()


def test_cancelled_job_is_a_failure(slurm_cluster, tmp_path):
    name = f"cancel{os.getpid()}"  # the job name: unique, to find the array with squeue
    proc = subprocess.Popen(
        [sys.executable, str(SLURM_PY), "JOB=1:2", f"exp/log/{name}.JOB.log", "sleep $(( JOB == 2 ? 300 : 0 ))"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(
            os.environ, FASTADASP_SLURM_POLL="0.2", FASTADASP_SLURM_SQUEUE_INTERVAL="1", FASTADASP_SLURM_GRACE="3"
        ),
    )
    try:
        script = tmp_path / f"exp/log/{name}.2.log"
        deadline = time.monotonic() + 60
        while not script.exists() and time.monotonic() < deadline:  # job 2 has started
            time.sleep(0.2)
        assert script.exists(), "job 2 did not start within 60 s"
        array = subprocess.run(["squeue", "-h", "-n", name, "-o", "%F"], capture_output=True, text=True).stdout.split()
        assert array, "the array is not in the queue"
        subprocess.run(["scancel", f"{array[0]}_2"], check=True)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert "JOB=2" in err and "left the queue without writing its exit status" in err
    assert f"1 / 2 failed, log is in exp/log/{name}.2.log" in err


def test_rejected_submission_names_sbatch_command(slurm_cluster, tmp_path):
    res = run_slurm(tmp_path, "--mem", "100000000M", "log", "true")
    assert res.returncode != 0
    assert "submission failed" in res.stderr and "sbatch --export=PATH --mem 100000000M" in res.stderr


def test_sigterm_cancels_the_array(slurm_cluster, tmp_path):
    name = f"term{os.getpid()}"
    proc = subprocess.Popen(
        [sys.executable, str(SLURM_PY), "JOB=1:2", f"exp/log/{name}.JOB.log", "sleep 300"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / f"exp/log/q/{name}.sh").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)  # submitted
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and "cancelled Slurm job" in err, err
    left = _queued(name, timeout=30)
    assert not left, f"jobs still queued after SIGTERM: {left}"


def test_recipe_decode_stage_through_slurm(slurm_cluster, checkpoint, tmp_path):
    """A recipe's decode stage with cmd_backend=slurm and 2 jobs; then a failing job fails the stage."""
    from .test_recipes import FAST, recipe_copy, run_recipe, write_librispeech

    write_librispeech(tmp_path / "LibriSpeech")
    recipe = recipe_copy("librispeech", tmp_path)
    env = {
        "LIBRISPEECH": str(tmp_path / "LibriSpeech"),
        "cmd_backend": "slurm",
        "FASTADASP_SLURM_POLL": "0.5",
        "FASTADASP_SLURM_SQUEUE_INTERVAL": "2",
        "FASTADASP_SLURM_GRACE": "5",
    }
    args = [
        "--model_name_or_path",
        str(checkpoint),
        "--reductions",
        "fastadasp_constant@0.2",
        "--nj",
        "2",
        "--test_sets",
        "test_clean",
        "--inference_args",
        FAST,
    ]
    proc = run_recipe(recipe, env, *args, "--stop_stage", "5")
    assert proc.returncode == 0, proc.stderr[-3000:]
    dec = recipe / "exp" / checkpoint.name / "decode_fastadasp_constant@0.2" / "test_clean"
    assert len((dec / "text").read_text().splitlines()) == 4
    # the jobs went through sbatch: the runner's batch scripts and markers are there
    q = dec / "logdir" / "q"
    assert sorted(p.name for p in q.glob("*.done")) and len(list(q.glob("*.sh"))) >= 1
    assert (dec / "score" / "score.json").is_file()

    # break one utterance: its job fails, the stage fails and names that job's log
    last = (recipe / "data" / "test_clean" / "wav.scp").read_text().splitlines()[-1].split()[1]
    Path(last).write_bytes(b"corrupt")
    args[3] = "fastv@0.2"
    proc = run_recipe(recipe, env, *args, "--stage", "4", "--stop_stage", "4")
    assert proc.returncode != 0
    assert "decode.2.log" in proc.stderr, proc.stderr[-2000:]


def test_jobs_end_when_their_runner_is_killed(slurm_cluster, tmp_path):
    """kill -9 of the recipe's process group kills the runner outright (it cannot scancel); its
    jobs notice the stale heartbeat and end themselves, killing what they started."""
    name = f"orphan{os.getpid()}"
    env = dict(os.environ, FASTADASP_SLURM_POLL="0.2", FASTADASP_SLURM_ORPHAN_S="3")
    cmd = "sleep 300 & echo $! > sleep.JOB; wait"
    proc = subprocess.Popen(
        [sys.executable, str(SLURM_PY), "JOB=1:2", f"exp/log/{name}.JOB.log", cmd],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # a group of its own, as a recipe's shell has
    )
    pids: list[int] = []
    try:
        deadline = time.monotonic() + 90
        while len(pids) < 2:
            assert time.monotonic() < deadline, "the jobs did not start"
            time.sleep(0.3)
            files = [tmp_path / f"sleep.{j}" for j in (1, 2)]
            if all(f.exists() and f.read_text().strip() for f in files):
                pids = [int(f.read_text()) for f in files]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        left = _queued(name, timeout=60)
        assert not left, f"jobs still running after their runner was killed: {left}"
        for p in pids:  # one-node cluster: the jobs ran here
            assert not Path(f"/proc/{p}").exists() or "Z" in Path(f"/proc/{p}/stat").read_text().split(")")[-1][:3]
        for j in (1, 2):
            assert "stopped (no heartbeat" in (tmp_path / f"exp/log/{name}.{j}.log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
        subprocess.run(["scancel", "-n", name], capture_output=True)


def test_killing_only_the_recipes_shell_cancels_the_array(slurm_cluster, tmp_path):
    """The recipe's shell killed on its own: the runner sees its parent go and runs scancel at
    once (well before the jobs' heartbeat watch would end them)."""
    import shlex

    name = f"parent{os.getpid()}"
    env = dict(os.environ, FASTADASP_SLURM_POLL="0.2", FASTADASP_SLURM_ORPHAN_S="300")
    runner = f"{sys.executable} {SLURM_PY} JOB=1:2 exp/log/{name}.JOB.log {shlex.quote('sleep 300')}"
    shell = subprocess.Popen(
        ["bash", "-c", f"{runner}; echo after"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / f"exp/log/q/{name}.sh").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.5)  # submitted
        shell.send_signal(signal.SIGKILL)
        shell.wait(timeout=10)
        left = _queued(name, timeout=30)
        assert not left, f"jobs still queued after the recipe's shell was killed: {left}"
    finally:
        with contextlib.suppress(OSError):
            os.killpg(shell.pid, signal.SIGKILL)
        subprocess.run(["scancel", "-n", name], capture_output=True)
