"""Decoding output: ``key value`` files written as the job goes, resumable after a kill."""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import time
from collections.abc import Sequence
from pathlib import Path

import yaml


class ResumableWriter:
    """Append ``key value`` lines to several files of one dir, flushed per batch; knows what is done."""

    def __init__(self, directory: Path, names: Sequence[str]) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.paths = {n: directory / n for n in names}
        self.done = self._recover()
        self.files = {n: p.open("a", encoding="utf-8") for n, p in self.paths.items()}

    def _recover(self) -> set[str]:
        """Keys finished by an earlier run: those in the first file, whose line is complete."""
        first = next(iter(self.paths.values()))
        if not first.exists():
            for p in self.paths.values():
                p.unlink(missing_ok=True)
            return set()
        for p in self.paths.values():
            # drop a torn last line (a job killed mid-write)
            if p.exists():
                raw = p.read_text(encoding="utf-8")
                if raw and not raw.endswith("\n"):
                    p.write_text(raw[: raw.rfind("\n") + 1], encoding="utf-8")
        done = {line.split(" ", 1)[0] for line in first.read_text(encoding="utf-8").splitlines() if line.strip()}
        # keep the other files consistent with the first
        for p in list(self.paths.values())[1:]:
            if p.exists():
                lines = [ln for ln in p.read_text(encoding="utf-8").splitlines() if ln.split(" ", 1)[0] in done]
                p.write_text("".join(ln + "\n" for ln in lines), encoding="utf-8")
        return done

    def write(self, rows: dict[str, list[tuple[str, str]]]) -> None:
        """Append and flush; a failed write (a full disk) names the file. A line torn by it is
        dropped on resume, and the first file, which marks completion, is written last."""
        for name in list(self.paths)[1:] + [next(iter(self.paths))]:
            try:
                for key, value in rows[name]:
                    self.files[name].write(f"{key} {value}\n")
                self.files[name].flush()
            except OSError as exc:
                raise OSError(exc.errno, f"cannot write {self.paths[name]}: {exc.strerror}") from exc

    def close(self) -> None:
        for name, f in self.files.items():
            try:
                f.close()
            except OSError as exc:
                raise OSError(exc.errno, f"cannot write {self.paths[name]}: {exc.strerror}") from exc


class OutputDirBusy(RuntimeError):
    """Another process is writing this output dir; the message names it."""


class SettingsMismatch(RuntimeError):
    """An output dir was made with other settings than this run's; the message lists them."""


class OutputDirLock:
    """One writer per output dir: an exclusive ``flock`` on ``DIR/.lock`` while decoding.

    A second process refuses at once, naming the holder (pid, host, start time). The kernel
    drops the lock when its holder dies, ``kill -9`` included, so a crash never leaves it stale.
    """

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / ".lock"
        self._file = self.path.open("a+", encoding="utf-8")
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.seek(0)
            holder = self._file.read().strip() or "another process"
            self._file.close()
            raise OutputDirBusy(f"{directory} is being written by {holder}; wait for it or stop it") from None
        self._file.seek(0)
        self._file.truncate()
        self._file.write(f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        self._file.flush()

    def release(self) -> None:
        if not self._file.closed:
            self._file.close()  # closing the file drops the flock


def record_settings(directory: Path, settings: dict, overwrite: bool = False) -> None:
    """Make sure ``directory`` holds outputs of ``settings`` only.

    The first run writes ``settings.yaml``. A later run with different settings refuses, naming
    each difference; with ``overwrite`` it deletes the old outputs and starts over. Outputs left
    by a run that recorded no settings are refused the same way (nothing says what made them).
    """
    path = directory / "settings.yaml"
    outputs = directory / "1best_recog"
    if path.is_file():
        old = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        differences = _differences(old, settings)
    elif outputs.exists():
        differences = ["no settings.yaml: the outputs there were made by an unknown run"]
    else:
        differences = []
    if differences:
        if not overwrite:
            raise SettingsMismatch(
                f"{directory} was made with other settings: {'; '.join(differences)}. "
                "Decode into another dir, or pass --overwrite true to start this one over"
            )
        shutil.rmtree(outputs, ignore_errors=True)
    directory.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(settings, sort_keys=True), encoding="utf-8")
    tmp.replace(path)


def _differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} then, {b!r} now")
    return out


#: the utterances a job left out (``--skip_bad_utterances``): ``key reason`` lines in its output dir
SKIPPED = "skipped_utterances"


def merge_outputs(parts: Sequence[Path], keys: Sequence[str], out_dir: Path, names: Sequence[str]) -> None:
    """Join the per-job ``key value`` files of ``parts`` into ``out_dir``, sorted by key.

    Every key of ``keys`` must be in every file exactly once, across all parts, except the keys a
    job listed as skipped (``<part>/../skipped_utterances``, merged into ``out_dir``); otherwise
    nothing is written and the error names the missing, duplicated and unknown keys (so a stage
    that merges never marks an incomplete or doubled result done).
    """
    skipped: dict[str, str] = {}
    for part in parts:
        listing = part.parent / SKIPPED
        if listing.is_file():
            for line in listing.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    key, _, why = line.partition(" ")
                    skipped[key] = why
    wanted = set(keys) - set(skipped)
    merged: dict[str, dict[str, str]] = {}
    problems = []
    for name in names:
        lines: dict[str, str] = {}
        dups = set()
        for part in parts:
            path = part / name
            if not path.is_file():
                problems.append(f"{path} is missing")
                continue
            for line in path.read_text(encoding="utf-8").splitlines():
                if not line.strip():
                    continue
                key = line.split(maxsplit=1)[0]
                if key in lines:
                    dups.add(key)
                lines[key] = line
        missing, unknown = wanted - set(lines), set(lines) - wanted
        for label, found in (("missing", missing), ("duplicated", dups), ("not in the data", unknown)):
            if found:
                problems.append(f"{name}: {len(found)} key(s) {label}: {', '.join(sorted(found)[:5])}")
        merged[name] = lines
    if problems:
        raise ValueError(f"cannot merge {len(parts)} job outputs into {out_dir}: " + "; ".join(problems))
    out_dir.mkdir(parents=True, exist_ok=True)
    listing = out_dir / SKIPPED
    if skipped:
        listing.write_text("".join(f"{k} {skipped[k]}\n" for k in sorted(skipped, key=str.encode)), encoding="utf-8")
    else:
        listing.unlink(missing_ok=True)
    for name, lines in merged.items():
        (out_dir / name).write_text("".join(lines[k] + "\n" for k in sorted(lines, key=str.encode)), encoding="utf-8")
