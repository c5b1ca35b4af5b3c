"""Decoding output: ``key value`` files written as the job goes, resumable after a kill."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


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
        # the first file marks completion, so it is written last
        for name in list(self.paths)[1:] + [next(iter(self.paths))]:
            for key, value in rows[name]:
                self.files[name].write(f"{key} {value}\n")
            self.files[name].flush()

    def close(self) -> None:
        for f in self.files.values():
            f.close()
