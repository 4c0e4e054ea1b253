//! One assistant response: LLM text → sentences → pipelined TTS → audio to the browser.
//!
//! A task per response. The LLM streams; every delta goes to the session at once; the sentence
//! splitter hands complete clauses to TTS while the LLM is still writing. Up to
//! [`SYNTHESIZER_REQUESTS_IN_FLIGHT`] Speech requests run at once, so the next sentence synthesizes
//! while the current one streams, but audio goes out strictly in sentence order, each chunk as
//! soon as it arrives (later sentences buffer behind a bounded channel).
//!
//! Cancelling is dropping: the session aborts the task, which drops the LLM stream and the
//! `JoinSet` of TTS requests, and with them every upstream HTTP request of the response.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use protocol::{ResponseId, Stage};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinSet;
use tracing::Instrument as _;

use crate::speakable::{SentenceSplitter, SplitterConfig};
use crate::upstream::UpstreamError;
use crate::upstream::chat::{ChatMessage, Responder};
use crate::upstream::speech::Synthesizer;
use crate::upstream::warm::Warmer;

/// Speech requests running at once for one response: the sentence playing, the next one
/// synthesizing, and one more to absorb a slow time-to-first-byte.
pub(crate) const SYNTHESIZER_REQUESTS_IN_FLIGHT: usize = 3;

/// Audio chunks a later sentence may buffer before its request waits (TCP then slows the
/// upstream). Speech chunks are a few kilobytes; this holds seconds of audio.
const SENTENCE_AUDIO_QUEUE_CHUNKS: usize = 64;

/// Sentences queued for synthesis ahead of the one playing.
const SENTENCE_QUEUE: usize = 32;

/// What a response task tells its session.
#[derive(Debug)]
pub(crate) enum ResponseEvent {
    /// The Chat Completions request was sent.
    LlmRequestSent(Instant),
    /// The first token arrived.
    LlmFirstToken(Instant),
    /// More answer text.
    TextDelta(String),
    /// The first clause went to TTS.
    FirstClause(Instant),
    /// The first Speech request was sent.
    TtsRequestSent(Instant),
    /// The first synthesized byte arrived.
    TtsFirstByte(Instant),
    /// A sentence's audio starts at this sample of the response.
    SegmentStarted {
        /// The sentence.
        text: String,
        /// Where its audio starts.
        start_sample: u64,
    },
    /// All audio of the current sentence was sent.
    SegmentFinished {
        /// Its length.
        samples: u64,
    },
    /// The first audio chunk was handed to the browser's socket.
    FirstAudioSent(Instant),
    /// A stage failed; the response ends with what it has.
    Failed(Stage, UpstreamError),
    /// The response is complete (possibly after a failure). Its text is the sum of its
    /// [`ResponseEvent::TextDelta`]s.
    Finished {
        /// All audio samples sent.
        audio_samples: u64,
    },
}

/// Audio for the browser, tagged with its response.
#[derive(Debug)]
pub(crate) struct AudioOut {
    /// The response.
    pub response_id: ResponseId,
    /// PCM16 LE, whole samples.
    pub pcm: Bytes,
}

/// The services a response uses.
#[derive(Debug, Clone)]
pub(crate) struct Pipeline {
    /// The LLM.
    pub responder: Responder,
    /// The TTS.
    pub synthesizer: Synthesizer,
    /// Opens their connections ahead of a turn.
    pub warmer: Arc<Warmer>,
    /// The shortest first clause sent to TTS on its own, in speakable chars.
    pub first_clause_min_chars: usize,
}

/// One sentence on its way: its text and its audio as it arrives.
struct SentenceJob {
    text: String,
    audio: mpsc::Receiver<Result<Bytes, UpstreamError>>,
}

impl Pipeline {
    /// Warms the LLM and speech connections (see [`Warmer::warm`]).
    pub(crate) fn warm(&self) {
        self.warmer.warm();
    }

