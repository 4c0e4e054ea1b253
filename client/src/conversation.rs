//! The conversation as the page shows it, built from the proxy's messages.
//!
//! Turns are kept in turn order (the proxy numbers them in the order the user spoke), not in
//! arrival order, so a late final transcript never lands below the answer it prompted. Each
//! turn holds the user's words (partial, then final), the assistant's answer as it streams,
//! whether it was interrupted and where, and the turn's latency waterfall.

use protocol::{ResponseId, ServerMessage, TurnId, Waterfall};

/// The user's side of a turn.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserText {
    /// The words so far.
    pub text: String,
    /// The transcript is final (no more deltas).
    pub is_final: bool,
}

/// How an answer ended, if it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnswerStatus {
    /// Text is still arriving.
    Streaming,
    /// Generated in full.
    Complete,
    /// Cut short by the user. `heard` is the part the user heard, once the proxy confirmed it.
    Interrupted {
        /// What the proxy kept of it (`response_truncated.heard_text`).
        heard: Option<String>,
    },
}

/// The assistant's side of a turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// Tags its text and audio.
    pub response_id: ResponseId,
    /// All text generated so far.
    pub text: String,
    /// How it ended.
    pub status: AnswerStatus,
}

impl Answer {
    /// Splits the text at the point the user stopped hearing it: `(heard, unheard)`. Until the
    /// proxy confirms what was heard, all of it counts as heard.
    pub fn heard_split(&self) -> (&str, &str) {
        match &self.status {
            AnswerStatus::Interrupted { heard: Some(heard) } => {
                let cut = heard_prefix_len(&self.text, heard);
                self.text.split_at(cut)
            }
            _ => (self.text.as_str(), ""),
        }
    }

    /// Whether the answer was cut short.
    pub fn is_interrupted(&self) -> bool {
        matches!(self.status, AnswerStatus::Interrupted { .. })
    }
}

/// The byte length of the prefix of `text` that matches `heard`, ignoring differences in
/// whitespace (the proxy joins the heard sentences with single spaces). If `heard` is not a
/// prefix of `text` at all, nothing counts as heard.
pub fn heard_prefix_len(text: &str, heard: &str) -> usize {
    let mut text_chars = text.char_indices().peekable();
    for wanted in heard.chars().filter(|c| !c.is_whitespace()) {
        loop {
            match text_chars.next() {
                Some((_, c)) if c.is_whitespace() => continue,
                Some((_, c)) if c == wanted => break,
                _ => return 0,
            }
        }
    }
    text_chars.peek().map_or(text.len(), |(at, _)| *at)
}

/// One exchange: the user's words and the answer to them.
#[derive(Debug, Clone, PartialEq)]
pub struct Turn {
    /// The proxy's turn number.
    pub id: TurnId,
    /// What the user said.
    pub user: UserText,
    /// The answer, once it started.
    pub answer: Option<Answer>,
    /// The latency waterfall, once the turn is over.
    pub waterfall: Option<Waterfall>,
}

/// The whole conversation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Conversation {
    turns: Vec<Turn>,
}

impl Conversation {
    /// An empty conversation.
    pub fn new() -> Self {
        Self::default()
    }

    /// The turns in turn order.
    pub fn turns(&self) -> &[Turn] {
        &self.turns
    }

    /// The ids of the turns in order (the keys of the page's list).
    pub fn turn_ids(&self) -> Vec<TurnId> {
        self.turns.iter().map(|turn| turn.id).collect()
    }

    /// One turn.
    pub fn turn(&self, id: TurnId) -> Option<&Turn> {
        self.turns
            .binary_search_by_key(&id, |turn| turn.id)
            .ok()
            .map(|index| &self.turns[index])
    }

