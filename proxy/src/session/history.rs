//! The conversation history sent to the model, and what of an interrupted answer was heard.
//!
//! Kept apart from the socket so a future resume can hand it to a new connection.

use std::collections::VecDeque;

use protocol::ResponseId;

use crate::upstream::chat::{ChatMessage, Role};

/// Speaking rate assumed for a sentence whose audio length is not known yet (it was cut while
/// streaming): about 15 characters a second, typical of conversational TTS voices, in 24 kHz
/// samples per character.
const ESTIMATED_SAMPLES_PER_CHAR: u64 = 24_000 / 15;

/// The messages of one conversation, oldest first, bounded.
#[derive(Debug, Clone)]
pub struct Conversation {
    system_prompt: String,
    entries: VecDeque<Entry>,
    max_messages: usize,
}

#[derive(Debug, Clone)]
struct Entry {
    message: ChatMessage,
    /// Set on assistant messages, so a later cancel can find the answer it cuts.
    response_id: Option<ResponseId>,
}

impl Conversation {
    /// An empty conversation under this system prompt, keeping at most `max_messages` user
    /// and assistant messages.
    pub fn new(system_prompt: impl Into<String>, max_messages: usize) -> Self {
        Self {
            system_prompt: system_prompt.into(),
            entries: VecDeque::new(),
            max_messages: max_messages.max(1),
        }
    }

    /// Adds what the user said.
    pub fn add_user(&mut self, text: &str) {
        self.push(Role::User, text, None);
    }

    /// Reserves the assistant's place for a response that is starting, so its text lands
    /// right after the turn it answers even if it is only known (or cut) later.
    pub fn begin_assistant(&mut self, response_id: ResponseId) {
        self.push(Role::Assistant, "", Some(response_id));
    }

    /// Sets what the assistant said in a response (empty: nothing of it is kept).
    pub fn set_assistant(&mut self, response_id: ResponseId, text: &str) {
        if let Some(entry) = self
            .entries
            .iter_mut()
            .find(|e| e.response_id == Some(response_id))
        {
            text.trim().clone_into(&mut entry.message.content);
        }
    }

    /// The text kept for a response, if any.
    pub fn assistant_text(&self, response_id: ResponseId) -> Option<&str> {
        self.entries
            .iter()
            .find(|e| e.response_id == Some(response_id))
            .map(|e| e.message.content.as_str())
            .filter(|text| !text.is_empty())
    }

    /// The messages to send to the model: the system prompt, then the conversation (answers
    /// of which nothing was kept are left out).
    pub fn messages(&self) -> Vec<ChatMessage> {
        let system = ChatMessage {
            role: Role::System,
            content: self.system_prompt.clone(),
        };
        std::iter::once(system)
            .chain(
                self.entries
                    .iter()
                    .filter(|e| !e.message.content.is_empty())
                    .map(|e| e.message.clone()),
            )
            .collect()
    }

    fn push(&mut self, role: Role, text: &str, response_id: Option<ResponseId>) {
        self.entries.push_back(Entry {
            message: ChatMessage {
                role,
                content: text.trim().to_owned(),
            },
            response_id,
        });
        while self.entries.len() > self.max_messages {
            self.entries.pop_front();
        }
    }
}

/// One sentence of an answer as it was sent to the browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpokenSegment {
    /// The text spoken.
    pub text: String,
    /// The response's audio sample at which this sentence starts.
    pub start_sample: u64,
    /// Its length in samples, once all of its audio was sent.
    pub samples: Option<u64>,
}

/// The part of an answer heard by someone who played `played_samples` of its audio: whole
/// sentences, then the words of the cut sentence in proportion to how much of it played.
pub fn heard_text(segments: &[SpokenSegment], played_samples: u64) -> String {
    let mut heard = String::new();
    for segment in segments {
        if played_samples <= segment.start_sample {
            break;
        }
        let length = segment
            .samples
            .unwrap_or(segment.text.chars().count() as u64 * ESTIMATED_SAMPLES_PER_CHAR)
            .max(1);
        let played = played_samples - segment.start_sample;
        let part = if played >= length {
            segment.text.as_str()
        } else {
            leading_words(&segment.text, played as f64 / length as f64)
        };
        if !part.is_empty() {
            if !heard.is_empty() {
                heard.push(' ');
            }
            heard.push_str(part);
        }
        if played < length {
            break;
        }
    }
    heard
}

/// The words of `text` that fit in the first `fraction` of its characters (whole words only).
fn leading_words(text: &str, fraction: f64) -> &str {
    let budget = (text.chars().count() as f64 * fraction).floor() as usize;
    let mut end = 0;
    for (count, (index, ch)) in text.char_indices().enumerate() {
        if count > budget {
            break;
        }
        if ch.is_whitespace() {
            end = index;
        }
    }
    if budget >= text.chars().count() {
        end = text.len();
    }
    text[..end].trim_end()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(text: &str, start_sample: u64, samples: Option<u64>) -> SpokenSegment {
        SpokenSegment {
            text: text.into(),
            start_sample,
            samples,
        }
    }

    #[test]
    fn the_history_is_bounded_and_keeps_the_system_prompt() {
        let mut conversation = Conversation::new("Be brief.", 3);
        for i in 0..5 {
            conversation.add_user(&format!("u{i}"));
        }
        let messages = conversation.messages();
        assert_eq!(messages.len(), 4);
        assert_eq!(messages[0].role, Role::System);
        assert_eq!(messages[1].content, "u2");
    }

    #[test]
    fn an_answer_can_be_replaced_or_removed() {
        let mut conversation = Conversation::new("s", 10);
        conversation.add_user("Hi");
        conversation.begin_assistant(1);
        assert_eq!(conversation.messages().len(), 2);
        conversation.add_user("Hello?");
        conversation.set_assistant(1, "Hello there. How are you?");
        assert_eq!(
            conversation.messages()[2].content,
            "Hello there. How are you?"
        );
        conversation.set_assistant(1, "Hello there.");
        assert_eq!(conversation.assistant_text(1), Some("Hello there."));
        conversation.set_assistant(1, "");
        assert_eq!(conversation.assistant_text(1), None);
        assert_eq!(conversation.messages().len(), 3);
    }

    #[test]
    fn whole_sentences_are_heard_when_played_through() {
        let segments = [
            segment("Hello there.", 0, Some(1000)),
            segment("How are you today?", 1000, Some(2000)),
        ];
        assert_eq!(heard_text(&segments, 0), "");
        assert_eq!(heard_text(&segments, 1000), "Hello there.");
        assert_eq!(
            heard_text(&segments, 3000),
            "Hello there. How are you today?"
        );
        assert_eq!(
            heard_text(&segments, 9999),
            "Hello there. How are you today?"
        );
    }

    #[test]
    fn a_cut_sentence_keeps_the_words_played() {
        let segments = [
            segment("Hello there.", 0, Some(1000)),
            segment("How are you today?", 1000, Some(1800)),
        ];
        // Half of the second sentence: "How are you" is 11 of 18 characters.
        assert_eq!(
            heard_text(&segments, 1000 + 1300),
            "Hello there. How are you"
        );
        assert_eq!(heard_text(&segments, 1000 + 100), "Hello there.");
    }

    #[test]
    fn a_sentence_still_streaming_is_estimated_by_length() {
        let segments = [segment("One two three four.", 0, None)];
        let full = 19 * ESTIMATED_SAMPLES_PER_CHAR;
        assert_eq!(heard_text(&segments, full / 2), "One two");
        assert_eq!(heard_text(&segments, full * 2), "One two three four.");
    }
}
