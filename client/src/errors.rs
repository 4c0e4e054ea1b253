//! Errors shown to the user, in plain words: the browser's own ([`ClientError`]) and the
//! proxy's `error` events ([`ShownError::from_event`]), each naming the stage it came from.

use protocol::{ErrorCode, ErrorEvent, Stage};

use crate::session::SessionError;

/// What went wrong on this side.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The user or the browser refused the microphone.
    #[error(
        "Microphone access was refused. Allow it in the browser's site settings and press Start again."
    )]
    MicrophoneDenied,
    /// There is no usable microphone.
    #[error("No microphone could be opened: {0}")]
    MicrophoneUnavailable(String),
    /// The browser lacks a needed audio feature, or it failed to start.
    #[error("This browser could not start audio: {0}")]
    AudioUnavailable(String),
    /// `audio.wasm` or `worklets.js` could not be loaded.
    #[error("The audio processor could not be loaded: {0}")]
    AudioProcessor(String),
    /// The WebSocket could not be opened.
    #[error("Could not connect to the server: {0}")]
    Connect(String),
    /// The WebSocket closed before the session was ready: the server refused it (another
    /// site's page, a missing access token) or could not be reached.
    #[error("The server did not open a session (code {code}).")]
    Refused {
        /// The WebSocket close code.
        code: u16,
    },
    /// The same, from a proxy on another origin than the page (`config.json`'s `proxy_url`):
    /// most likely its `ALLOWED_ORIGINS` does not list the page's origin.
    #[error(
        "The voice server at {proxy} did not open a session for this page (code {code}). This \
         page comes from {page_origin}: a server that does not list that origin in its \
         ALLOWED_ORIGINS refuses it."
    )]
    RefusedForeign {
        /// The WebSocket close code.
        code: u16,
        /// The proxy's origin.
        proxy: String,
        /// The page's origin.
        page_origin: String,
    },
    /// The bundle's `config.json` cannot be used.
    #[error("{0}")]
    Config(crate::bundle_config::ConfigError),
    /// The server ended the session on purpose (close 1000 with a reason: nobody spoke for a
    /// long while, the session reached its maximum length).
    #[error("{reason}")]
    EndedByServer {
        /// The server's reason, shown as it is.
        reason: String,
    },
    /// The WebSocket closed while the session ran.
    #[error("The connection to the server closed (code {code}{}).", if reason.is_empty() { String::new() } else { format!(": {reason}") })]
    ConnectionLost {
        /// The WebSocket close code.
        code: u16,
        /// The close reason, possibly empty.
        reason: String,
    },
    /// The socket dropped and every attempt to reopen it failed (see [`crate::reconnect`]).
    #[error(
        "The connection to the server dropped and could not be restored ({attempts} attempts)."
    )]
    ReconnectFailed {
        /// The attempts made.
        attempts: u32,
    },
    /// A reconnect got a fresh session instead of the old one (the proxy had forgotten it):
    /// the assistant no longer knows what was said.
    #[error("The connection dropped and the conversation restarted: earlier turns are forgotten.")]
    ConversationRestarted,
    /// The server sent something this page cannot read.
    #[error("The server sent a message this page does not understand: {0}")]
    BadMessage(String),
    /// The session cannot go on.
    #[error("{0}")]
    Session(#[from] SessionError),
}

impl ClientError {
    /// The error for a socket that closed with `code` and `reason` while its session ran: the
    /// server's own words when it ended the session normally and said why.
    pub fn closed_while_running(code: u16, reason: String) -> Self {
        if code == 1000 && !reason.is_empty() {
            ClientError::EndedByServer { reason }
        } else {
            ClientError::ConnectionLost { code, reason }
        }
    }

    /// The part of the system it concerns, in plain words.
    pub fn stage_words(&self) -> &'static str {
        match self {
            ClientError::MicrophoneDenied | ClientError::MicrophoneUnavailable(_) => "Microphone",
            ClientError::AudioUnavailable(_) | ClientError::AudioProcessor(_) => {
                "Audio in this browser"
            }
            ClientError::Connect(_)
            | ClientError::Refused { .. }
            | ClientError::RefusedForeign { .. }
            | ClientError::Config(_)
            | ClientError::ConnectionLost { .. }
            | ClientError::ReconnectFailed { .. }
            | ClientError::ConversationRestarted
            | ClientError::EndedByServer { .. } => "Connection",
            ClientError::BadMessage(_) | ClientError::Session(_) => "Connection",
        }
    }
}

/// The words for a pipeline stage.
pub fn stage_words(stage: Stage) -> &'static str {
    match stage {
        Stage::Stt => "Speech recognition",
        Stage::Llm => "The language model",
        Stage::Tts => "Speech synthesis",
        Stage::Proxy => "The server",
    }
}

