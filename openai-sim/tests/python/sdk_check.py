#!/usr/bin/env python3
"""Checks that OpenAI's own Python SDK parses what the simulator sends.

Usage: sdk_check.py BASE_URL   (e.g. http://127.0.0.1:8001/v1)

Runs, through the `openai` package: models.list/retrieve, streamed chat with a usage chunk
(plain and with the SSE quirks), a non-streamed chat, streamed PCM speech, a Realtime
transcription session (GA shape: intent=transcription, session.update, append, commit,
deltas, completed), and error cases the SDK must map to its exception classes. When the
simulator serves its control surface (`--control`), replies and transcripts are scripted and
faults injected through it, so the checks are exact; without it those checks are skipped.

Prints one line per check and exits non-zero if any failed. Needs `openai[realtime]`
(scripts/install-tools.sh installs the pinned version).
"""

import base64
import json
import io
import math
import wave
import sys
import traceback
import urllib.error
import urllib.request

import openai
from openai import OpenAI

# Models the proxy uses by default; the list must contain them.
DEFAULT_MODELS = ["gpt-4o-mini-transcribe", "gpt-4.1-mini", "gpt-4o-mini-tts"]
# PCM16 mono at 24 kHz, as the Realtime and Speech APIs use.
RATE_HZ = 24_000


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    base_url = sys.argv[1].rstrip("/")
    sim = Sim(base_url)
    client = OpenAI(base_url=base_url, api_key="sk-sdk-check-0123456789", max_retries=0, timeout=60)
    checks = [
        check_models,
        check_chat_stream,
        check_chat_stream_with_sse_quirks,
        check_chat_whole,
        check_chat_mid_stream_error,
        check_speech_stream,
        check_file_transcription,
        check_file_transcription_stream,
        check_realtime_transcription,
        check_errors,
        check_rate_limit_without_retry_headers,
        check_non_json_errors,
    ]
    print(f"openai {openai.__version__}, control surface {'on' if sim.control else 'off'}")
    failed = 0
    for check in checks:
        try:
            skipped = check(client, sim)
        except Exception:  # noqa: BLE001 - every failure is reported the same way
            failed += 1
            print(f"FAIL {check.__name__}")
            traceback.print_exc(file=sys.stdout)
        else:
            print(f"{'skip' if skipped else 'ok':<5}{check.__name__}")
    print(f"{len(checks) - failed} of {len(checks)} checks passed")
    return 1 if failed else 0


class Sim:
    """The simulator's control surface, if it serves one."""

    def __init__(self, base_url: str) -> None:
        root = base_url[: -len("/v1")] if base_url.endswith("/v1") else base_url
        self.root = root + "/_sim"
        self.control = self._request("GET", "/config", None, allow_missing=True) is not None

    def _request(self, method: str, path: str, body, allow_missing: bool = False):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.root + path, data=data, method=method)
        request.add_header("content-type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            if allow_missing and error.code == 404:
                return None
            raise

    def reply(self, text: str) -> None:
        self._request("POST", "/replies", {"text": text})

    def transcript(self, text: str) -> None:
        self._request("POST", "/transcripts", {"text": text})

    def fault(self, stage: str, **spec) -> None:
        self._request("POST", "/faults", {"stage": stage, **spec})

    def config(self, patch: dict) -> dict:
        return self._request("PATCH", "/config", patch)


def check_models(client: OpenAI, sim: Sim):
    models = list(client.models.list())
    ids = {model.id for model in models}
    for model in DEFAULT_MODELS + ["whisper-1", "gpt-4o", "tts-1"]:
        assert model in ids, f"{model} not in {sorted(ids)}"
    assert all(model.object == "model" and isinstance(model.created, int) for model in models)
    one = client.models.retrieve("gpt-4.1-mini")
    assert one.id == "gpt-4.1-mini" and one.owned_by, one


def stream_chat(client: OpenAI):
    """Streams a chat as the proxy asks for one; returns (text, finish reasons, usage chunks)."""
    stream = client.chat.completions.create(
        model="gpt-4.1-mini",
        messages=[
            {"role": "system", "content": "You are a concise voice assistant."},
            {"role": "user", "content": "What is the weather on Mars?"},
        ],
        stream=True,
        stream_options={"include_usage": True},
        max_completion_tokens=400,
    )
    text, finishes, usages = [], [], []
    for chunk in stream:
        assert chunk.object == "chat.completion.chunk", chunk
        if chunk.usage is not None:
            assert chunk.choices == [], chunk
            usages.append(chunk.usage)
        for choice in chunk.choices:
            if choice.delta.content:
                text.append(choice.delta.content)
            if choice.finish_reason:
                finishes.append(choice.finish_reason)
    return "".join(text), finishes, usages


def check_chat_stream(client: OpenAI, sim: Sim):
    expected = "Cold. Very cold, and dusty."
    if sim.control:
        sim.reply(expected)
    text, finishes, usages = stream_chat(client)
    assert finishes == ["stop"], finishes
    assert len(usages) == 1 and usages[0].total_tokens > 0, usages
    if sim.control:
        assert text == expected, text
    else:
        assert text, "an unscripted reply is not empty"


def check_chat_stream_with_sse_quirks(client: OpenAI, sim: Sim):
    if not sim.control:
        return True
    sim.config({"sse_style": {"keep_alive_comments": True, "event_lines": True, "crlf": True}})
    try:
        expected = "Framed with comments, event lines and CRLF."
        sim.reply(expected)
        text, finishes, usages = stream_chat(client)
    finally:
        sim.config({"sse_style": {"keep_alive_comments": False, "event_lines": False, "crlf": False}})
    assert text == expected, text
    assert finishes == ["stop"] and len(usages) == 1, (finishes, usages)
    return False


def check_chat_whole(client: OpenAI, sim: Sim):
    if sim.control:
        sim.reply("In one piece.")
    completion = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}]
    )
    assert completion.object == "chat.completion", completion
    message = completion.choices[0].message
    assert message.role == "assistant" and message.content, message
    if sim.control:
        assert message.content == "In one piece.", message.content
    assert completion.usage.total_tokens > 0


