//! Text helpers shared by the three APIs: OpenAI-style ids (`event_…`, `item_…`, `sess_…`,
//! `resp_…`, `conv_…`, `chatcmpl-…`, `req_…`), the `obfuscation` padding, splitting text into word-sized
//! transcription deltas and word-ish chat tokens (with odd split points as a quirk), the
//! unscripted echo reply, and rough token counts for `usage` objects.
//!
//! Splitting always preserves the text: concatenating the pieces gives the input back.

use axum::http::HeaderValue;
use rand::Rng;
use rand::distr::Alphanumeric;
use rand::rngs::StdRng;

/// Length of the random part of OpenAI ids such as `event_C9G5RJeJ2gF77mV7f2B1j`.
const ID_RANDOM_CHARS: usize = 21;
/// Length of the random part of `chatcmpl-…` ids.
const CHAT_ID_RANDOM_CHARS: usize = 29;
/// Characters per token of English text, the usual rule of thumb for `usage` estimates.
const CHARS_PER_TOKEN: usize = 4;
/// Quirk: one piece in this many (of at least [`MIN_SPLIT_CHARS`]) is cut in two.
const ODD_SPLIT_ONE_IN: u32 = 4;
/// Pieces shorter than this are never cut by the quirk.
const MIN_SPLIT_CHARS: usize = 5;

fn random_chars(len: usize) -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// Now, in Unix seconds (the `created` and `expires_at` fields).
pub(crate) fn unix_now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// `event_…` (server event id).
pub(crate) fn event_id() -> String {
    format!("event_{}", random_chars(ID_RANDOM_CHARS))
}

/// `item_…` (conversation item id).
pub(crate) fn item_id() -> String {
    format!("item_{}", random_chars(ID_RANDOM_CHARS))
}

/// `resp_…` (Realtime response id).
pub(crate) fn response_id() -> String {
    format!("resp_{}", random_chars(ID_RANDOM_CHARS))
}

/// `conv_…` (Realtime conversation id).
pub(crate) fn conversation_id() -> String {
    format!("conv_{}", random_chars(ID_RANDOM_CHARS))
}

/// `sess_…` (Realtime session id).
pub(crate) fn session_id() -> String {
    format!("sess_{}", random_chars(ID_RANDOM_CHARS))
}

/// `chatcmpl-…` (chat completion id).
pub(crate) fn completion_id() -> String {
    format!("chatcmpl-{}", random_chars(CHAT_ID_RANDOM_CHARS))
}

/// `req_…` (the `x-request-id` header, 32 hex digits).
pub(crate) fn request_id() -> String {
    let n: u128 = rand::rng().random();
    format!("req_{n:032x}")
}

/// `fp_…` (`system_fingerprint`).
pub(crate) fn fingerprint() -> String {
    let n: u32 = rand::rng().random();
    format!("fp_{n:010x}")
}

/// Random padding like the service's `obfuscation` field, 4 to 16 characters.
pub(crate) fn obfuscation() -> String {
    let len = rand::rng().random_range(4..=16);
    random_chars(len)
}

/// A header value from text we generated (ids, numbers): always visible ASCII.
pub(crate) fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

/// Word-sized pieces: each is a word with its leading whitespace and trailing punctuation
/// ("Hello," / " world."), the granularity of transcription deltas.
pub(crate) fn words(text: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut seen_word = false;
    // Where the current run of whitespace began, if the previous character was whitespace.
    let mut space_start = None;
    for (index, ch) in text.char_indices() {
        if ch.is_whitespace() {
            space_start.get_or_insert(index);
            continue;
        }
        if let Some(space) = space_start.take()
            && seen_word
        {
            pieces.push(&text[start..space]);
            start = space;
        }
        seen_word = true;
    }
    if start < text.len() {
        pieces.push(&text[start..]);
    }
    pieces
}

