"""Image files decoded in a child process, ahead of the model's forward passes.

The safe loader (:func:`vlmtrust.core.images.load_image`) holds the GIL for most of a small
image's decode (Pillow parses PNG chunks in Python; libspng's binding does not release it), so
a decoding *thread* slows the model's own Python-side work instead of overlapping it. A child
process runs on another core: the runner sends it the files of the next batches while the
model computes the current one, and receives raw RGB pixels back.

Contract:

* the pixels, the loader's note (``image.info[NOTE_KEY]``) and the one-line error of an
  unreadable file are exactly what :func:`~vlmtrust.core.images.load_image` gives in-process;
* the child is ``python -m vlmtrust.runner.decoder`` (the same interpreter and the same
  ``vlmtrust`` as this process), started on first use, once per process, and shared by every
  run; until it reports ready, and if it ever dies or cannot start, files are decoded
  in-process — nothing is lost and nothing changes but the speed;
* :func:`enabled`: ``VLMTRUST_DECODE_WORKER`` = ``on`` / ``off`` / ``auto`` (default). ``auto``
  uses it only when a core is left over by torch's threads (``--threads``), as a decode
  process on a core torch computes on only takes time from torch.

Wire format (both ways over pipes): a request is one JSON line ``{"id", "jobs": [[path,
max_pixels, max_aspect_ratio], ...]}``; the answer one JSON line ``{"id", "items": [{"w", "h",
"note"} | {"error"}]}`` followed by the items' RGB bytes, ``w * h * 3`` each, in order.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from PIL import Image

from vlmtrust.core.errors import ImageLoadError
from vlmtrust.core.images import NOTE_KEY

log = logging.getLogger(__name__)

ENV = "VLMTRUST_DECODE_WORKER"
READY = b"vlmtrust-decoder ready\n"

Job = tuple[str, int, float]
"""``(path, max_pixels, max_aspect_ratio)`` of one file."""


def enabled() -> bool:
    """Whether the runner decodes files in the child process (see the module docstring)."""
    value = os.environ.get(ENV, "auto").strip().lower()
    if value in ("on", "1", "true", "yes"):
        return True
    if value in ("off", "0", "false", "no"):
        return False
    from vlmtrust.runner.compute import threads_in_use

    cores = os.cpu_count() or 1
    threads = threads_in_use()
    return cores >= 2 and threads is not None and threads < cores


@dataclass
class _Answer:
    done: threading.Event = field(default_factory=threading.Event)
    items: list[Image.Image | ImageLoadError] = field(default_factory=list)
    failed: bool = False


class Decoder:
    """The parent's handle on one decoding child process (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._answers: dict[int, _Answer] = {}
        self._next = 0
        self.ready = threading.Event()
        self.dead = threading.Event()
        src = str(Path(__file__).resolve().parents[2])  # the folder holding this vlmtrust
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH", "")) if p)
        env[ENV] = "off"
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "vlmtrust.runner.decoder"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        _widen(self._proc.stdout)
        self._reader = threading.Thread(target=self._read, name="vlmtrust-decoder", daemon=True)
        self._reader.start()

    @property
    def usable(self) -> bool:
        """Started, answering, and not dead."""
        return self.ready.is_set() and not self.dead.is_set()

    def submit(self, jobs: Sequence[Job]) -> int:
        """Send ``jobs`` to the child; a ticket for :meth:`result`. Raises ``OSError`` if dead."""
        with self._lock:
            if self.dead.is_set():
                raise OSError("decoder process is gone")
            ticket = self._next
            self._next += 1
            self._answers[ticket] = _Answer()
            line = json.dumps({"id": ticket, "jobs": [list(j) for j in jobs]}) + "\n"
            stdin = self._proc.stdin
            assert stdin is not None
            try:
                stdin.write(line.encode())
                stdin.flush()
            except (OSError, ValueError) as e:
                self._die()
                raise OSError("decoder process is gone") from e
            return ticket

    def result(self, ticket: int) -> list[Image.Image | ImageLoadError]:
        """The decoded images (or loader errors) of a ticket, in job order.

        Raises ``OSError`` when the child died before answering it.
        """
        answer = self._answers[ticket]
        answer.done.wait()
        self._answers.pop(ticket, None)
        if answer.failed:
            raise OSError("decoder process is gone")
        return answer.items

    def _read(self) -> None:
        out = self._proc.stdout
        assert out is not None
        try:
            if out.readline() != READY:
                return
            self.ready.set()
            while True:
                line = out.readline()
                if not line:
                    return
                head = json.loads(line)
                sizes = [(int(it["w"]), int(it["h"])) for it in head["items"] if "error" not in it]
                total = sum(w * h * 3 for w, h in sizes)
                payload = memoryview(out.read(total))  # one read: the GIL taken once per answer
                if len(payload) != total:
                    return
                items: list[Image.Image | ImageLoadError] = []
                at = 0
                for it in head["items"]:
                    if "error" in it:
                        items.append(ImageLoadError(str(it["error"])))
                        continue
                    w, h = int(it["w"]), int(it["h"])
                    im = Image.frombytes("RGB", (w, h), payload[at : at + w * h * 3])
                    at += w * h * 3
                    if it.get("note"):
                        im.info[NOTE_KEY] = str(it["note"])
                    items.append(im)
                answer = self._answers.get(int(head["id"]))
                if answer is not None:
                    answer.items = items
                    answer.done.set()
        except Exception:  # a broken pipe or a garbled answer: decode in-process from now on
            log.debug("decoder process answer unreadable", exc_info=True)
        finally:
            self._die()

    def _die(self) -> None:
        with self._lock:
            self.dead.set()
            for answer in self._answers.values():
                if not answer.done.is_set():
                    answer.failed = True
                    answer.done.set()
        try:
            if self._proc.poll() is None:
                self._proc.kill()
        except OSError:
            pass

    def close(self) -> None:
        """Stop the child (its stdin closed; killed if it lingers)."""
        try:
            if self._proc.stdin is not None:
                self._proc.stdin.close()
            self._proc.wait(timeout=2)
        except (OSError, subprocess.TimeoutExpired, ValueError):
            self._proc.kill()
        self.dead.set()