def check_chat_mid_stream_error(client: OpenAI, sim: Sim):
    if not sim.control:
        return True
    sim.fault("chat", fault={"kind": "mid_stream_error", "after": 2})
    try:
        stream_chat(client)
    except openai.APIError as error:
        assert "server had an error" in str(error), error
    else:
        raise AssertionError("a mid-stream error payload raises openai.APIError")
    return False


def check_speech_stream(client: OpenAI, sim: Sim):
    with client.audio.speech.with_streaming_response.create(
        model="gpt-4o-mini-tts",
        voice="coral",
        input="Sure, here is the answer.",
        response_format="pcm",
        instructions="Speak warmly.",
    ) as response:
        assert response.status_code == 200
        pieces = list(response.iter_bytes())
    pcm = b"".join(pieces)
    assert pieces and len(pcm) > RATE_HZ // 10, len(pcm)
    assert len(pcm) % 2 == 0, "whole 16-bit samples once joined"


def wav(pcm: bytes) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE_HZ)
        out.writeframes(pcm)
    return buffer.getvalue()


def check_file_transcription(client: OpenAI, sim: Sim):
    if not sim.control:
        return True
    sim.transcript("A file, transcribed.")
    result = client.audio.transcriptions.create(
        model="whisper-1", file=("turn.wav", wav(tone(600)), "audio/wav"), language="en"
    )
    assert result.text == "A file, transcribed.", result


def check_file_transcription_stream(client: OpenAI, sim: Sim):
    if not sim.control:
        return True
    sim.transcript("Streamed word by word.")
    stream = client.audio.transcriptions.create(
        model="gpt-4o-mini-transcribe",
        file=("turn.wav", wav(tone(600)), "audio/wav"),
        stream=True,
    )
    deltas, done = [], None
    for event in stream:
        if event.type == "transcript.text.delta":
            deltas.append(event.delta)
        elif event.type == "transcript.text.done":
            done = event.text
    assert "".join(deltas) == "Streamed word by word.", deltas
    assert done == "Streamed word by word.", done


