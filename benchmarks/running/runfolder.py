"""A benchmark's run folder (``<output>/<task>/<entry>/<variant>/``): one process at a time, one set of options, one
result.

- **Lock.** ``.lock`` is held (``flock``) for the whole invocation and names its owner. The kernel drops the lock when
  the process dies, even by ``kill -9``, so a stale lock never blocks a resume. A second run into the same folder is
  refused with the owner named, instead of deleting the first one's seed folders and sharing its CSV log.
- **Options.** ``run.json`` records what the invocation was asked for beyond the config (seeds, precision, batch limits,
  threads, determinism, devices). ``--resume`` with other options is refused: the result would record only the last
  part's options.
- **One result.** ``result.json`` names the result file before it is written. A ``--resume`` of a finished run says
  where its result is and writes no second one; a resume after a kill during the artifact copy or the result write
  finishes that same file.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

from benchmarks.core.results import Result, ResultError, read_result, write_atomic


class RunFolderError(ValueError):
    """The run folder is in use, or a --resume does not match the run it would continue; one line for the user."""


class RunFolder:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._lock_fd: int | None = None

    def lock(self) -> None:
        """Hold ``.lock`` until the process exits; refuse when another live process holds it."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise RunFolderError(
                f"{self.root} is in use by {owner}: wait for it to finish, or give this run another --output-dir"
            ) from None
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
        owner = f"pid {os.getpid()} on {socket.gethostname()} (started {started}: {' '.join(sys.argv)[:300]})"
        os.ftruncate(fd, 0)
        os.pwrite(fd, owner.encode(), 0)
        self._lock_fd = fd  # kept open: closing it would release the lock

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    @property
    def options_file(self) -> Path:
        return self.root / "run.json"

    def check_options(self, options: dict, resume: bool) -> None:
        """Record ``options`` for a fresh run; for a resume, refuse options that differ from the recorded ones."""
        if resume and self.options_file.exists():
            try:
                recorded = json.loads(self.options_file.read_text())
            except (OSError, ValueError):
                recorded = None
            if not isinstance(recorded, dict):
                raise RunFolderError(f"{self.options_file} is damaged, so the options of the run a --resume would "
                                     "continue are unknown: run without --resume to start it over")  # fmt: skip
            keys = sorted(options.keys() | recorded.keys())
            differ = [
                f"{k} {recorded.get(k)!r} → {options.get(k)!r}" for k in keys if recorded.get(k) != options.get(k)
            ]
            if differ:
                raise RunFolderError(
                    f"--resume with other options than the run it continues ({'; '.join(differ)}): resume with "
                    f"the options it started with, or run without --resume to start it over"
                )
        write_atomic(json.dumps(options, indent=2, sort_keys=True) + "\n", self.options_file, overwrite=True)

    def nothing_to_resume(self) -> str | None:
        """For a --resume: a line saying that this folder holds no earlier run (and which runs of the entry there are,
        with another config, precision or budget: part of the folder's name), or None when there is one."""
        if self.options_file.exists():
            return None
        others = sorted(p.name for p in self.root.parent.iterdir() if p.is_dir() and p != self.root)
        kept = f"; this entry's runs with another config, precision or budget: {', '.join(others)}" if others else ""
        return f"--resume: no earlier run in {self.root}, so it starts from the beginning{kept}"

    @property
    def result_marker(self) -> Path:
        return self.root / "result.json"

    def reserved_result(self) -> Path | None:
        """The result file this run named before writing it, if it did."""
        try:
            return Path(json.loads(self.result_marker.read_text())["path"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def finished(self) -> tuple[Result, Path] | None:
        """(result, path) when this run's result file was written and reads back as a valid result."""
        path = self.reserved_result()
        if path is None or not path.exists():
            return None
        try:
            return read_result(path), path
        except ResultError:
            return None

    def reserve_result(self, path: Path) -> None:
        write_atomic(json.dumps({"path": str(path)}) + "\n", self.result_marker, overwrite=True)

    def forget_result(self) -> None:
        """A fresh (not resumed) run makes a new result: the previous invocation's marker goes."""
        self.result_marker.unlink(missing_ok=True)