    /// Applies a message from the proxy. Returns whether anything shown changed.
    pub fn apply(&mut self, message: &ServerMessage) -> bool {
        match message {
            ServerMessage::TranscriptDelta { turn_id, delta } => {
                let user = &mut self.turn_mut(*turn_id).user;
                if user.is_final {
                    return false;
                }
                user.text.push_str(delta);
            }
            ServerMessage::TranscriptFinal { turn_id, text } => {
                let user = &mut self.turn_mut(*turn_id).user;
                user.text.clone_from(text);
                user.is_final = true;
            }
            ServerMessage::ResponseStarted {
                response_id,
                turn_id,
            } => {
                self.turn_mut(*turn_id).answer = Some(Answer {
                    response_id: *response_id,
                    text: String::new(),
                    status: AnswerStatus::Streaming,
                });
            }
            ServerMessage::ResponseTextDelta { response_id, delta } => {
                let Some(answer) = self.answer_mut(*response_id) else {
                    return false;
                };
                answer.text.push_str(delta);
            }
            ServerMessage::ResponseDone {
                response_id,
                text,
                interrupted,
                ..
            } => {
                let Some(answer) = self.answer_mut(*response_id) else {
                    return false;
                };
                answer.text.clone_from(text);
                if *interrupted {
                    if !answer.is_interrupted() {
                        answer.status = AnswerStatus::Interrupted { heard: None };
                    }
                } else if answer.status == AnswerStatus::Streaming {
                    answer.status = AnswerStatus::Complete;
                }
            }
            ServerMessage::ResponseTruncated {
                response_id,
                heard_text,
            } => {
                let Some(answer) = self.answer_mut(*response_id) else {
                    return false;
                };
                answer.status = AnswerStatus::Interrupted {
                    heard: Some(heard_text.clone()),
                };
            }
            ServerMessage::Metrics {
                turn_id, waterfall, ..
            } => {
                self.turn_mut(*turn_id).waterfall = Some(waterfall.clone());
            }
            ServerMessage::SessionReady { .. }
            | ServerMessage::SpeechStarted { .. }
            | ServerMessage::SpeechStopped { .. }
            | ServerMessage::Error(_) => return false,
        }
        true
    }

    /// The user cut this answer (barge-in): mark it at once, before the proxy confirms.
    pub fn mark_interrupted(&mut self, response_id: ResponseId) -> bool {
        match self.answer_mut(response_id) {
            Some(answer) if !answer.is_interrupted() => {
                answer.status = AnswerStatus::Interrupted { heard: None };
                true
            }
            _ => false,
        }
    }

    /// The turn with this id, created in its place if new.
    fn turn_mut(&mut self, id: TurnId) -> &mut Turn {
        let index = match self.turns.binary_search_by_key(&id, |turn| turn.id) {
            Ok(index) => index,
            Err(index) => {
                self.turns.insert(
                    index,
                    Turn {
                        id,
                        user: UserText::default(),
                        answer: None,
                        waterfall: None,
                    },
                );
                index
            }
        };
        &mut self.turns[index]
    }