def tone(ms: int) -> bytes:
    samples = (int(8000 * math.sin(2 * math.pi * 440 * n / RATE_HZ)) for n in range(ms * RATE_HZ // 1000))
    return b"".join(sample.to_bytes(2, "little", signed=True) for sample in samples)


def events_until(connection, kind: str, limit: int = 200):
    events = []
    for event in connection:
        events.append(event)
        if event.type == kind:
            return events
        assert len(events) < limit, [e.type for e in events]
    raise AssertionError(f"the connection ended before {kind}: {[e.type for e in events]}")


def check_realtime_transcription(client: OpenAI, sim: Sim):
    expected = "What's the weather on Mars?"
    if sim.control:
        sim.transcript(expected)
    with client.realtime.connect(extra_query={"intent": "transcription"}) as connection:
        created = connection.recv()
        assert created.type == "session.created", created
        assert created.session.type == "transcription", created.session
        session = {
            "type": "transcription",
            "audio": {
                "input": {
                    "format": {"type": "audio/pcm", "rate": RATE_HZ},
                    "transcription": {"model": "gpt-4o-mini-transcribe", "language": "en"},
                    "turn_detection": None,
                }
            },
        }
        # An unknown model is refused with an error event; the session stays open.
        bad = json.loads(json.dumps(session))
        bad["audio"]["input"]["transcription"]["model"] = "gpt-nope"
        connection.session.update(session=bad)
        error = connection.recv()
        assert error.type == "error" and error.error.code == "model_not_found", error
        connection.session.update(session=session)
        updated = connection.recv()
        assert updated.type == "session.updated", updated
        pcm = tone(1000)
        step = 40 * RATE_HZ * 2 // 1000
        for start in range(0, len(pcm), step):
            connection.input_audio_buffer.append(audio=base64.b64encode(pcm[start : start + step]).decode())
        connection.input_audio_buffer.commit()
        events = events_until(connection, "conversation.item.input_audio_transcription.completed")
    kinds = [event.type for event in events]
    assert "input_audio_buffer.committed" in kinds, kinds
    committed = next(event for event in events if event.type == "input_audio_buffer.committed")
    completed = events[-1]
    assert completed.item_id == committed.item_id, (completed, committed)
    deltas = [event.delta for event in events if event.type == "conversation.item.input_audio_transcription.delta"]
    assert "".join(deltas) == completed.transcript, (deltas, completed.transcript)
    assert completed.usage is not None, completed
    if sim.control:
        assert completed.transcript == expected, completed.transcript
    else:
        assert completed.transcript, completed


def expect(error_class, call, status: int):
    try:
        call()
    except error_class as error:
        assert error.status_code == status, (error.status_code, error)
        return error
    raise AssertionError(f"expected {error_class.__name__}")


def check_errors(client: OpenAI, sim: Sim):
    error = expect(
        openai.NotFoundError,
        lambda: client.chat.completions.create(model="gpt-nope", messages=[{"role": "user", "content": "Hi"}]),
        404,
    )
    assert error.code == "model_not_found", error.body
    assert error.body["message"] == "The model `gpt-nope` does not exist or you do not have access to it.", error.body
    error = expect(
        openai.BadRequestError,
        lambda: client.chat.completions.create(
            model="gpt-4.1-mini", messages=[{"role": "user", "content": "Hi"}], extra_body={"foo": 1}
        ),
        400,
    )
    assert error.body["message"] == "Unrecognized request argument supplied: foo", error.body
    error = expect(
        openai.BadRequestError,
        lambda: client.audio.speech.create(model="gpt-4o-mini-tts", voice="robot", input="Hi", response_format="pcm"),
        400,
    )
    assert error.body["param"] == "voice", error.body
    expect(openai.NotFoundError, lambda: client.models.retrieve("gpt-nope"), 404)


def check_rate_limit_without_retry_headers(client: OpenAI, sim: Sim):
    if not sim.control:
        return True
    sim.fault("chat", preset="rate_limited_without_retry_headers")
    error = expect(
        openai.RateLimitError,
        lambda: client.chat.completions.create(model="gpt-4.1-mini", messages=[{"role": "user", "content": "Hi"}]),
        429,
    )
    assert "retry-after" not in error.response.headers, error.response.headers
    return False


def check_non_json_errors(client: OpenAI, sim: Sim):
    if not sim.control:
        return True
    cases = [
        ({"preset": "bad_gateway_html"}, 502, "text/html"),
        ({"fault": {"kind": "raw_http", "status": 502}}, 502, None),
        ({"preset": "upstream_reset_text"}, 503, "text/plain"),
    ]
    for spec, status, content_type in cases:
        sim.fault("speech", **spec)
        error = expect(
            openai.InternalServerError,
            lambda: client.audio.speech.create(model="tts-1", voice="alloy", input="Hi", response_format="pcm"),
            status,
        )
        got = error.response.headers.get("content-type")
        assert (got or "").startswith(content_type) if content_type else got is None, (spec, got)
    return False


if __name__ == "__main__":
    sys.exit(main())