    /// Produces the response `id` to `messages`, reporting to `events` and sending audio to
    /// `audio`. Returns when done; abort the task to cancel. With `hold`, its first audio
    /// waits until `hold` fires (a speculative answer, heard only once confirmed); meanwhile
    /// the LLM writes on and the first Speech request streams into its bounded queue.
    pub(crate) async fn respond(
        self,
        id: ResponseId,
        messages: Vec<ChatMessage>,
        events: mpsc::Sender<(ResponseId, ResponseEvent)>,
        audio: mpsc::Sender<AudioOut>,
        hold: Option<oneshot::Receiver<()>>,
    ) {
        let (jobs_tx, jobs_rx) = mpsc::channel(SENTENCE_QUEUE);
        let mut sentences = SentenceQueue {
            id,
            synthesizer: self.synthesizer.clone(),
            permits: Arc::new(Semaphore::new(SYNTHESIZER_REQUESTS_IN_FLIGHT)),
            jobs: Some(jobs_tx),
            tasks: JoinSet::new(),
            events: events.clone(),
            started: false,
        };
        let reporter = Reporter { id, events };
        let splitter = SplitterConfig {
            first_clause_min_chars: self.first_clause_min_chars,
            ..SplitterConfig::default()
        };
        let writer = write_text(
            &self.responder,
            &messages,
            splitter,
            &reporter,
            &mut sentences,
        );
        let speaker = speak(id, jobs_rx, &reporter, &audio, hold);
        tokio::pin!(writer, speaker);
        let mut writing = true;
        // The speaker ends after the writer unless TTS fails; then the answer stops there and
        // dropping the writer closes the LLM stream.
        let (audio_samples, tts_error) = loop {
            tokio::select! {
                () = &mut writer, if writing => writing = false,
                outcome = &mut speaker => break outcome,
            }
        };
        if let Some(error) = tts_error {
            reporter
                .send(ResponseEvent::Failed(Stage::Tts, error))
                .await;
        }
        reporter
            .send(ResponseEvent::Finished { audio_samples })
            .await;
    }
}

/// Sends a response's events to its session.
struct Reporter {
    id: ResponseId,
    events: mpsc::Sender<(ResponseId, ResponseEvent)>,
}

impl Reporter {
    async fn send(&self, event: ResponseEvent) {
        // The session may be gone; then nobody needs the event.
        let _ = self.events.send((self.id, event)).await;
    }
}

/// Streams the LLM answer, forwarding text and queueing each sentence for TTS as it completes.
async fn write_text(
    responder: &Responder,
    messages: &[ChatMessage],
    splitter: SplitterConfig,
    reporter: &Reporter,
    sentences: &mut SentenceQueue,
) {
    let mut splitter = SentenceSplitter::new(splitter);
    let mut complete = Vec::new();
    let mut first_token = true;
    reporter
        .send(ResponseEvent::LlmRequestSent(Instant::now()))
        .await;
    let mut stream = match responder.start(messages).await {
        Ok(stream) => stream,
        Err(error) => {
            sentences.close();
            reporter
                .send(ResponseEvent::Failed(Stage::Llm, error))
                .await;
            return;
        }
    };
    loop {
        match stream.next_delta().await {
            Ok(Some(delta)) => {
                if first_token {
                    first_token = false;
                    reporter
                        .send(ResponseEvent::LlmFirstToken(Instant::now()))
                        .await;
                }
                splitter.push(&delta, &mut complete);
                reporter.send(ResponseEvent::TextDelta(delta)).await;
            }
            Ok(None) => {
                splitter.finish(&mut complete);
                drop(stream);
                for sentence in complete.drain(..) {
                    sentences.push(sentence).await;
                }
                sentences.close();
                return;
            }
            Err(error) => {
                // Speak what was complete, then report.
                splitter.finish(&mut complete);
                for sentence in complete.drain(..) {
                    sentences.push(sentence).await;
                }
                sentences.close();
                reporter
                    .send(ResponseEvent::Failed(Stage::Llm, error))
                    .await;
                return;
            }
        }
        for sentence in complete.drain(..) {
            sentences.push(sentence).await;
        }
    }
}

