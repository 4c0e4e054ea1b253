//! Server-Sent Events parser for OpenAI streaming responses.
//!
//! Chat Completions (`stream: true`) and Speech (`stream_format: "sse"`) answer with a
//! `text/event-stream` body: `data: <json>` lines, each event ended by a blank line, and for chat
//! a final `data: [DONE]`. The HTTP client hands us that body in arbitrary chunks, split mid-line
//! and even mid-UTF-8 character, so [`SseParser`] buffers bytes until a line is complete and
//! turns complete events into [`SseEvent`]s.
//!
//! It follows the WHATWG "event stream interpretation" rules, which is what OpenAI's SDKs do:
//!
//! - a line ends with LF, CRLF or CR (a CRLF split across two chunks is still one line end);
//! - a blank line dispatches the event; an event without any `data` field dispatches nothing;
//! - `data:` has one optional leading space stripped, and several `data` lines join with `\n`;
//! - lines starting with `:` are comments (keep-alive pings) and are ignored;
//! - `event:` names the event (exposed, see [`SseEvent::Data`]); `id:`, `retry:` and unknown
//!   fields are accepted and ignored: the proxy never reconnects with `Last-Event-ID`;
//! - a leading byte order mark is stripped;
//! - an event whose data starts with `[DONE]` becomes [`SseEvent::Done`] (the same
//!   `startswith("[DONE]")` test as openai-python).
//!
//! Deliberate differences from the browser `EventSource`:
//!
//! - invalid UTF-8 is an error ([`SseError::InvalidUtf8`]) instead of being replaced with
//!   U+FFFD: the payload is JSON we are about to parse, and a mangled byte means a broken stream;
//! - a line longer than [`MAX_LINE_BYTES`], or an event larger than [`MAX_EVENT_DATA_BYTES`],
//!   is an error, so a misbehaving upstream cannot make the proxy buffer without bound;
//! - at end of body ([`SseParser::finish`]), an event whose lines all arrived complete but whose
//!   closing blank line is missing is still dispatched (WHATWG discards it). Simple servers and
//!   mocks end the body with `data: [DONE]\n`; every line we have is whole, so nothing is
//!   guessed. A body that ends in the middle of a line is reported as [`SseError::Truncated`]
//!   and its pending event is discarded. Callers still treat "no `[DONE]`" as a failed stream.
//!
//! The parser does not look inside the data: an `{"error": …}` payload arrives as an ordinary
//! [`SseEvent::Data`] and the caller checks for it before decoding a chunk.

use std::fmt;

/// Longest accepted line, in bytes (1 MiB).
///
/// Why this value: a chat delta line is well under 1 KiB, but a Speech SSE delta carries a
/// base64 audio chunk in a single `data:` line (base64 adds a third), and a generous cap keeps
/// a large chunk from being mistaken for an attack while still bounding memory per stream.
pub(crate) const MAX_LINE_BYTES: usize = 1024 * 1024;

/// Largest accepted event data (all `data` lines of one event joined), in bytes (4 MiB).
///
/// Why this value: OpenAI sends one `data` line per event, so a legitimate event is at most
/// [`MAX_LINE_BYTES`]; four of them leaves room for multi-line senders while still bounding
/// what a stream that never sends a blank line can make us buffer.
pub(crate) const MAX_EVENT_DATA_BYTES: usize = 4 * MAX_LINE_BYTES;

/// The data prefix OpenAI uses to mark the end of a stream.
const DONE_MARKER: &str = "[DONE]";

/// One dispatched Server-Sent Event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SseEvent {
    /// An event carrying data: usually one JSON chunk, possibly an `{"error": …}` object.
    Data {
        /// The `event:` field, if the event had a non-empty one. OpenAI chat streams send none;
        /// anything named (e.g. `keepalive`) is not a completion chunk and can be skipped.
        event: Option<String>,
        /// The event's `data` lines joined with `\n`, without the trailing newline.
        data: String,
    },
    /// `data: [DONE]`: the upstream finished the stream normally.
    Done,
}

/// Why the byte stream could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SseError {
    /// A line was not valid UTF-8.
    InvalidUtf8,
    /// A line exceeded `max` bytes without a line terminator.
    LineTooLong {
        /// The limit that was exceeded, in bytes.
        max: usize,
    },
    /// One event's data exceeded `max` bytes before its dispatching blank line.
    EventTooLong {
        /// The limit that was exceeded, in bytes.
        max: usize,
    },
    /// The body ended in the middle of a line, so the pending event was incomplete.
    Truncated,
}

