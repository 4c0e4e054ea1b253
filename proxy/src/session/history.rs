//! The conversation history sent to the model, with the record of each answer, and what of an
//! interrupted answer was heard.
//!
//! Kept apart from the socket so a resumed session can take it over: [`Conversation::saved`]
//! and [`Conversation::restored`] carry it through the session store.

use std::collections::VecDeque;

use protocol::{ResponseId, TurnId};

use crate::session_store::{SavedMessage, SavedRole};
use crate::upstream::chat::{ChatMessage, Role};

/// Speaking rate assumed for a sentence whose audio length is not known yet (it was cut while
/// streaming): about 15 characters a second, typical of conversational TTS voices, in 24 kHz
/// samples per character.
const ESTIMATED_SAMPLES_PER_CHAR: u64 = 24_000 / 15;

/// The messages of one conversation, oldest first, bounded. Each answer is kept as the
/// record of what was generated and sent, so what the model later reads of it follows from
/// how it ended: all of it, or only what was heard.
#[derive(Debug, Clone)]
pub(crate) struct Conversation {
    system_prompt: String,
    entries: VecDeque<Entry>,
    max_messages: usize,
}

#[derive(Debug, Clone)]
enum Entry {
    User(String),
    Assistant(Answer),
    /// An answer of before a resume: only its text is left.
    Recalled(String),
}

/// How an answer stands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum AnswerState {
    /// Still generating: not yet part of what the model reads.
    Generating,
    /// Generated to its end; the history keeps all of it.
    Finished,
    /// Cut short; the history keeps what was heard: `heard` once the browser said how much it
    /// played, else what the last progress report implies.
    Interrupted { heard: Option<String> },
}

/// One answer: its text, the sentences sent as audio and how much of it was played.
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    id: ResponseId,
    turn_id: TurnId,
    text: String,
    segments: Vec<SpokenSegment>,
    played_samples: u64,
    state: AnswerState,
    /// An upstream error cut it short.
    cut_by_error: bool,
}

impl Answer {
    /// An upstream error cut it short: when it ends, it counts as interrupted.
    pub(crate) fn cut_by_error(&mut self) {
        self.cut_by_error = true;
    }

    /// Whether an upstream error cut it short.
    pub(crate) fn was_cut_by_error(&self) -> bool {
        self.cut_by_error
    }

    /// The turn it answers.
    pub(crate) fn turn_id(&self) -> TurnId {
        self.turn_id
    }

    /// Everything generated so far.
    pub(crate) fn text(&self) -> &str {
        &self.text
    }

    /// Whether it is still generating (events of an ended answer are late and ignored).
    pub(crate) fn is_generating(&self) -> bool {
        self.state == AnswerState::Generating
    }

    /// Appends generated text.
    pub(crate) fn push_text(&mut self, delta: &str) {
        self.text.push_str(delta);
    }

    /// A sentence started streaming as audio at `start_sample` of the answer.
    pub(crate) fn segment_started(&mut self, text: String, start_sample: u64) {
        self.segments.push(SpokenSegment {
            text,
            start_sample,
            samples: None,
        });
    }

    /// The last sentence's audio is all sent: `samples` long.
    pub(crate) fn segment_finished(&mut self, samples: u64) {
        if let Some(segment) = self.segments.last_mut() {
            segment.samples = Some(samples);
        }
    }

    /// The browser played this much of it (reports only ever grow).
    pub(crate) fn played(&mut self, played_samples: u64) {
        self.played_samples = self.played_samples.max(played_samples);
    }

    /// Samples of audio sent so far.
    pub(crate) fn audio_samples(&self) -> u64 {
        self.segments
            .iter()
            .map(|s| s.samples.unwrap_or_default())
            .sum()
    }

    /// What the model reads of it; `None` while generating.
    fn kept_text(&self) -> Option<String> {
        match &self.state {
            AnswerState::Generating => None,
            AnswerState::Finished => Some(self.text.trim().to_owned()),
            AnswerState::Interrupted { heard: Some(heard) } => Some(heard.clone()),
            AnswerState::Interrupted { heard: None } => {
                Some(heard_text(&self.segments, self.played_samples))
            }
        }
    }
}

