"""The job runners (local run.py, slurm.py's pure parts) and split_scp.

The local runner runs for real, mostly in-process through ``main()`` (fast) and a few times through
the recipe wrapper ``egs2/TEMPLATE/speechlm1/utils/run.py`` in a subprocess.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from espnet_fastadasp.bin import split_scp as split_mod
from espnet_fastadasp.runners import common, local, slurm
from espnet_fastadasp.runners.common import RunnerError, join_command, parse_command_line

ROOT = Path(__file__).resolve().parents[1]
UTILS = ROOT / "egs2" / "TEMPLATE" / "speechlm1" / "utils"
SLURM_CONF = ROOT / "egs2" / "TEMPLATE" / "speechlm1" / "conf" / "slurm.conf"


def run_wrapper(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(UTILS / name), *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )


@pytest.fixture()
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


# ---------------------------------------------------------------- command line


def test_join_command_follows_kaldi_quoting():
    """run.pl: verbatim without whitespace, else double quotes, or single quotes around a double quote."""
    assert join_command(["cat a | wc -l"]) == "cat a | wc -l"  # ours: a single argument is the shell command
    assert join_command(["echo", "a b", "|", "wc", "-w"]) == 'echo "a b" | wc -w'
    assert join_command(["echo", "", "x"]) == 'echo "" x'
    assert join_command(["echo", 'say "hi" now']) == "echo 'say \"hi\" now'"
    assert join_command(["echo", "$HOME dir"]) == 'echo "$HOME dir"'  # the job's shell expands it, as run.pl's
    with pytest.raises(RunnerError):
        join_command([])


# Kaldi's run.pl (egs/wsj/s5/utils/parallel/run.pl) on each command line, as the expectation:
# the options it keeps (max_jobs_run), the job range, the log, the command.
RUN_PL_CASES = [
    # ESPnet's launcher: --name before the range; run.pl drops queue options it does not use
    (["--name", "decode", "JOB=1:2", "l.JOB", "echo"], {}, (1, 2), "l.JOB", "echo"),
    # GridEngine's -tc N is --max-jobs-run N; the smaller of two wins
    (["-tc", "1", "JOB=1:2", "l.JOB", "echo"], {"max_jobs_run": "1"}, (1, 2), "l.JOB", "echo"),
    (["--max-jobs-run", "4", "-tc", "2", "l", "echo"], {"max_jobs_run": "2"}, (1, 1), "l", "echo"),
    # options after the job range
    (["JOB=1:3", "--mem", "4G", "-q", "all.q", "l.JOB", "echo"], {"mem": "4G"}, (1, 3), "l.JOB", "echo"),
    # -V takes no value, -pe two
    (["-V", "-pe", "smp", "4", "JOB=2:3", "l.JOB", "echo", "x"], {}, (2, 3), "l.JOB", "echo x"),
]


@pytest.mark.parametrize("argv, options, jobs, log, command", RUN_PL_CASES)
def test_command_lines_as_run_pl_reads_them(argv, options, jobs, log, command):
    spec = parse_command_line(argv, "run.py", ignore_unknown=True)
    assert spec.options == options and (spec.start, spec.end) == jobs
    assert (spec.logfile, spec.command) == (log, command)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["JOB=0:2", "l.JOB", "echo"], "must start at 1 or more"),  # run.pl: "start must be strictly positive"
        (["JOB=0", "l.JOB", "echo"], "must be 1 or more"),
        (["-tc", "0", "l", "echo"], "at least 1"),  # run.pl: invalid option --max-jobs-run 0
        (["-pe", "smp"], "needs 2 value"),
    ],
)
def test_what_run_pl_refuses_is_refused(argv, message):
    with pytest.raises(RunnerError, match=message):
        parse_command_line(argv, "run.py", ignore_unknown=True)


def test_run_py_accepts_espnet_launcher_options_and_writes_run_pl_logs(tmp_path):
    res = run_wrapper("run.py", "--name", "x", "-tc", "1", "JOB=1:2", "--gpu", "0", "l/j.JOB.log", "echo", "a b",
                      cwd=tmp_path)  # fmt: skip
    assert res.returncode == 0, res.stderr
    log = (tmp_path / "l/j.2.log").read_text().splitlines()
    assert log[0] == '# echo "a b"' and log[1].startswith("# Started at ") and log[2] == "#"
    assert log[3] == "a b"
    assert log[-1].startswith("# Ended (code 0) at ") and log[-1].endswith(" seconds")


@pytest.mark.parametrize(
    "argv, var, start, end",
    [
        (["JOB=1:4", "log.JOB", "echo"], "JOB", 1, 4),
        (["SPLIT=2:5", "log.SPLIT", "echo"], "SPLIT", 2, 5),
        (["JOB=3:3", "log", "echo"], "JOB", 3, 3),
        (["JOB=7", "log.JOB", "echo"], "JOB", 7, 7),
        (["log", "echo", "JOB=1:2"], None, 1, 1),
    ],
)
def test_parse_job_ranges(argv, var, start, end):
    spec = parse_command_line(argv, "run.py")
    assert (spec.var, spec.start, spec.end) == (var, start, end)


def test_parse_options_and_substitution():
    spec = parse_command_line(
        [
            "--mem",
            "4G",
            "--num_threads",
            "2",
            "--time=10",
            "--max-jobs-run",
            "3",
            "JOB=1:2",
            "exp/log/dec.JOB.log",
            "python",
            "-m",
            "x",
            "--keys",
            "keys.JOB.scp",
        ],
        "run.py",
    )
    assert spec.options == {"mem": "4G", "num_threads": "2", "time": "10", "max_jobs_run": "3"}
    assert spec.log_for(2) == "exp/log/dec.2.log"
    assert spec.command_for(2) == "python -m x --keys keys.2.scp"
    assert spec.log_pattern() == "exp/log/dec.*.log"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--foo", "1", "log", "echo"], "unknown option --foo"),
        (["--mem"], "needs a value"),
        (["--mem", "lots", "log", "echo"], "--mem lots"),
        (["--time", "1h", "log", "echo"], "--time 1h"),
        (["--gpu", "-1", "log", "echo"], "--gpu -1"),
        (["--max-jobs-run", "0", "log", "echo"], "at least 1"),
        (["--config", "/nonexistent.conf", "log", "echo"], "no such file"),
        (["JOB=4:2", "log.JOB", "echo"], "start > end"),
        (["JOB=1:3", "one.log", "echo"], "does not contain JOB"),
        (["JOB=1:3", "log.JOB"], "usage"),
        (["log", "JOB=1:2", "echo"], None),  # fine: JOB=1:2 is then the command
    ],
)
def test_parse_errors(argv, message):
    if message is None:
        parse_command_line(argv, "run.py")
        return
    with pytest.raises(RunnerError, match=re.escape(message)):
        parse_command_line(argv, "run.py")


# ---------------------------------------------------------------- local runner


def test_local_runs_all_jobs_with_header_and_footer(in_tmp):
    rc = local.main(["JOB=1:3", "exp/log/a.JOB.log", "echo", "job JOB", ">", "out.JOB", "&&", "echo", "done JOB"])
    assert rc == 0
    for j in (1, 2, 3):
        assert (in_tmp / f"out.{j}").read_text() == f"job {j}\n"
        lines = (in_tmp / f"exp/log/a.{j}.log").read_text().splitlines()
        assert lines[0] == f'# echo "job {j}" > out.{j} && echo "done {j}"'  # quoted as run.pl quotes
        assert lines[1].startswith("# Started at ") and lines[2] == "#"
        assert lines[3] == f"done {j}"
        assert re.fullmatch(r"# Accounting: time=\d+ threads=1", lines[4])
        assert re.fullmatch(r"# Ended \(code 0\) at .+, elapsed time \d+ seconds", lines[5])


def test_local_single_quoted_command_with_pipe_and_stderr(in_tmp):
    assert local.main(["x/y/z.log", "printf 'a\\nb\\nc\\n' | wc -l; echo oops >&2"]) == 0
    text = (in_tmp / "x/y/z.log").read_text()
    assert "\n3\n" in text and "\noops\n" in text


def test_local_single_job_range(in_tmp):
    assert local.main(["JOB=3:3", "log/t.JOB.log", "touch", "f.JOB"]) == 0
    assert sorted(p.name for p in (in_tmp / "log").iterdir()) == ["t.3.log"]
    assert (in_tmp / "f.3").exists()


def test_local_failure_names_first_failed_log(in_tmp, capsys):
    rc = local.main(["JOB=1:4", "exp/log/decode.JOB.log", "test", "JOB", "-lt", "3"])
    assert rc == 1
    err = capsys.readouterr().err
    assert "run.py: 2 / 4 failed, log is in exp/log/decode.3.log" in err
    assert "# Ended (code 1)" in (in_tmp / "exp/log/decode.4.log").read_text()
    assert "# Ended (code 0)" in (in_tmp / "exp/log/decode.2.log").read_text()


def _max_concurrency(stamps: list[tuple[float, float]]) -> int:
    events = sorted([(s, 1) for s, _ in stamps] + [(e, -1) for _, e in stamps])
    cur = best = 0
    for _, d in events:
        cur += d
        best = max(best, cur)
    return best


@pytest.mark.parametrize("limit", [1, 4])
def test_local_max_jobs_run(in_tmp, limit):
    cmd = "s=$(date +%s.%N); sleep 0.4; echo $s $(date +%s.%N) > t.JOB"
    assert local.main(["--max-jobs-run", str(limit), "JOB=1:4", "log/j.JOB.log", cmd]) == 0
    stamps = [tuple(map(float, (in_tmp / f"t.{j}").read_text().split())) for j in range(1, 5)]
    conc = _max_concurrency(stamps)
    if limit == 1:
        assert conc == 1
    else:
        assert 1 < conc <= limit


def test_local_num_threads_sets_omp(in_tmp):
    assert local.main(["--num-threads", "3", "--mem", "2G", "--gpu", "1", "log", "echo omp=$OMP_NUM_THREADS"]) == 0
    text = (in_tmp / "log").read_text()
    assert "omp=3" in text and "threads=3" in text


def test_local_ignores_queue_options_but_not_bad_values(in_tmp, capsys):
    """As run.pl: a queue option it has no use for (--partition gpu) is dropped; a bad value of one
    it reads is an error before anything runs."""
    assert local.main(["--partition", "gpu", "log", "true"]) == 0
    assert (in_tmp / "log").exists()
    assert local.main(["--mem", "lots", "log2", "true"]) == 1
    assert "--mem lots" in capsys.readouterr().err
    assert not (in_tmp / "log2").exists()


def test_local_wrapper_subprocess(tmp_path):
    res = run_wrapper(
        "run.py", "SPLIT=1:2", "logs/s.SPLIT.log", "echo", "part SPLIT", "|", "tr", "a-z", "A-Z", cwd=tmp_path
    )
    assert res.returncode == 0, res.stderr
    assert "PART 2" in (tmp_path / "logs/s.2.log").read_text()
    res = run_wrapper("run.py", "JOB=1:3", "logs/f.JOB.log", "exit $(( JOB == 2 ? 7 : 0 ))", cwd=tmp_path)
    assert res.returncode != 0
    assert "1 / 3 failed, log is in logs/f.2.log" in res.stderr
    assert "# Ended (code 7)" in (tmp_path / "logs/f.2.log").read_text()


# ---------------------------------------------------------------- split_scp


@pytest.mark.parametrize("n_lines, n", [(10, 3), (3, 3), (7, 1), (100, 7), (5, 4)])
def test_split_scp_contiguous_balanced(n_lines, n):
    lines = [f"utt{i:03d} /x/{i}.wav" for i in range(n_lines)]
    parts = split_mod.split_scp(lines, n)
    assert len(parts) == n
    assert [line for p in parts for line in p] == lines
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


def test_split_scp_too_many_parts():
    with pytest.raises(ValueError, match="3 lines into 4 parts"):
        split_mod.split_scp(["a 1", "b 2", "c 3"], 4)


def _speaker_lines(spec):
    lines = [f"{spk}-u{u} v" for spk, count in spec for u in range(count)]
    return lines, {line.split()[0]: line.split("-")[0] for line in lines}


# (speakers with their utterance counts, parts) -> part sizes, as Kaldi's split_scp.pl --utt2spk
# makes them (each case run through Kaldi's script, 2026-12-02)
KALDI_SPEAKER_SPLITS = [
    ([("s0", 3), ("s1", 1), ("s2", 1), ("s3", 4), ("s4", 1)], 3, [4, 5, 1]),
    ([("a", 10), ("b", 1), ("c", 1), ("d", 1)], 2, [10, 3]),
    ([("a", 1), ("b", 1), ("c", 1), ("d", 1), ("e", 6)], 3, [2, 2, 6]),
    ([(f"s{i:02d}", (i * 7) % 5 + 1) for i in range(11)], 4, [9, 7, 8, 7]),
]


@pytest.mark.parametrize("spec, n, sizes", KALDI_SPEAKER_SPLITS)
def test_split_scp_by_speaker_as_kaldi(spec, n, sizes):
    lines, utt2spk = _speaker_lines(spec)
    parts = split_mod.split_scp_by_speaker(lines, n, utt2spk)
    assert [len(p) for p in parts] == sizes
    assert [line for p in parts for line in p] == lines
    speakers = [{utt2spk[line.split()[0]] for line in p} for p in parts]
    assert sum(len(s) for s in speakers) == len(spec), "no speaker in two parts"


def test_split_scp_by_speaker_regroups_as_kaldi():
    """A speaker's lines are gathered from wherever they are (Kaldi regroups, it does not refuse)."""
    lines = ["a1 x", "b1 x", "a2 x", "c1 x", "b2 x"]
    utt2spk = {"a1": "a", "a2": "a", "b1": "b", "b2": "b", "c1": "c"}
    assert split_mod.split_scp_by_speaker(lines, 2, utt2spk) == [["a1 x", "a2 x"], ["b1 x", "b2 x", "c1 x"]]
    with pytest.raises(ValueError, match="3 speakers into 4 parts"):
        split_mod.split_scp_by_speaker(lines, 4, utt2spk)
    with pytest.raises(ValueError, match="no utterance d1 in utt2spk"):
        split_mod.split_scp_by_speaker([*lines, "d1 x"], 2, utt2spk)