impl fmt::Display for SseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidUtf8 => write!(f, "event stream line is not valid UTF-8"),
            Self::LineTooLong { max } => {
                write!(f, "event stream line is longer than {max} bytes")
            }
            Self::EventTooLong { max } => {
                write!(f, "event stream event data is larger than {max} bytes")
            }
            Self::Truncated => write!(f, "event stream ended in the middle of an event"),
        }
    }
}

impl std::error::Error for SseError {}

/// Reads one SSE payload as JSON: an `{"error": {…}}` payload (OpenAI's mid-stream error) is
/// [`UpstreamError::MidStream`], anything that is not JSON is [`UpstreamError::Malformed`].
pub(crate) fn json_payload(data: &str) -> Result<serde_json::Value, super::UpstreamError> {
    let value: serde_json::Value =
        serde_json::from_str(data).map_err(|e| super::UpstreamError::Malformed(e.to_string()))?;
    if let Some(error) = value.get("error").filter(|e| !e.is_null()) {
        let text = |name: &str| error.get(name).and_then(serde_json::Value::as_str);
        return Err(super::UpstreamError::MidStream {
            code: text("code").or(text("type")).map(str::to_owned),
            message: text("message").unwrap_or("no message").to_owned(),
        });
    }
    Ok(value)
}

/// Incremental `text/event-stream` parser: feed body chunks, collect complete events.
///
/// After an error the parser is reset to its initial state; the stream it was reading should
/// be abandoned (the bytes after the bad line were not parsed).
#[derive(Debug, Default)]
pub(crate) struct SseParser {
    /// Bytes of the current line received so far (no terminator yet).
    partial_line: Vec<u8>,
    /// The previous chunk ended with CR: an LF at the start of the next chunk completes that
    /// CRLF and is not a second (blank) line.
    skip_leading_lf: bool,
    /// Whether a line has been processed; a byte order mark is only stripped from the first.
    seen_first_line: bool,
    /// `data` lines of the pending event, joined with `\n`.
    data: String,
    /// Whether the pending event has a `data` field at all (`data:` alone gives empty data,
    /// which is still an event, unlike no `data` field).
    has_data: bool,
    /// The pending event's `event:` field.
    event_name: Option<String>,
}

impl SseParser {
    /// A parser at the start of a stream.
    #[must_use]
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Feeds the next chunk of the body. Complete events are appended to `out` in order.
    ///
    /// Chunks may be split anywhere, including inside a CRLF pair or a UTF-8 character.
    ///
    /// # Errors
    ///
    /// [`SseError::InvalidUtf8`], [`SseError::LineTooLong`] or [`SseError::EventTooLong`]
    /// when the stream is malformed. Events completed earlier in this chunk are already in
    /// `out`; the parser is reset and the stream should be abandoned.
    pub(crate) fn push(&mut self, bytes: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        let result = self.push_lines(bytes, out);
        if result.is_err() {
            *self = Self::default();
        }
        result
    }

    /// Ends the body. Dispatches a pending event whose lines all arrived complete (see the
    /// module docs). The parser is then ready for a new stream.
    ///
    /// # Errors
    ///
    /// [`SseError::Truncated`] if the body stopped in the middle of a line (other than a
    /// comment); the pending event is discarded.
    pub(crate) fn finish(&mut self, out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        // A partial comment carries nothing, so losing its end loses nothing.
        let truncated = !self.partial_line.is_empty() && !self.partial_line.starts_with(b":");
        if !truncated {
            self.dispatch(out);
        }
        *self = Self::default();
        if truncated {
            Err(SseError::Truncated)
        } else {
            Ok(())
        }
    }

