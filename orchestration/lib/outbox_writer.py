"""The outbox's file writer: a small process of its own that the follow-up mailer feeds batch by batch.

Why a process and not the mailer's thread: putting one message into the outbox is four system calls
(create, write, close, rename), and a Python thread gives up the GIL around each one and must win it
back afterwards. The mailer runs beside the analysis steps, threads of the same process that hold
the GIL in pandas and NumPy code, so every one of those calls queued for the GIL again. Beside the
analyses at a million customers, the mailer's 54k files took 7-28 s to write, against 2.3-7 s alone
(the rest of the spread is the disk: tests/bench/results/NOTES.md); against a thread running pure
Python, 20k files took 350 s instead of 1 s. This process has a GIL
of its own, the mailer hands it a whole batch in one pipe write, and it writes batch i while the
mailer renders batch i+1: beside the same analyses the whole mailing went from 17.8-19.7 s to
7.2-7.5 s (alternating runs, `tests/bench/results/NOTES.md`).

Protocol (stdin to stdout, integers little-endian):

* request, one per batch: u64 payload length, then per message a u32 file-name length, a u32 data
  length, the file name (ASCII, no path separator) and the message bytes;
* reply, after the batch's files are written and one sync(2): u64 files written, f64 seconds
  writing, f64 seconds syncing, u32 length and UTF-8 text of the error that stopped the batch (empty
  when every file was written). A count short of the batch names the file that failed: the one at
  that index. After a failure the writer exits.

Each file is written to a dot-named temporary file and renamed into place, so it appears whole or
not at all (see `orchestration.lib.followups` for the delivery guarantee). Standard library only, so
the process starts in a few milliseconds.
"""

from __future__ import annotations

import contextlib
import os
import struct
import sys
import time
from typing import BinaryIO

REQUEST_HEADER = struct.Struct("<Q")
MESSAGE_HEADER = struct.Struct("<II")
REPLY_HEADER = struct.Struct("<QddI")


def encode_batch(messages: list[tuple[str, bytes]]) -> bytes:
    """One request: the batch's (file name, message bytes) pairs, framed as the module docstring says."""
    parts: list[bytes] = []
    for file_name, data in messages:
        name = file_name.encode("ascii")
        parts += (MESSAGE_HEADER.pack(len(name), len(data)), name, data)
    payload = b"".join(parts)
    return REQUEST_HEADER.pack(len(payload)) + payload


def decode_reply(reply: bytes) -> tuple[int, float, float, str]:
    """(files written, write seconds, sync seconds, error text) from one whole reply."""
    written, write_seconds, sync_seconds, error_length = REPLY_HEADER.unpack_from(reply)
    return written, write_seconds, sync_seconds, reply[REPLY_HEADER.size : REPLY_HEADER.size + error_length].decode()


def write_message(outbox_dir: str, file_name: str, data: bytes | memoryview) -> None:
    """Put one message into the outbox whole: write a dot-named temporary file, then rename it into place.

    A dot-name is skipped by pickup agents that scan for *.eml, and the rename makes the file appear
    complete. The same file name on a repeat replaces the earlier copy instead of adding one.
    No fsync here: the batch is made durable with one sync before the mailer records it.
    """
    if os.sep in file_name or file_name.startswith("."):
        raise ValueError(f"not a plain outbox file name: {file_name!r}")
    target = os.path.join(outbox_dir, file_name)
    tmp = os.path.join(outbox_dir, f".{file_name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def sync_to_disk() -> None:
    """Flush written files (data and renames) to disk: one sync(2) per batch, not two fsyncs per file.

    os.sync is POSIX-only; where it is missing the OS's own write-back is all there is.
    """
    sync = getattr(os, "sync", None)
    if sync is not None:
        sync()


def _write_batch(outbox_dir: str, payload: memoryview) -> tuple[int, float, float, str]:
    started = time.perf_counter()
    written, error, position = 0, "", 0
    try:
        while position < len(payload):
            name_length, data_length = MESSAGE_HEADER.unpack_from(payload, position)
            position += MESSAGE_HEADER.size
            file_name = bytes(payload[position : position + name_length]).decode("ascii")
            position += name_length
            write_message(outbox_dir, file_name, payload[position : position + data_length])
            position += data_length
            written += 1
    except (OSError, ValueError) as exc:
        error = str(exc) or type(exc).__name__
    wrote = time.perf_counter()
    # Also after a failure: the files before it are recorded by the mailer, so they must be on disk.
    sync_to_disk()
    return written, wrote - started, time.perf_counter() - wrote, error


def serve(outbox_dir: str, requests: BinaryIO, replies: BinaryIO) -> int:
    """Write every batch read from `requests` and answer each on `replies`; 0 at end of input, 1 after a failure."""
    while True:
        header = requests.read(REQUEST_HEADER.size)
        if len(header) < REQUEST_HEADER.size:
            return 0  # the mailer closed its end (or died): nothing half-read is written
        (length,) = REQUEST_HEADER.unpack(header)
        payload = requests.read(length)
        if len(payload) < length:
            return 0
        written, write_seconds, sync_seconds, error = _write_batch(outbox_dir, memoryview(payload))
        text = error.encode()
        try:
            replies.write(REPLY_HEADER.pack(written, write_seconds, sync_seconds, len(text)) + text)
            replies.flush()
        except BrokenPipeError:
            return 0  # the mailer died: the files are written and synced, its next run records them
        if error:
            return 1


def main(argv: list[str] | None = None) -> int:
    """`python -m orchestration.lib.outbox_writer OUTBOX_DIR`: serve batches on stdin and stdout."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m orchestration.lib.outbox_writer OUTBOX_DIR", file=sys.stderr)
        return 2
    return serve(args[0], sys.stdin.buffer, sys.stdout.buffer)


if __name__ == "__main__":
    sys.exit(main())
