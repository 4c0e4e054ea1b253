//! One simulated browser: connects, then speaks turns until the run ends. Each tick (20 ms,
//! real time) sends what the page would send of the turn's utterance (recorded once through
//! the page's capture pipeline, [`Utterance`]); answers play on a model of the page's player,
//! which reports its progress every 100 ms as the playback worklet does. Optionally barges in
//! on some answers.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use protocol::{ClientMessage, ResponseId, ServerMessage};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::player::Player;
use crate::report::{Tally, TurnFigures, proxy_hops_ms};
use crate::speaker::{Captured, Utterance};

/// Bytes the socket reads at a time: an answer's frames are a few KB. The library's 128 KiB
/// default is zero-filled before every read, which made it most of this generator's CPU.
const READ_BUFFER_BYTES: usize = 8 * 1024;

/// How often the player reports what it played, as the playback worklet does.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

/// How long a turn spoken before the end of the run may wait for its answer.
const ANSWER_WAIT_MAX: Duration = Duration::from_secs(15);

/// How long after an answer's first audio a barge-in starts speaking.
const BARGE_IN_AFTER: Duration = Duration::from_millis(600);

/// What every simulated browser of a run does.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The proxy's `/ws` URL (with `?token=` if it needs one).
    pub url: String,
    /// A turn's utterance, as the page sends it.
    pub utterance: Arc<Utterance>,
    /// A barge-in's utterance (recorded with the echo guard up, as over an answer).
    pub barge_in: Arc<Utterance>,
    /// Pause after an answer has played before the next turn, in seconds.
    pub think_s: f64,
    /// Every how many turns to talk over the answer (0: never).
    pub barge_in_every: usize,
    /// Only hold the session open, never speak.
    pub idle: bool,
}

/// An answer in progress.
#[derive(Debug)]
struct Answer {
    response_id: ResponseId,
    player: Player,
    first_audio_at: Option<Instant>,
    done: bool,
    figures: TurnFigures,
    last_progress: Instant,
}

