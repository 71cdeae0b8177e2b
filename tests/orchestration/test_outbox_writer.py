"""The outbox writer's protocol, served in-process on byte streams (the mailer's tests run it as a process)."""

from __future__ import annotations

import io
from pathlib import Path

from orchestration.lib import outbox_writer


def _replies(stream: bytes) -> list[tuple[int, float, float, str]]:
    replies, position = [], 0
    while position < len(stream):
        error_length = outbox_writer.REPLY_HEADER.unpack_from(stream, position)[-1]
        end = position + outbox_writer.REPLY_HEADER.size + error_length
        replies.append(outbox_writer.decode_reply(stream[position:end]))
        position = end
    return replies


def test_serve_writes_each_batch_whole_and_answers_once_per_batch(tmp_path: Path) -> None:
    first = [("followup-a.eml", b"A" * 70_000), ("followup-b.eml", b"")]
    second = [("followup-a.eml", b"A, again")]  # a repeat replaces the earlier file
    requests = io.BytesIO(outbox_writer.encode_batch(first) + outbox_writer.encode_batch(second))
    replies = io.BytesIO()

    status = outbox_writer.serve(str(tmp_path), requests, replies)

    assert status == 0
    answered = _replies(replies.getvalue())
    assert [(written, error) for written, _, _, error in answered] == [(2, ""), (1, "")]
    assert all(write >= 0 and sync >= 0 for _, write, sync, _ in answered)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == {
        "followup-a.eml": b"A, again",
        "followup-b.eml": b"",
    }


def test_serve_stops_at_the_file_that_fails_and_names_it(tmp_path: Path) -> None:
    (tmp_path / "followup-b.eml").mkdir()  # a directory where a file should go
    batch = [("followup-a.eml", b"a"), ("followup-b.eml", b"b"), ("followup-c.eml", b"c")]
    later = [("followup-d.eml", b"d")]
    requests = io.BytesIO(outbox_writer.encode_batch(batch) + outbox_writer.encode_batch(later))
    replies = io.BytesIO()

    status = outbox_writer.serve(str(tmp_path), requests, replies)

    assert status == 1
    [(written, _, _, error)] = _replies(replies.getvalue())  # no answer to the batch after the failure
    assert written == 1 and "followup-b.eml" in error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["followup-a.eml", "followup-b.eml"]
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())


def test_serve_refuses_a_name_that_is_not_a_plain_outbox_file(tmp_path: Path) -> None:
    requests = io.BytesIO(outbox_writer.encode_batch([("../escape.eml", b"x")]))
    replies = io.BytesIO()

    assert outbox_writer.serve(str(tmp_path / "outbox"), requests, replies) == 1
    [(written, _, _, error)] = _replies(replies.getvalue())
    assert written == 0 and "not a plain outbox file name" in error
    assert not (tmp_path / "escape.eml").exists()


def test_serve_writes_nothing_from_a_batch_cut_short(tmp_path: Path) -> None:
    whole = outbox_writer.encode_batch([("followup-a.eml", b"a" * 100)])
    replies = io.BytesIO()

    assert outbox_writer.serve(str(tmp_path), io.BytesIO(whole[:-10]), replies) == 0
    assert replies.getvalue() == b"" and list(tmp_path.iterdir()) == []