/// An error as the page lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShownError {
    /// Where it happened, in plain words ("Speech recognition").
    pub stage: &'static str,
    /// A stable machine name of the stage (`stt`, `llm`, `tts`, `proxy`, `client`).
    pub stage_key: &'static str,
    /// What happened, in a sentence.
    pub message: String,
    /// What the user can do about it.
    pub hint: &'static str,
}

impl ShownError {
    /// From a proxy `error` event.
    pub fn from_event(event: &ErrorEvent) -> Self {
        let hint = match (event.code, event.retryable) {
            (ErrorCode::AudioTooShort | ErrorCode::TranscriptionFailed, _) => {
                "Try saying it again."
            }
            (ErrorCode::UpstreamAuth | ErrorCode::InsufficientQuota, _) => {
                "The operator needs to fix the service account."
            }
            (_, true) => "It may work if you try again.",
            (_, false) => "Trying again will not help.",
        };
        Self {
            stage: stage_words(event.stage),
            stage_key: event.stage.as_str(),
            message: event.message.clone(),
            hint,
        }
    }

    /// From a failure on this side.
    pub fn from_client(error: &ClientError) -> Self {
        let hint = match error {
            ClientError::MicrophoneDenied => "",
            ClientError::Refused { .. } => {
                "Check that the server runs. If it needs an access token, open the link you were \
                 given, with its ?token=."
            }
            ClientError::RefusedForeign { .. } => {
                "Whoever runs the server must add this page's origin to ALLOWED_ORIGINS (and keep \
                 the server running). If it needs an access token, open the link you were given, \
                 with its ?token=."
            }
            ClientError::Config(_) => "Whoever deployed this page must fix its config.json.",
            ClientError::ConnectionLost { .. }
            | ClientError::EndedByServer { .. }
            | ClientError::ReconnectFailed { .. }
            | ClientError::Connect(_) => "Press Start to connect again.",
            ClientError::ConversationRestarted => "Carry on talking.",
            _ => "Press Start to try again.",
        };
        Self {
            stage: error.stage_words(),
            stage_key: "client",
            message: error.to_string(),
            hint,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_errors_name_their_stage_in_plain_words() {
        let shown = ShownError::from_event(&ErrorEvent {
            stage: Stage::Tts,
            code: ErrorCode::RateLimited,
            message: "Speech synthesis is rate limited.".into(),
            retryable: true,
            turn_id: None,
            response_id: Some(protocol::ResponseId(1)),
        });
        assert_eq!(shown.stage, "Speech synthesis");
        assert_eq!(shown.stage_key, "tts");
        assert_eq!(shown.hint, "It may work if you try again.");
    }

    #[test]
    fn client_errors_read_as_sentences() {
        let error = ClientError::ConnectionLost {
            code: 1011,
            reason: "upstream gone".into(),
        };
        assert_eq!(
            error.to_string(),
            "The connection to the server closed (code 1011: upstream gone)."
        );
        let shown = ShownError::from_client(&error);
        assert_eq!(shown.stage, "Connection");
        assert_eq!(
            ClientError::ConnectionLost {
                code: 1006,
                reason: String::new()
            }
            .to_string(),
            "The connection to the server closed (code 1006)."
        );
        let ended = ShownError::from_client(&ClientError::closed_while_running(
            1000,
            "Session closed after 5 minutes without speech.".into(),
        ));
        assert_eq!(
            ended.message,
            "Session closed after 5 minutes without speech."
        );
        assert_eq!(ended.hint, "Press Start to connect again.");
        assert_eq!(
            ClientError::closed_while_running(1000, String::new()).to_string(),
            "The connection to the server closed (code 1000)."
        );
        let refused = ShownError::from_client(&ClientError::Refused { code: 1006 });
        assert_eq!(
            refused.message,
            "The server did not open a session (code 1006)."
        );
        assert!(refused.hint.contains("?token="), "{}", refused.hint);
        let foreign = ShownError::from_client(&ClientError::RefusedForeign {
            code: 1006,
            proxy: "https://voice-api.example.com".into(),
            page_origin: "https://cdn.example.net".into(),
        });
        assert!(
            foreign.message.contains("https://cdn.example.net")
                && foreign.message.contains("ALLOWED_ORIGINS"),
            "{}",
            foreign.message
        );
        assert!(foreign.hint.contains("ALLOWED_ORIGINS"), "{}", foreign.hint);
        let gave_up = ShownError::from_client(&ClientError::ReconnectFailed { attempts: 8 });
        assert_eq!(
            gave_up.message,
            "The connection to the server dropped and could not be restored (8 attempts)."
        );
        assert_eq!(gave_up.hint, "Press Start to connect again.");
        let restarted = ShownError::from_client(&ClientError::ConversationRestarted);
        assert_eq!(restarted.stage, "Connection");
        assert_eq!(restarted.hint, "Carry on talking.");
    }
}