impl Conversation {
    /// An empty conversation under this system prompt, keeping at most `max_messages` user
    /// and assistant messages.
    pub(crate) fn new(system_prompt: impl Into<String>, max_messages: usize) -> Self {
        Self {
            system_prompt: system_prompt.into(),
            entries: VecDeque::new(),
            max_messages: max_messages.max(1),
        }
    }

    /// Adds what the user said.
    pub(crate) fn add_user(&mut self, text: &str) {
        self.push(Entry::User(text.trim().to_owned()));
    }

    /// Starts an answer's record, right after the turn it answers, whenever its text is known
    /// (or cut) later.
    pub(crate) fn begin_answer(&mut self, id: ResponseId, turn_id: TurnId) {
        self.push(Entry::Assistant(Answer {
            id,
            turn_id,
            text: String::new(),
            segments: Vec::new(),
            played_samples: 0,
            state: AnswerState::Generating,
            cut_by_error: false,
        }));
    }

    /// The record of an answer, while the history holds it.
    pub(crate) fn answer_mut(&mut self, id: ResponseId) -> Option<&mut Answer> {
        self.entries.iter_mut().find_map(|entry| match entry {
            Entry::Assistant(answer) if answer.id == id => Some(answer),
            _ => None,
        })
    }

    /// The answer generated to its end: the history keeps all of it.
    pub(crate) fn finish(&mut self, id: ResponseId) -> Option<&Answer> {
        let answer = self.answer_mut(id)?;
        answer.state = AnswerState::Finished;
        Some(answer)
    }

    /// The answer was stopped while generating: the history keeps what was heard of it.
    pub(crate) fn interrupt(&mut self, id: ResponseId) -> Option<&Answer> {
        let answer = self.answer_mut(id)?;
        if answer.state == AnswerState::Generating {
            answer.state = AnswerState::Interrupted { heard: None };
        }
        Some(answer)
    }

    /// Truncates answer `id` at `played_samples`, the browser's final count (it may have
    /// finished generating while still playing): the history keeps only what was heard, which
    /// is returned.
    pub(crate) fn truncate(&mut self, id: ResponseId, played_samples: u64) -> Option<String> {
        let answer = self.answer_mut(id)?;
        answer.played_samples = played_samples;
        let heard = heard_text(&answer.segments, played_samples);
        answer.state = AnswerState::Interrupted {
            heard: Some(heard.clone()),
        };
        Some(heard)
    }

    /// What the history keeps of an answer, if anything.
    #[cfg(test)]
    pub(crate) fn assistant_text(&self, id: ResponseId) -> Option<String> {
        self.entries
            .iter()
            .find_map(|entry| match entry {
                Entry::Assistant(answer) if answer.id == id => answer.kept_text(),
                _ => None,
            })
            .filter(|text| !text.is_empty())
    }

    /// The messages to send to the model: the system prompt, then the conversation (answers
    /// still generating, and answers of which nothing was heard, are left out). User turns
    /// left without an answer between them (it failed, or nothing of it was heard) are merged
    /// into one user message, a line each, so the model reads strictly alternating roles and
    /// still hears everything the user said.
    pub(crate) fn messages(&self) -> Vec<ChatMessage> {
        let mut messages = vec![ChatMessage {
            role: Role::System,
            content: self.system_prompt.clone(),
        }];
        for entry in &self.entries {
            let (role, content) = match entry {
                Entry::User(text) => (Role::User, text.clone()),
                Entry::Assistant(answer) => match answer.kept_text() {
                    Some(text) => (Role::Assistant, text),
                    None => continue,
                },
                Entry::Recalled(text) => (Role::Assistant, text.clone()),
            };
            if content.is_empty() {
                continue;
            }
            match messages.last_mut() {
                Some(last) if last.role == Role::User && role == Role::User => {
                    last.content.push('\n');
                    last.content.push_str(&content);
                }
                _ => messages.push(ChatMessage { role, content }),
            }
        }
        messages
    }