def test_split_scp_one_job(tmp_path, capsys):
    """Kaldi's ``-j NUM_JOBS JOB_ID [--one-based]``: only that part, to the output or stdout."""
    scp = tmp_path / "in.scp"
    scp.write_text("a1 x\nb1 x\na2 x\nc1 x\nb2 x\n")
    assert split_mod.main(["-j", "3", "1", "--one-based", str(scp)]) == 0
    assert capsys.readouterr().out == "a1 x\nb1 x\n"
    assert split_mod.main(["-j", "3", "2", str(scp), str(tmp_path / "o")]) == 0
    assert (tmp_path / "o").read_text() == "b2 x\n"
    with pytest.raises(SystemExit):
        split_mod.main(["-j", "3", "3", str(scp)])


def test_split_scp_cli(tmp_path):
    scp = tmp_path / "wav.scp"
    scp.write_text("".join(f"u{i} /a/{i}.wav\n" for i in range(5)))
    outs = [str(tmp_path / f"split/keys.{k}.scp") for k in (1, 2)]
    res = run_wrapper("split_scp.py", str(scp), *outs, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert Path(outs[0]).read_text() == "u0 /a/0.wav\nu1 /a/1.wav\nu2 /a/2.wav\n"
    assert Path(outs[1]).read_text() == "u3 /a/3.wav\nu4 /a/4.wav\n"
    res = run_wrapper("split_scp.py", str(scp), *[f"o.{k}" for k in range(6)], cwd=tmp_path)
    assert res.returncode == 1
    assert str(scp) in res.stderr and "5 lines into 6 parts" in res.stderr
    utt2spk = tmp_path / "utt2spk"
    utt2spk.write_text("u0 a\nu1 a\nu2 a\nu3 b\nu4 c\n")
    assert split_mod.main([f"--utt2spk={utt2spk}", str(scp), *outs]) == 0  # Kaldi's spelling
    assert Path(outs[0]).read_text().count("\n") == 3


# ---------------------------------------------------------------- slurm config (pure)

ESPNET_STYLE = """\
# Default configuration
command sbatch --export=PATH
option name=* --job-name $0
option time=* --time $0
option mem=* --mem-per-cpu $0
option mem=0
option num_threads=* --cpus-per-task $0
option num_threads=1 --cpus-per-task 1
option num_nodes=* --nodes $0
default gpu=0
option gpu=0
option gpu=* -p gpu --gres=gpu:$0 -c $0  # Recommend allocating more CPU than, or equal to the number of GPU
# note: the --max-jobs-run option is supported as a special case
"""


def test_parse_espnet_style_slurm_conf():
    cfg = slurm.parse_slurm_config(ESPNET_STYLE, "slurm.conf")
    assert cfg.command == ["sbatch", "--export=PATH"]
    assert cfg.defaults == {"gpu": "0"}
    assert cfg.rules["gpu"]["*"] == ["-p", "gpu", "--gres=gpu:$0", "-c", "$0"]
    assert cfg.rules["mem"]["0"] == []
    assert slurm.sbatch_options(cfg, {}) == []
    assert slurm.sbatch_options(cfg, {"gpu": "2", "mem": "4G", "num_threads": "1", "time": "1:00:00"}) == [
        "-p",
        "gpu",
        "--gres=gpu:2",
        "-c",
        "2",
        "--mem-per-cpu",
        "4G",
        "--cpus-per-task",
        "1",
        "--time",
        "1:00:00",
    ]
    assert slurm.sbatch_options(cfg, {"num_threads": "4", "config": "x", "max_jobs_run": "2"}) == [
        "--cpus-per-task",
        "4",
    ]


def test_recipe_slurm_conf_mapping():
    cfg = slurm.load_slurm_config(SLURM_CONF)
    assert cfg.command[0] == "sbatch" and "--export=PATH" in cfg.command
    opts = slurm.sbatch_options(cfg, {"mem": "4G", "gpu": "1", "num_threads": "2", "time": "10"})
    assert opts == ["--gres=gpu:1", "--mem", "4G", "--cpus-per-task", "2", "--time", "10"]
    assert slurm.sbatch_options(cfg, {"mem": "0", "gpu": "0"}) == []
    # the built-in default is the same mapping
    default = slurm.parse_slurm_config(slurm.DEFAULT_CONFIG)
    assert (default.command, default.rules, default.defaults) == (cfg.command, cfg.rules, cfg.defaults)


@pytest.mark.parametrize(
    "text, message",
    [
        ("option mem=* --mem $0\n", "no 'command' line"),
        ("command sbatch\nfoo bar\n", "unknown keyword 'foo'"),
        ("command sbatch\noption mem --mem\n", "expected 'option NAME=VALUE"),
        ("command sbatch\ndefault gpu=0\n", "no 'option gpu=...' rule"),
    ],
)
def test_slurm_conf_errors(text, message):
    with pytest.raises(RunnerError, match=re.escape(message)):
        slurm.parse_slurm_config(text, "bad.conf")


def test_sbatch_options_without_rule():
    cfg = slurm.parse_slurm_config("command sbatch\noption gpu=0\n")
    with pytest.raises(RunnerError, match="no rule for this value"):
        slurm.sbatch_options(cfg, {"gpu": "2"})
    with pytest.raises(RunnerError, match="no rule for it"):
        slurm.sbatch_options(cfg, {"mem": "2G"})


def test_slurm_batch_script_and_submit_command(in_tmp):
    spec = parse_command_line(
        [
            "--max-jobs-run",
            "2",
            "--num-threads",
            "2",
            "JOB=2:4",
            "exp/log/dec.JOB.log",
            "echo",
            "a JOB",
            "$FROM_PATH_SH",
        ],
        "slurm.py",
    )
    runner = slurm.SlurmRunner(spec, slurm.load_slurm_config(SLURM_CONF))
    cmd = runner.prepare()
    assert cmd[:2] == ["sbatch", "--export=PATH"]
    assert "--array=2-4%2" in cmd and "--cpus-per-task" in cmd and "--output=exp/log/q/dec.%a.out" in cmd
    script = (in_tmp / "exp/log/q/dec.sh").read_text()
    assert cmd[-1] == "exp/log/q/dec.sh"
    assert """  3) cmd='echo "a 3" $FROM_PATH_SH'; log=exp/log/dec.3.log; marker=exp/log/q/dec.3.done ;;""" in script
    assert "export OMP_NUM_THREADS=2" in script
    res = subprocess.run(["bash", "-n", str(in_tmp / "exp/log/q/dec.sh")], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    # run one array task by hand, as Slurm would
    (in_tmp / "path.sh").write_text("export FROM_PATH_SH=yes\n")
    env = dict(os.environ, SLURM_ARRAY_TASK_ID="3")
    res = subprocess.run(["bash", "exp/log/q/dec.sh"], cwd=in_tmp, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert (in_tmp / "exp/log/q/dec.3.done").read_text() == "0\n"
    assert "\na 3 yes\n" in (in_tmp / "exp/log/dec.3.log").read_text()


def test_slurm_submission_failure_names_command(in_tmp, capsys):
    conf = in_tmp / "missing.conf"
    conf.write_text("command /nonexistent/sbatch --export=PATH\noption mem=* --mem $0\n")
    assert slurm.main(["--config", str(conf), "--mem", "1G", "JOB=1:2", "log.JOB", "true"]) == 1
    err = capsys.readouterr().err
    assert "/nonexistent/sbatch --export=PATH --mem 1G --parsable --array=1-2" in err and "not found" in err
    conf.write_text("command false\n")
    assert slurm.main(["--config", str(conf), "log", "true"]) == 1
    assert "submission failed (exit 1): false --parsable" in capsys.readouterr().err


def test_slurm_unknown_option_and_config_defined_option(in_tmp, capsys):
    assert slurm.main(["--partition", "gpu", "log", "true"]) == 1
    assert "unknown option --partition" in capsys.readouterr().err
    cfg = slurm.parse_slurm_config("command sbatch\noption partition=* -p $0\n")
    assert slurm.sbatch_options(cfg, {"partition": "gpu"}) == ["-p", "gpu"]


def test_common_failure_message_counts_vanished():
    spec = parse_command_line(["JOB=1:3", "l.JOB", "x"], "slurm.py")
    assert common.failure_message("slurm.py", spec, {1: 0, 2: 0, 3: 0}) is None
    msg = common.failure_message("slurm.py", spec, {1: 0, 2: None, 3: 1})
    assert msg.startswith("slurm.py: 2 / 3 failed, log is in l.2")


def test_local_sigterm_kills_jobs(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, str(UTILS / "run.py"), "JOB=1:2", "log/k.JOB.log", "echo started; sleep 60"],
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        logs = [tmp_path / f"log/k.{j}.log" for j in (1, 2)]
        deadline = time.monotonic() + 30
        # the jobs' own output line (the log header also holds the word, in the command line)
        while not all(p.exists() and "started" in p.read_text().splitlines() for p in logs):
            assert time.monotonic() < deadline, "the jobs did not start"
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and "interrupted" in err
    for p in logs:
        assert "# Ended (code 143)" in p.read_text()


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def _job_pids(directory, jobs=(1, 2), timeout=30.0) -> list[int]:
    """The pids the jobs wrote to ``sleep.JOB`` once they all started."""
    deadline = time.monotonic() + timeout
    files = [directory / f"sleep.{j}" for j in jobs]
    while not all(f.exists() and f.read_text().strip() for f in files):
        assert time.monotonic() < deadline, "the jobs did not start"
        time.sleep(0.1)
    return [int(f.read_text()) for f in files]


def _wait_gone(pids, timeout=15.0) -> None:
    deadline = time.monotonic() + timeout
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)


def test_killing_the_recipes_process_group_stops_the_jobs(tmp_path):
    """kill -9 -- -PGID of a recipe (here: the runner in a group of its own, as a recipe's shell
    puts it) also ends its jobs and what they started: they share the group, as with run.pl."""
    cmd = "sleep 60 & echo $! > sleep.JOB; echo started; wait"
    proc = subprocess.Popen(
        [sys.executable, str(UTILS / "run.py"), "JOB=1:2", "log/g.JOB.log", cmd],
        cwd=tmp_path,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    pids = []
    try:
        pids = _job_pids(tmp_path)
        assert all(_alive(p) for p in pids)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        _wait_gone(pids)
        assert not any(_alive(p) for p in pids), "a job outlived its recipe's process group"
    finally:
        for p in pids:
            with contextlib.suppress(OSError):
                os.kill(p, signal.SIGKILL)


def test_killing_only_the_recipes_shell_stops_the_jobs(tmp_path):
    """SIGTERM (or SIGKILL) to the recipe's shell alone: bash dies at once, leaving its runner;
    the runner sees its parent go and stops the jobs."""
    cmd = "sleep 60 & echo $! > sleep.JOB; echo started; wait"
    shell = subprocess.Popen(
        ["bash", "-c", f"{sys.executable} {UTILS / 'run.py'} JOB=1:2 log/p.JOB.log {shlex.quote(cmd)}; echo after"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    pids = []
    try:
        pids = _job_pids(tmp_path)
        shell.send_signal(signal.SIGKILL)
        shell.wait(timeout=10)
        _wait_gone(pids)
        assert not any(_alive(p) for p in pids), "the jobs outlived the recipe's shell"
        for j in (1, 2):
            assert "# Ended (code 143)" in (tmp_path / f"log/p.{j}.log").read_text()
    finally:
        for p in pids:
            with contextlib.suppress(OSError):
                os.kill(p, signal.SIGKILL)
        with contextlib.suppress(OSError):
            os.killpg(shell.pid, signal.SIGKILL)