/// Word-ish chat tokens: a word with its leading space (" said"), or one punctuation mark.
pub(crate) fn tokens(text: &str) -> Vec<&str> {
    let mut pieces: Vec<&str> = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some(&(start, _)) = chars.peek() {
        while chars.next_if(|&(_, ch)| ch.is_whitespace()).is_some() {}
        let in_word = |ch: char| ch.is_alphanumeric() || ch == '\'';
        if chars.next_if(|&(_, ch)| in_word(ch)).is_some() {
            while chars.next_if(|&(_, ch)| in_word(ch)).is_some() {}
        } else {
            chars.next();
        }
        let end = chars.peek().map_or(text.len(), |&(index, _)| index);
        let piece = &text[start..end];
        match pieces.last_mut() {
            // Trailing whitespace joins the previous token.
            Some(last) if piece.trim().is_empty() => {
                *last = &text[start - last.len()..end];
            }
            _ => pieces.push(piece),
        }
    }
    pieces
}

/// Quirk: cut some longer pieces in two at a character boundary ("inter" + "esting"), as
/// real token streams do.
pub(crate) fn split_oddly<'a>(pieces: Vec<&'a str>, rng: &mut StdRng) -> Vec<&'a str> {
    let mut out = Vec::with_capacity(pieces.len() + pieces.len() / 2);
    for piece in pieces {
        let char_count = piece.chars().count();
        if char_count >= MIN_SPLIT_CHARS && rng.random_ratio(1, ODD_SPLIT_ONE_IN) {
            let cut_chars = rng.random_range(2..char_count - 1);
            let (cut, _) = piece
                .char_indices()
                .nth(cut_chars)
                .expect("cut is inside the piece");
            out.push(&piece[..cut]);
            out.push(&piece[cut..]);
        } else {
            out.push(piece);
        }
    }
    out
}

/// The unscripted chat reply: an echo of the last user message in two sentences, so clients
/// exercise sentence splitting.
pub(crate) fn echo_reply(last_user_message: Option<&str>) -> String {
    match last_user_message
        .map(str::trim)
        .filter(|text| !text.is_empty())
    {
        Some(said) => {
            let said = said.trim_end_matches(['.', '!', '?', ',', ';', ':']);
            format!("You said: {said}. That is interesting; tell me more.")
        }
        None => "Hello! How can I help you today?".to_owned(),
    }
}

/// The unscripted transcript of a committed turn: "You spoke for 1.2 seconds."
pub(crate) fn duration_transcript(duration_ms: u64) -> String {
    // Precision loss is irrelevant for a value printed with one decimal.
    let seconds = duration_ms as f64 / 1000.0;
    format!("You spoke for {seconds:.1} seconds.")
}

/// Rough token count of a text, at least one for non-empty text.
pub(crate) fn estimate_tokens(text: &str) -> u64 {
    let chars = text.chars().count();
    u64::try_from(chars.div_ceil(CHARS_PER_TOKEN)).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn words_keep_leading_space_and_punctuation() {
        assert_eq!(words("Hello, world. Bye"), ["Hello,", " world.", " Bye"]);
        assert_eq!(words("  lead  trail  "), ["  lead", "  trail  "]);
        assert!(words("").is_empty());
    }

    #[test]
    fn tokens_split_punctuation_and_round_trip() {
        assert_eq!(tokens("You said: hi."), ["You", " said", ":", " hi", "."]);
        for text in ["", " x ", "It's 3.5 km — über weit!\n\nNext line.  ", "a,b"] {
            assert_eq!(tokens(text).concat(), text);
        }
    }

    #[test]
    fn odd_splits_round_trip() {
        let mut rng = StdRng::seed_from_u64(7);
        let text = "Interesting conversations about extraordinary photosynthesis experiments.";
        let split = split_oddly(tokens(text), &mut rng);
        assert_eq!(split.concat(), text);
        assert!(split.len() > tokens(text).len());
    }

    #[test]
    fn echo_has_two_sentences() {
        assert_eq!(
            echo_reply(Some("What time is it?")),
            "You said: What time is it. That is interesting; tell me more."
        );
        assert_eq!(duration_transcript(1234), "You spoke for 1.2 seconds.");
    }

    #[test]
    fn ids_look_like_openai_ids() {
        assert_eq!(event_id().len(), "event_".len() + ID_RANDOM_CHARS);
        assert!(request_id().starts_with("req_"));
        assert!(completion_id().starts_with("chatcmpl-"));
        assert_eq!(response_id().len(), "resp_".len() + ID_RANDOM_CHARS);
        assert!(conversation_id().starts_with("conv_"));
    }
}