    fn answer_mut(&mut self, response_id: ResponseId) -> Option<&mut Answer> {
        self.turns
            .iter_mut()
            .rev()
            .filter_map(|turn| turn.answer.as_mut())
            .find(|answer| answer.response_id == response_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delta(turn_id: TurnId, delta: &str) -> ServerMessage {
        ServerMessage::TranscriptDelta {
            turn_id,
            delta: delta.into(),
        }
    }

    #[test]
    fn user_text_goes_from_partial_to_final() {
        let mut conversation = Conversation::new();
        conversation.apply(&delta(protocol::TurnId(1), "What is"));
        conversation.apply(&delta(protocol::TurnId(1), " the time"));
        let turn = conversation.turn(protocol::TurnId(1)).unwrap();
        assert_eq!(turn.user.text, "What is the time");
        assert!(!turn.user.is_final);
        conversation.apply(&ServerMessage::TranscriptFinal {
            turn_id: protocol::TurnId(1),
            text: "What is the time?".into(),
        });
        // A late delta does not change a final transcript.
        assert!(!conversation.apply(&delta(protocol::TurnId(1), " now")));
        let turn = conversation.turn(protocol::TurnId(1)).unwrap();
        assert_eq!(turn.user.text, "What is the time?");
        assert!(turn.user.is_final);
    }

    #[test]
    fn turns_are_ordered_by_turn_not_by_arrival() {
        let mut conversation = Conversation::new();
        conversation.apply(&ServerMessage::ResponseStarted {
            response_id: protocol::ResponseId(1),
            turn_id: protocol::TurnId(2),
        });
        conversation.apply(&delta(protocol::TurnId(1), "First"));
        conversation.apply(&delta(protocol::TurnId(3), "Third"));
        assert_eq!(conversation.turn_ids(), [TurnId(1), TurnId(2), TurnId(3)]);
    }

    #[test]
    fn the_answer_streams_then_completes() {
        let mut conversation = Conversation::new();
        conversation.apply(&ServerMessage::ResponseStarted {
            response_id: protocol::ResponseId(4),
            turn_id: protocol::TurnId(1),
        });
        conversation.apply(&ServerMessage::ResponseTextDelta {
            response_id: protocol::ResponseId(4),
            delta: "Hel".into(),
        });
        conversation.apply(&ServerMessage::ResponseTextDelta {
            response_id: protocol::ResponseId(4),
            delta: "lo.".into(),
        });
        let answer = conversation
            .turn(protocol::TurnId(1))
            .unwrap()
            .answer
            .clone()
            .unwrap();
        assert_eq!(
            (answer.text.as_str(), &answer.status),
            ("Hello.", &AnswerStatus::Streaming)
        );
        conversation.apply(&ServerMessage::ResponseDone {
            response_id: protocol::ResponseId(4),
            text: "Hello.".into(),
            interrupted: false,
            audio_samples: 100,
        });
        let answer = conversation
            .turn(protocol::TurnId(1))
            .unwrap()
            .answer
            .clone()
            .unwrap();
        assert_eq!(answer.status, AnswerStatus::Complete);
        assert_eq!(answer.heard_split(), ("Hello.", ""));
    }

    #[test]
    fn an_interrupted_answer_is_split_where_the_user_stopped_hearing_it() {
        let mut conversation = Conversation::new();
        conversation.apply(&ServerMessage::ResponseStarted {
            response_id: protocol::ResponseId(1),
            turn_id: protocol::TurnId(1),
        });
        conversation.apply(&ServerMessage::ResponseTextDelta {
            response_id: protocol::ResponseId(1),
            delta: "Once upon a time.  There was a keeper. She lit".into(),
        });
        assert!(conversation.mark_interrupted(protocol::ResponseId(1)));
        assert!(!conversation.mark_interrupted(protocol::ResponseId(1)));
        conversation.apply(&ServerMessage::ResponseDone {
            response_id: protocol::ResponseId(1),
            text: "Once upon a time.  There was a keeper. She lit".into(),
            interrupted: true,
            audio_samples: 100,
        });
        conversation.apply(&ServerMessage::ResponseTruncated {
            response_id: protocol::ResponseId(1),
            heard_text: "Once upon a time. There was".into(),
        });
        let answer = conversation
            .turn(protocol::TurnId(1))
            .unwrap()
            .answer
            .clone()
            .unwrap();
        assert!(answer.is_interrupted());
        assert_eq!(
            answer.heard_split(),
            ("Once upon a time.  There was", " a keeper. She lit")
        );
    }

    #[test]
    fn heard_prefix_matching_tolerates_whitespace_and_rejects_strangers() {
        assert_eq!(heard_prefix_len("Hello there. Bye.", "Hello there."), 12);
        assert_eq!(heard_prefix_len("Hello\n there. Bye", "Hello there."), 13);
        assert_eq!(heard_prefix_len("Hello there.", ""), 0);
        assert_eq!(heard_prefix_len("Hello there.", "Goodbye"), 0);
        assert_eq!(heard_prefix_len("Hi", "Hi there"), 0);
        assert_eq!(heard_prefix_len("Grüße dich", "Grüße"), "Grüße".len());
    }

    #[test]
    fn metrics_attach_to_their_turn() {
        let mut conversation = Conversation::new();
        conversation.apply(&ServerMessage::Metrics {
            turn_id: protocol::TurnId(2),
            response_id: Some(protocol::ResponseId(1)),
            waterfall: Waterfall {
                first_audio_sent_ms: Some(700.0),
                ..Waterfall::default()
            },
        });
        let waterfall = conversation
            .turn(protocol::TurnId(2))
            .unwrap()
            .waterfall
            .clone()
            .unwrap();
        assert_eq!(waterfall.first_audio_sent_ms, Some(700.0));
    }
}