    fn push_lines(&mut self, bytes: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        let mut rest = bytes;
        if self.skip_leading_lf && !rest.is_empty() {
            self.skip_leading_lf = false;
            if let Some(tail) = rest.strip_prefix(b"\n") {
                rest = tail;
            }
        }
        while !rest.is_empty() {
            let Some(line_end) = rest.iter().position(|&byte| byte == b'\n' || byte == b'\r')
            else {
                if self.partial_line.len() + rest.len() > MAX_LINE_BYTES {
                    return Err(SseError::LineTooLong {
                        max: MAX_LINE_BYTES,
                    });
                }
                self.partial_line.extend_from_slice(rest);
                break;
            };
            if self.partial_line.len() + line_end > MAX_LINE_BYTES {
                return Err(SseError::LineTooLong {
                    max: MAX_LINE_BYTES,
                });
            }
            if self.partial_line.is_empty() {
                // Common case: the whole line is in this chunk, parse it in place.
                self.process_line(&rest[..line_end], out)?;
            } else {
                let mut line = std::mem::take(&mut self.partial_line);
                line.extend_from_slice(&rest[..line_end]);
                self.process_line(&line, out)?;
                // Keep the allocation for the next partial line.
                line.clear();
                self.partial_line = line;
            }
            let ended_with_cr = rest[line_end] == b'\r';
            rest = &rest[line_end + 1..];
            if ended_with_cr {
                match rest.strip_prefix(b"\n") {
                    Some(tail) => rest = tail,
                    // The LF of a CRLF may be the first byte of the next chunk.
                    None if rest.is_empty() => self.skip_leading_lf = true,
                    None => {}
                }
            }
        }
        Ok(())
    }