/// Runs one browser from `start` until `end`, adding what it measured to `tally`.
pub async fn run(plan: Arc<Plan>, start: Instant, end: Instant, tally: Arc<Mutex<Tally>>) {
    tokio::time::sleep_until(start.into()).await;
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(0);
    let Ok((socket, _)) =
        tokio_tungstenite::connect_async_with_config(plan.url.as_str(), Some(config), true).await
    else {
        lock(&tally).counts.sessions_failed += 1;
        return;
    };
    let (mut sink, mut stream) = socket.split();
    let ready = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(Ok(message)) = stream.next().await {
            if let Message::Text(text) = message
                && matches!(
                    ServerMessage::from_json(&text),
                    Ok(ServerMessage::SessionReady { .. })
                )
            {
                return true;
            }
        }
        false
    })
    .await;
    if ready != Ok(true) {
        lock(&tally).counts.sessions_failed += 1;
        return;
    }
    lock(&tally).counts.sessions_ready += 1;
    if plan.idle {
        // Hold the session, reading (pings are answered by the socket layer).
        let _ = tokio::time::timeout_at(end.into(), async {
            while let Some(Ok(_)) = stream.next().await {}
        })
        .await;
        let _ = sink.close().await;
        return;
    }

    let mut ticks = tokio::time::interval(Duration::from_millis(20));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut answer: Option<Answer> = None;
    // The utterance being replayed, and its next tick.
    let mut speaking: Option<(Arc<Utterance>, usize)> = None;
    // When the current turn's voice ended (last voiced sample fed).
    let mut voice_ended_at: Option<Instant> = None;
    // When to start the next turn's voice.
    let mut next_turn_at = Some(Instant::now() + Duration::from_millis(400));
    let mut turns = 0usize;
    let mut barge_in_pending = false;
    loop {
        tokio::select! {
            _ = ticks.tick() => {
                let now = Instant::now();
                // A turn spoken before the end is still answered and measured (within reason).
                let awaiting = voice_ended_at.is_some_and(|at| now < at + ANSWER_WAIT_MAX);
                if now >= end && answer.is_none() && speaking.is_none() && !awaiting {
                    break;
                }
                if next_turn_at.is_some_and(|at| now >= at) && now < end {
                    next_turn_at = None;
                    turns += 1;
                    barge_in_pending = plan.barge_in_every > 0 && turns.is_multiple_of(plan.barge_in_every);
                    speaking = Some((plan.utterance.clone(), 0));
                    lock(&tally).counts.turns += 1;
                }
                // A barge-in: the next turn's voice starts over the answer.
                if let Some(playing) = &answer
                    && barge_in_pending
                    && playing.first_audio_at.is_some_and(|at| now >= at + BARGE_IN_AFTER)
                {
                    barge_in_pending = false;
                    turns += 1;
                    speaking = Some((plan.barge_in.clone(), 0));
                    let mut tally = lock(&tally);
                    tally.counts.turns += 1;
                    tally.counts.barge_ins += 1;
                }
                if let Some((utterance, tick)) = &mut speaking {
                    if *tick == utterance.last_voiced_tick {
                        voice_ended_at = Some(now);
                    }
                    for item in &utterance.ticks[*tick] {
                        let message = match item {
                            Captured::Frame(pcm) => Message::Binary(pcm.clone()),
                            Captured::SpeechStarted => {
                                // Over an answer: clear the player and say how much played.
                                if let Some(cut) = answer.take() {
                                    send(&mut sink, ClientMessage::SpeechStarted).await;
                                    send(&mut sink, ClientMessage::Cancel {
                                        response_id: cut.response_id,
                                        played_samples: cut.player.played_samples(now),
                                    }).await;
                                    continue;
                                }
                                Message::text(ClientMessage::SpeechStarted.to_json())
                            }
                            Captured::SpeechPaused => Message::text(ClientMessage::SpeechPaused.to_json()),
                            Captured::SpeechResumed => Message::text(ClientMessage::SpeechResumed.to_json()),
                            Captured::SpeechStopped => Message::text(ClientMessage::SpeechStopped.to_json()),
                        };
                        if sink.send(message).await.is_err() {
                            lock(&tally).add_error("socket_closed");
                            return;
                        }
                    }
                    *tick += 1;
                    if *tick == utterance.ticks.len() {
                        speaking = None;
                    }
                }
                if let Some(playing) = &mut answer {
                    if now >= playing.last_progress + PROGRESS_EVERY && playing.player.received_samples() > 0 {
                        playing.last_progress = now;
                        send(&mut sink, ClientMessage::PlaybackProgress {
                            response_id: playing.response_id,
                            played_samples: playing.player.played_samples(now),
                        }).await;
                    }
                    // Played to its end: the turn is over.
                    if playing.done && playing.player.drained_at().is_none_or(|at| now >= at) {
                        answer = None;
                        if speaking.is_none() {
                            next_turn_at = Some(now + Duration::from_secs_f64(plan.think_s));
                        }
                    }
                }
            }
            frame = stream.next() => {
                let Some(Ok(frame)) = frame else {
                    lock(&tally).add_error("socket_closed");
                    return;
                };
                let now = Instant::now();
                match frame {
                    Message::Binary(bytes) => {
                        let Ok((response_id, pcm)) = protocol::decode_audio_frame(&bytes) else {
                            continue;
                        };
                        let Some(playing) = answer.as_mut().filter(|a| a.response_id == response_id) else {
                            continue;
                        };
                        if playing.done {
                            playing.figures.late_frames += 1;
                        }
                        if playing.first_audio_at.is_none() {
                            playing.first_audio_at = Some(now);
                            playing.figures.speech_end_to_first_audio_ms =
                                voice_ended_at.map(|at| (now - at).as_secs_f64() * 1000.0);
                        }
                        playing.player.receive(now, (pcm.len() / 2) as u64);
                    }
                    Message::Text(text) => {
                        let Ok(message) = ServerMessage::from_json(&text) else {
                            lock(&tally).add_error("unreadable");
                            continue;
                        };
                        on_message(message, &mut answer, now, &tally);
                        if answer.as_ref().is_some_and(|a| a.done) {
                            // This turn is answered; the next one sets its own end of speech.
                            voice_ended_at = None;
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    let _ = sink.close().await;
}

/// Handles a server message of the turn in progress.
fn on_message(
    message: ServerMessage,
    answer: &mut Option<Answer>,
    now: Instant,
    tally: &Mutex<Tally>,
) {
    match message {
        ServerMessage::ResponseStarted { response_id, .. } => {
            lock(tally).counts.answers += 1;
            *answer = Some(Answer {
                response_id,
                player: Player::default(),
                first_audio_at: None,
                done: false,
                figures: TurnFigures::default(),
                last_progress: now,
            });
        }
        ServerMessage::ResponseDone {
            response_id,
            interrupted,
            ..
        } => {
            if let Some(playing) = answer.as_mut().filter(|a| a.response_id == response_id) {
                playing.done = true;
                playing.figures.complete = !interrupted;
            }
        }
        ServerMessage::Metrics {
            response_id: Some(response_id),
            waterfall,
            ..
        } => {
            if let Some(playing) = answer.as_mut().filter(|a| a.response_id == response_id) {
                playing.figures.proxy_hops_ms = Some(proxy_hops_ms(&waterfall));
                playing.figures.underruns = playing.player.underruns();
                lock(tally).add_turn(&playing.figures);
            }
        }
        ServerMessage::Error(event) => {
            let code = serde_json::to_value(event.code)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_else(|| "unknown".to_owned());
            lock(tally).add_error(&code);
        }
        _ => {}
    }
}

async fn send<S>(sink: &mut S, message: ClientMessage)
where
    S: SinkExt<Message> + Unpin,
{
    let _ = sink.send(Message::text(message.to_json())).await;
}

fn lock(tally: &Mutex<Tally>) -> std::sync::MutexGuard<'_, Tally> {
    tally
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