    /// The socket dropped: an answer still generating keeps what the browser last reported
    /// playing of it, and so does the last answer if it had finished generating but not
    /// playing (the browser reports progress as it plays, and its final count at the end).
    /// An answer never reported playing at all is left whole: the client does not report
    /// playback.
    pub(crate) fn cut_at_drop(&mut self) {
        let last_answer = self.entries.iter_mut().rev().find_map(|entry| match entry {
            Entry::Assistant(answer) => Some(answer),
            _ => None,
        });
        let Some(answer) = last_answer else {
            return;
        };
        let played = answer.played_samples;
        match answer.state {
            AnswerState::Generating => answer.state = AnswerState::Interrupted { heard: None },
            AnswerState::Finished if played > 0 && played < answer.audio_samples() => {
                answer.state = AnswerState::Interrupted {
                    heard: Some(heard_text(&answer.segments, played)),
                };
            }
            AnswerState::Finished | AnswerState::Interrupted { .. } => {}
        }
    }

    /// The conversation as the model reads it, for the session store.
    pub(crate) fn saved(&self) -> Vec<SavedMessage> {
        self.messages()
            .into_iter()
            .filter_map(|message| {
                let role = match message.role {
                    Role::System => return None,
                    Role::User => SavedRole::User,
                    Role::Assistant => SavedRole::Assistant,
                };
                Some(SavedMessage {
                    role,
                    content: message.content,
                })
            })
            .collect()
    }

    /// A conversation under this system prompt that continues `saved`.
    pub(crate) fn restored(
        system_prompt: impl Into<String>,
        max_messages: usize,
        saved: Vec<SavedMessage>,
    ) -> Self {
        let mut conversation = Self::new(system_prompt, max_messages);
        for message in saved {
            conversation.push(match message.role {
                SavedRole::User => Entry::User(message.content),
                SavedRole::Assistant => Entry::Recalled(message.content),
            });
        }
        conversation
    }

    fn push(&mut self, entry: Entry) {
        self.entries.push_back(entry);
        while self.entries.len() > self.max_messages {
            self.entries.pop_front();
        }
    }
}

/// One sentence of an answer as it was sent to the browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SpokenSegment {
    /// The text spoken.
    pub text: String,
    /// The response's audio sample at which this sentence starts.
    pub start_sample: u64,
    /// Its length in samples, once all of its audio was sent.
    pub samples: Option<u64>,
}