/// Starts a Speech request per sentence (a bounded number at once) and queues the sentences,
/// in order, for [`speak`].
struct SentenceQueue {
    id: ResponseId,
    synthesizer: Synthesizer,
    permits: Arc<Semaphore>,
    /// Taken when the text is complete, which ends [`speak`] after the last sentence.
    jobs: Option<mpsc::Sender<SentenceJob>>,
    /// Dropping the set aborts every request still running.
    tasks: JoinSet<()>,
    events: mpsc::Sender<(ResponseId, ResponseEvent)>,
    started: bool,
}

impl SentenceQueue {
    async fn push(&mut self, text: String) {
        let first = !self.started;
        self.started = true;
        let (audio_tx, audio_rx) = mpsc::channel(SENTENCE_AUDIO_QUEUE_CHUNKS);
        let reporter = Reporter {
            id: self.id,
            events: self.events.clone(),
        };
        if first {
            reporter
                .send(ResponseEvent::FirstClause(Instant::now()))
                .await;
        }
        let synthesizer = self.synthesizer.clone();
        let permits = self.permits.clone();
        let input = text.clone();
        self.tasks.spawn(
            async move {
                let Ok(_permit) = permits.acquire_owned().await else {
                    return;
                };
                if first {
                    reporter
                        .send(ResponseEvent::TtsRequestSent(Instant::now()))
                        .await;
                }
                let mut stream = match synthesizer.start(&input).await {
                    Ok(stream) => stream,
                    Err(error) => {
                        let _ = audio_tx.send(Err(error)).await;
                        return;
                    }
                };
                let mut awaiting_first_byte = first;
                loop {
                    let chunk = stream.next_pcm().await;
                    if awaiting_first_byte && matches!(chunk, Ok(Some(_))) {
                        awaiting_first_byte = false;
                        reporter
                            .send(ResponseEvent::TtsFirstByte(Instant::now()))
                            .await;
                    }
                    let item = match chunk {
                        Ok(Some(pcm)) => Ok(pcm),
                        Ok(None) => return,
                        Err(error) => Err(error),
                    };
                    let failed = item.is_err();
                    if audio_tx.send(item).await.is_err() || failed {
                        return;
                    }
                }
            }
            .in_current_span(),
        );
        if let Some(jobs) = &self.jobs {
            let _ = jobs
                .send(SentenceJob {
                    text,
                    audio: audio_rx,
                })
                .await;
        }
    }

    /// No more sentences will come.
    fn close(&mut self) {
        self.jobs = None;
    }
}

/// Sends each sentence's audio in order. Returns the samples sent and the TTS error that
/// stopped it, if any.
async fn speak(
    id: ResponseId,
    mut jobs: mpsc::Receiver<SentenceJob>,
    reporter: &Reporter,
    audio: &mpsc::Sender<AudioOut>,
    mut hold: Option<oneshot::Receiver<()>>,
) -> (u64, Option<UpstreamError>) {
    let mut sent_samples = 0u64;
    let mut first_audio = true;
    while let Some(mut job) = jobs.recv().await {
        reporter
            .send(ResponseEvent::SegmentStarted {
                text: job.text,
                start_sample: sent_samples,
            })
            .await;
        let mut sentence_samples = 0u64;
        while let Some(chunk) = job.audio.recv().await {
            let pcm = match chunk {
                Ok(pcm) => pcm,
                Err(error) => {
                    reporter
                        .send(ResponseEvent::SegmentFinished {
                            samples: sentence_samples,
                        })
                        .await;
                    return (sent_samples + sentence_samples, Some(error));
                }
            };
            if let Some(hold) = hold.take()
                && hold.await.is_err()
            {
                // The speculation was dropped: nothing of it is heard.
                return (0, None);
            }
            sentence_samples += (pcm.len() / protocol::BYTES_PER_SAMPLE) as u64;
            if audio
                .send(AudioOut {
                    response_id: id,
                    pcm,
                })
                .await
                .is_err()
            {
                return (sent_samples + sentence_samples, None);
            }
            if first_audio {
                first_audio = false;
                reporter
                    .send(ResponseEvent::FirstAudioSent(Instant::now()))
                    .await;
            }
        }
        reporter
            .send(ResponseEvent::SegmentFinished {
                samples: sentence_samples,
            })
            .await;
        sent_samples += sentence_samples;
    }
    (sent_samples, None)
}