PIPE_BYTES = 1 << 20
"""Pipe capacity asked for (Linux): a batch of small images' pixels fits in one write."""


def _widen(pipe: IO[bytes] | None) -> None:
    """Grow ``pipe``'s kernel buffer to :data:`PIPE_BYTES` where the system allows it."""
    try:
        import fcntl
    except ImportError:  # Windows: the default pipe
        return
    setpipe = getattr(fcntl, "F_SETPIPE_SZ", None)
    if pipe is None or setpipe is None:
        return
    with contextlib.suppress(OSError):  # above /proc/sys/fs/pipe-max-size: keep the default
        fcntl.fcntl(pipe.fileno(), setpipe, PIPE_BYTES)


_shared: Decoder | None = None
_shared_lock = threading.Lock()


def shared() -> Decoder | None:
    """The process's decoder (started on first call); None when it cannot start or died."""
    global _shared
    with _shared_lock:
        if _shared is not None and _shared.dead.is_set():
            return None
        if _shared is None:
            try:
                _shared = Decoder()
            except OSError:
                log.debug("decoder process did not start", exc_info=True)
                return None
            atexit.register(_shared.close)
        return _shared


# --------------------------------------------------------------------------------------------
# the child


def _serve(inp: IO[bytes], out: IO[bytes]) -> None:
    from vlmtrust.core.errors import InputError
    from vlmtrust.core.images import load_image

    out.write(READY)
    out.flush()
    for line in inp:
        req: dict[str, Any] = json.loads(line)
        heads: list[dict[str, Any]] = []
        blobs: list[bytes] = []
        for path, max_pixels, max_ratio in req["jobs"]:
            try:
                im = load_image(path, max_pixels=int(max_pixels), max_aspect_ratio=float(max_ratio))
            except InputError as e:
                heads.append({"error": str(e)})
                continue
            heads.append({"w": im.width, "h": im.height, "note": im.info.get(NOTE_KEY, "")})
            blobs.append(im.tobytes())
        out.write((json.dumps({"id": req["id"], "items": heads}) + "\n").encode())
        for b in blobs:
            out.write(b)
        out.flush()


if __name__ == "__main__":
    _serve(sys.stdin.buffer, sys.stdout.buffer)