/// The part of an answer heard by someone who played `played_samples` of its audio: whole
/// sentences, then the words of the cut sentence in proportion to how much of it played.
pub(crate) fn heard_text(segments: &[SpokenSegment], played_samples: u64) -> String {
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
            let id = protocol::ResponseId(i + 1);
            conversation.begin_answer(id, protocol::TurnId(i + 1));
            conversation
                .answer_mut(id)
                .unwrap()
                .push_text(&format!("a{i}"));
            conversation.finish(id);
        }
        let messages = conversation.messages();
        assert_eq!(messages.len(), 4);
        assert_eq!(messages[0].role, Role::System);
        assert_eq!(messages[1].content, "a3");
        assert_eq!(messages[2].content, "u4");
    }

    #[test]
    fn user_turns_without_an_answer_between_them_are_merged() {
        let mut conversation = Conversation::new("s", 10);
        conversation.add_user("What time is it?");
        // Its answer failed before any text: nothing of it is kept.
        conversation.begin_answer(protocol::ResponseId(1), protocol::TurnId(1));
        conversation
            .answer_mut(protocol::ResponseId(1))
            .unwrap()
            .cut_by_error();
        conversation.truncate(protocol::ResponseId(1), 0);
        conversation.add_user("Hello?");
        let messages = conversation.messages();
        let roles: Vec<Role> = messages.iter().map(|m| m.role).collect();
        assert_eq!(roles, [Role::System, Role::User]);
        assert_eq!(messages[1].content, "What time is it?\nHello?");
    }

    #[test]
    fn an_answer_is_kept_whole_or_as_heard() {
        let mut conversation = Conversation::new("s", 10);
        conversation.add_user("Hi");
        conversation.begin_answer(protocol::ResponseId(1), protocol::TurnId(1));
        // Still generating: not part of what the model reads.
        assert_eq!(conversation.messages().len(), 2);
        let answer = conversation.answer_mut(protocol::ResponseId(1)).unwrap();
        answer.push_text("Hello there. How are you?");
        answer.segment_started("Hello there.".into(), 0);
        answer.segment_finished(1000);
        answer.segment_started("How are you?".into(), 1000);
        answer.segment_finished(1000);
        conversation.add_user("Hello?");
        conversation.finish(protocol::ResponseId(1));
        assert_eq!(
            conversation.messages()[2].content,
            "Hello there. How are you?"
        );
        // Played on after it finished generating, then cut: only what was heard stays.
        assert_eq!(
            conversation
                .truncate(protocol::ResponseId(1), 1000)
                .as_deref(),
            Some("Hello there.")
        );
        assert_eq!(
            conversation
                .assistant_text(protocol::ResponseId(1))
                .as_deref(),
            Some("Hello there.")
        );
        assert_eq!(
            conversation.truncate(protocol::ResponseId(1), 0).as_deref(),
            Some("")
        );
        assert_eq!(conversation.assistant_text(protocol::ResponseId(1)), None);
        // Nothing of the answer was heard: the two user turns read as one.
        let messages = conversation.messages();
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[1].content, "Hi\nHello?");
    }

    #[test]
    fn an_interrupted_answer_keeps_what_the_last_progress_report_played() {
        let mut conversation = Conversation::new("s", 10);
        conversation.begin_answer(protocol::ResponseId(1), protocol::TurnId(1));
        let answer = conversation.answer_mut(protocol::ResponseId(1)).unwrap();
        answer.segment_started("One.".into(), 0);
        answer.segment_finished(500);
        answer.segment_started("Two.".into(), 500);
        answer.played(600);
        answer.played(100);
        conversation.interrupt(protocol::ResponseId(1));
        assert_eq!(
            conversation
                .assistant_text(protocol::ResponseId(1))
                .as_deref(),
            Some("One.")
        );
        assert!(
            !conversation
                .answer_mut(protocol::ResponseId(1))
                .unwrap()
                .is_generating()
        );
    }

    /// A conversation of one finished exchange and an answer of two 1,000-sample sentences,
    /// generating.
    fn answering(played: u64) -> Conversation {
        let mut conversation = Conversation::new("s", 10);
        conversation.add_user("Hi");
        conversation.begin_answer(protocol::ResponseId(1), protocol::TurnId(1));
        let answer = conversation.answer_mut(protocol::ResponseId(1)).unwrap();
        answer.push_text("Hello there.");
        conversation.finish(protocol::ResponseId(1));
        conversation.add_user("Tell me more.");
        conversation.begin_answer(protocol::ResponseId(2), protocol::TurnId(2));
        let answer = conversation.answer_mut(protocol::ResponseId(2)).unwrap();
        answer.push_text("One. Two.");
        answer.segment_started("One.".into(), 0);
        answer.segment_finished(1000);
        answer.segment_started("Two.".into(), 1000);
        answer.segment_finished(1000);
        answer.played(played);
        conversation
    }

    #[test]
    fn a_drop_keeps_what_was_played_of_the_answer_in_progress() {
        let mut conversation = answering(1000);
        conversation.cut_at_drop();
        let contents: Vec<String> = conversation
            .messages()
            .into_iter()
            .map(|m| m.content)
            .collect();
        assert_eq!(
            contents,
            ["s", "Hi", "Hello there.", "Tell me more.", "One."]
        );
    }

    #[test]
    fn a_drop_cuts_a_finished_answer_still_playing_but_not_one_played_through() {
        let mut still_playing = answering(1500);
        still_playing.finish(protocol::ResponseId(2));
        still_playing.cut_at_drop();
        assert_eq!(
            still_playing
                .assistant_text(protocol::ResponseId(2))
                .as_deref(),
            Some("One.")
        );
        let mut played = answering(2000);
        played.finish(protocol::ResponseId(2));
        played.cut_at_drop();
        assert_eq!(
            played.assistant_text(protocol::ResponseId(2)).as_deref(),
            Some("One. Two.")
        );
        // No report at all: the client does not report playback; the answer stays whole.
        let mut unreported = answering(0);
        unreported.finish(protocol::ResponseId(2));
        unreported.cut_at_drop();
        assert_eq!(
            unreported
                .assistant_text(protocol::ResponseId(2))
                .as_deref(),
            Some("One. Two.")
        );
    }

    #[test]
    fn a_restored_conversation_reads_as_the_saved_one() {
        let mut conversation = answering(1000);
        conversation.cut_at_drop();
        let restored = Conversation::restored("s", 10, conversation.saved());
        assert_eq!(restored.messages(), conversation.messages());
        // It goes on like any other.
        let mut restored = restored;
        restored.add_user("And then?");
        assert_eq!(restored.messages().len(), 6);
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