    fn process_line(&mut self, line: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        let mut line = std::str::from_utf8(line).map_err(|_| SseError::InvalidUtf8)?;
        if !self.seen_first_line {
            self.seen_first_line = true;
            line = line.strip_prefix('\u{FEFF}').unwrap_or(line);
        }
        if line.is_empty() {
            self.dispatch(out);
            return Ok(());
        }
        if line.starts_with(':') {
            return Ok(());
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "data" => {
                let separator_len = usize::from(self.has_data);
                if self.data.len() + separator_len + value.len() > MAX_EVENT_DATA_BYTES {
                    return Err(SseError::EventTooLong {
                        max: MAX_EVENT_DATA_BYTES,
                    });
                }
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "event" => self.event_name = (!value.is_empty()).then(|| value.to_owned()),
            // `id` and `retry` only matter for EventSource reconnection, which we never do;
            // unknown fields are ignored by the spec.
            _ => {}
        }
        Ok(())
    }

    /// Ends the pending event: emits it if it had a `data` field, then clears it.
    fn dispatch(&mut self, out: &mut Vec<SseEvent>) {
        let event = self.event_name.take();
        if !self.has_data {
            return;
        }
        self.has_data = false;
        let data = std::mem::take(&mut self.data);
        if data.starts_with(DONE_MARKER) {
            out.push(SseEvent::Done);
        } else {
            out.push(SseEvent::Data { event, data });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream exercising every rule: comments, CRLF, CR-only and LF line ends, multi-line
    /// data, keep-alive frames with and without data, `id`/`retry`, multi-byte UTF-8, a
    /// mid-stream error payload and `[DONE]`.
    const SAMPLE: &[u8] = b"\xEF\xBB\xBF: comment, OpenAI keep-alive style\r\n\
data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\r\n\
\r\n\
event: keepalive\n\
\n\
data: {\"choices\":[{\"delta\":{\"content\":\"lo \xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\"}}]}\n\n\
data: line one\rdata:line two\r\rid: 7\nretry: 1000\nunknown: x\ndata:  two spaces\n\n\
event: keepalive\ndata: {}\n\n\
data\n\n\
data: {\"error\":{\"message\":\"boom\",\"type\":\"server_error\"}}\r\n\r\n\
data: [DONE]\n\n";

    fn data(text: &str) -> SseEvent {
        SseEvent::Data {
            event: None,
            data: text.to_owned(),
        }
    }

    fn sample_events() -> Vec<SseEvent> {
        vec![
            data(r#"{"choices":[{"delta":{"content":"Hel"}}]}"#),
            data("{\"choices\":[{\"delta\":{\"content\":\"lo é€😀\"}}]}"),
            data("line one\nline two"),
            data(" two spaces"),
            SseEvent::Data {
                event: Some("keepalive".to_owned()),
                data: "{}".to_owned(),
            },
            data(""),
            data(r#"{"error":{"message":"boom","type":"server_error"}}"#),
            SseEvent::Done,
        ]
    }

    fn parse_chunks<'a>(
        chunks: impl IntoIterator<Item = &'a [u8]>,
    ) -> (Vec<SseEvent>, Result<(), SseError>) {
        let mut parser = SseParser::new();
        let mut events = Vec::new();
        for chunk in chunks {
            if let Err(error) = parser.push(chunk, &mut events) {
                return (events, Err(error));
            }
        }
        let result = parser.finish(&mut events);
        (events, result)
    }

    /// Deterministic pseudo-random numbers (Knuth's MMIX LCG) so fuzz failures reproduce.
    struct Lcg(u64);

    impl Lcg {
        fn below(&mut self, bound: usize) -> usize {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((self.0 >> 33) as usize) % bound
        }
    }

    #[test]
    fn sample_stream_in_one_chunk() {
        let (events, result) = parse_chunks([SAMPLE]);
        assert_eq!(result, Ok(()));
        assert_eq!(events, sample_events());
    }

    #[test]
    fn every_two_way_split_gives_the_same_events() {
        for split in 0..=SAMPLE.len() {
            let (head, tail) = SAMPLE.split_at(split);
            let (events, result) = parse_chunks([head, tail]);
            assert_eq!(result, Ok(()), "split at {split}");
            assert_eq!(events, sample_events(), "split at {split}");
        }
    }

    #[test]
    fn byte_by_byte_gives_the_same_events() {
        let (events, result) = parse_chunks(SAMPLE.chunks(1));
        assert_eq!(result, Ok(()));
        assert_eq!(events, sample_events());
    }

    #[test]
    fn random_multi_way_splits_give_the_same_events() {
        let mut rng = Lcg(0x5EED);
        for round in 0..500 {
            let mut chunks = Vec::new();
            let mut start = 0;
            while start < SAMPLE.len() {
                // Empty chunks included: a body stream can yield them.
                let len = rng.below(12).min(SAMPLE.len() - start);
                chunks.push(&SAMPLE[start..start + len]);
                start += len;
            }
            let (events, result) = parse_chunks(chunks);
            assert_eq!(result, Ok(()), "round {round}");
            assert_eq!(events, sample_events(), "round {round}");
        }
    }

    #[test]
    fn crlf_line_endings() {
        let (events, result) =
            parse_chunks([&b"data: a\r\ndata: b\r\n\r\ndata: [DONE]\r\n\r\n"[..]]);
        assert_eq!(result, Ok(()));
        assert_eq!(events, vec![data("a\nb"), SseEvent::Done]);
    }

    #[test]
    fn crlf_split_between_chunks_is_one_line_end() {
        let (events, result) = parse_chunks([&b"data: a\r"[..], b"\ndata: b\r", b"\n\r", b"\n"]);
        assert_eq!(result, Ok(()));
        assert_eq!(events, vec![data("a\nb")]);
    }

    #[test]
    fn comments_are_ignored() {
        let (events, result) = parse_chunks([&b": ping\n\n:\ndata: x\n: inside\n\n"[..]]);
        assert_eq!(result, Ok(()));
        assert_eq!(events, vec![data("x")]);
    }

    #[test]
    fn multi_line_data_joins_with_newline() {
        let (events, result) = parse_chunks([&b"data: {\ndata: \"a\": 1\ndata: }\n\n"[..]]);
        assert_eq!(result, Ok(()));
        assert_eq!(events, vec![data("{\n\"a\": 1\n}")]);
    }

    #[test]
    fn keepalive_frames_do_not_break_the_stream() {
        let stream = b"event: keepalive\n\nevent: keepalive\ndata: \n\ndata: after\n\n";
        let (events, result) = parse_chunks([&stream[..]]);
        assert_eq!(result, Ok(()));
        assert_eq!(
            events,
            vec![
                SseEvent::Data {
                    event: Some("keepalive".to_owned()),
                    data: String::new(),
                },
                // The event name does not leak into the next event.
                data("after"),
            ]
        );
    }

    #[test]
    fn done_uses_a_prefix_match() {
        let (events, result) = parse_chunks([&b"data: [DONE]\n\ndata:[DONE] trailing\n\n"[..]]);
        assert_eq!(result, Ok(()));
        assert_eq!(events, vec![SseEvent::Done, SseEvent::Done]);
    }

    #[test]
    fn error_payload_passes_through_as_data() {
        let payload =
            r#"{"error":{"message":"Rate limit","type":"requests","param":null,"code":null}}"#;
        let stream = format!("data: {payload}\n\n");
        let (events, result) = parse_chunks([stream.as_bytes()]);
        assert_eq!(result, Ok(()));
        assert_eq!(events, vec![data(payload)]);
    }

    #[test]
    fn body_ending_mid_line_is_truncated_and_discards_the_event() {
        let (events, result) = parse_chunks([&b"data: {\"a\":1}\n\ndata: {\"b\""[..]]);
        assert_eq!(result, Err(SseError::Truncated));
        assert_eq!(events, vec![data(r#"{"a":1}"#)]);

        let (events, result) = parse_chunks([&b"data: one\ndata: tw"[..]]);
        assert_eq!(result, Err(SseError::Truncated));
        assert_eq!(events, vec![]);
    }

    #[test]
    fn complete_lines_without_final_blank_line_are_flushed() {
        let (events, result) = parse_chunks([&b"data: a\n\ndata: [DONE]\n"[..]]);
        assert_eq!(result, Ok(()));
        assert_eq!(events, vec![data("a"), SseEvent::Done]);

        let (events, result) = parse_chunks([&b"data: a\r"[..]]);
        assert_eq!(result, Ok(()));
        assert_eq!(events, vec![data("a")]);
    }

    #[test]
    fn partial_comment_at_end_is_not_truncation() {
        let (events, result) = parse_chunks([&b"data: a\n\n: keep-al"[..]]);
        assert_eq!(result, Ok(()));
        assert_eq!(events, vec![data("a")]);
    }

    #[test]
    fn empty_body_is_fine() {
        assert_eq!(parse_chunks([&b""[..]]), (vec![], Ok(())));
    }

    #[test]
    fn invalid_utf8_is_an_error() {
        let (events, result) = parse_chunks([&b"data: ok\n\ndata: \xFF\xFE\n\n"[..]]);
        assert_eq!(result, Err(SseError::InvalidUtf8));
        assert_eq!(events, vec![data("ok")]);
    }

    #[test]
    fn utf8_char_split_across_chunks_is_fine() {
        // "é" is C3 A9: split between its two bytes.
        let (events, result) = parse_chunks([&b"data: caf\xC3"[..], b"\xA9\n\n"]);
        assert_eq!(result, Ok(()));
        assert_eq!(events, vec![data("café")]);
    }

    #[test]
    fn overlong_line_is_an_error_however_it_is_chunked() {
        let mut line = b"data: ".to_vec();
        line.resize(MAX_LINE_BYTES + 1, b'a');
        let expected = Err(SseError::LineTooLong {
            max: MAX_LINE_BYTES,
        });
        // Unterminated, in one chunk and in pieces: caught before the line ends.
        assert_eq!(parse_chunks([&line[..]]).1, expected);
        assert_eq!(parse_chunks(line.chunks(4096)).1, expected);
        // Terminated in the same chunk.
        line.extend_from_slice(b"\n\n");
        assert_eq!(parse_chunks([&line[..]]).1, expected);
    }

    #[test]
    fn line_at_the_limit_is_accepted() {
        let mut line = b"data: ".to_vec();
        line.resize(MAX_LINE_BYTES, b'a');
        line.extend_from_slice(b"\n\n");
        let (events, result) = parse_chunks(line.chunks(100_000));
        assert_eq!(result, Ok(()));
        assert_eq!(events.len(), 1);
    }

    #[test]
    fn oversized_event_is_an_error() {
        let mut stream = Vec::new();
        let line = format!("data: {}\n", "b".repeat(MAX_LINE_BYTES - 6));
        for _ in 0..5 {
            stream.extend_from_slice(line.as_bytes());
        }
        let (_, result) = parse_chunks([&stream[..]]);
        assert_eq!(
            result,
            Err(SseError::EventTooLong {
                max: MAX_EVENT_DATA_BYTES
            })
        );
    }

    #[test]
    fn parser_is_reusable_after_an_error() {
        let mut parser = SseParser::new();
        let mut events = Vec::new();
        assert_eq!(
            parser.push(b"data: \xFF\n\n", &mut events),
            Err(SseError::InvalidUtf8)
        );
        assert_eq!(parser.push(b"data: fresh\n\n", &mut events), Ok(()));
        assert_eq!(parser.finish(&mut events), Ok(()));
        assert_eq!(events, vec![data("fresh")]);
    }

    #[test]
    fn errors_display_their_limits() {
        assert_eq!(
            SseError::LineTooLong { max: 10 }.to_string(),
            "event stream line is longer than 10 bytes"
        );
    }
}
