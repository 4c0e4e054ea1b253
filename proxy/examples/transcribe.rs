//! Streams a WAV file (or raw PCM16 LE 24 kHz mono on stdin) through the Realtime
//! transcription API and prints the partial and final text; with `--file`, uploads it whole to
//! the file transcription endpoint instead (what `STT_MODE=file` does per turn).
//!
//! ```text
//! cargo run -p proxy --example transcribe -- speech.wav
//! cargo run -p proxy --example transcribe -- --file speech.wav
//! sox speech.mp3 -t raw -r 24000 -c 1 -b 16 -e signed - | cargo run -p proxy --example transcribe -- -
//! ```
//!
//! Reads `OPENAI_API_KEY`, `OPENAI_BASE_URL`, `STT_MODEL` (and `.env`) like the proxy. Without a
//! key it runs against the built-in simulator, which answers with the utterance's length.

use std::io::Read as _;
use std::time::Duration;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use clap::Parser as _;
use protocol::TurnDetection;
use proxy::Backend;
use proxy::config::{Cli, Config};
use proxy::upstream::realtime::{Transcriber, TranscriberCommand, TranscriberEvent};
use proxy::wav::Wav;
use tokio_util::sync::CancellationToken;

/// One append: 100 ms of audio, a common chunk size for the Realtime API.
const CHUNK_BYTES: usize = 24_000 / 10 * 2;

/// How long to wait for a transcript after the audio was committed.
const TRANSCRIPT_TIMEOUT: Duration = Duration::from_secs(60);

/// With server VAD, how long the server may stay quiet after the audio ended before we stop.
const SERVER_VAD_QUIET: Duration = Duration::from_secs(3);

#[derive(Debug, clap::Parser)]
struct Args {
    /// A 16-bit PCM WAV file at 24 kHz (mono or stereo), or `-` for raw PCM16 LE 24 kHz mono
    /// on stdin.
    input: String,
    /// Send audio at real-time pace, as a microphone would (default: as fast as possible).
    #[arg(long)]
    realtime: bool,
    /// Let the server's VAD split the audio into turns instead of one commit at the end.
    #[arg(long, conflicts_with = "file")]
    server_vad: bool,
    /// Upload the audio whole to `POST /audio/transcriptions` instead of the Realtime API.
    #[arg(long)]
    file: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = dotenvy::dotenv();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter("warn")
        .init();
    let args = Args::parse();
    let pcm = read_input(&args.input)?;
    // The proxy's settings from the environment (and .env): the same key, URLs and models.
    let config = Config::try_from(Cli::parse_from(["transcribe"]))?;
    let backend = Backend::from_config(&config).await?;
    let detection = if args.server_vad {
        TurnDetection::ServerVad
    } else {
        TurnDetection::Client
    };
    let transcriber = if args.file {
        let http = proxy::upstream::http_client(config.limits.upstream_response_timeout);
        Transcriber::file(backend.upstream.clone(), http)
    } else {
        Transcriber::new(backend.upstream.clone(), detection)
    };
    let mut handle = transcriber.spawn(CancellationToken::new());

    let sender = handle.commands.clone();
    let realtime = args.realtime;
    let feeder = tokio::spawn(async move {
        for chunk in pcm.chunks(CHUNK_BYTES) {
            if sender
                .send(TranscriberCommand::Append(Bytes::copy_from_slice(chunk)))
                .await
                .is_err()
            {
                return;
            }
            if realtime {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        if !args.server_vad {
            let _ = sender.send(TranscriberCommand::Commit).await;
        }
    });

    loop {
        // With server VAD the turns end when the audio has and the server goes quiet.
        let quiet = if args.server_vad && feeder.is_finished() {
            SERVER_VAD_QUIET
        } else {
            TRANSCRIPT_TIMEOUT
        };
        let event = match tokio::time::timeout(quiet, handle.events.recv()).await {
            Ok(Some(event)) => event,
            Ok(None) => break,
            Err(_) if args.server_vad => break,
            Err(_) => bail!("no transcript within {TRANSCRIPT_TIMEOUT:?}"),
        };
        match event {
            TranscriberEvent::Delta { delta, .. } => eprint!("{delta}"),
            TranscriberEvent::Completed { transcript, .. } => {
                eprintln!();
                println!("{transcript}");
                if !args.server_vad {
                    break;
                }
            }
            TranscriberEvent::Failed { code, .. } => {
                eprintln!("[transcription failed: {}]", code.unwrap_or_default());
            }
            TranscriberEvent::CommitEmpty => {
                bail!("the audio is too short to transcribe (under 100 ms)")
            }
            TranscriberEvent::Error { code, message } => {
                eprintln!("[upstream error {}: {message}]", code.unwrap_or_default());
            }
            TranscriberEvent::Closed(error) | TranscriberEvent::TurnFailed { error, .. } => {
                bail!("transcription failed: {error}")
            }
            TranscriberEvent::Ready { .. }
            | TranscriberEvent::Committed { .. }
            | TranscriberEvent::SpeechStarted { .. }
            | TranscriberEvent::SpeechStopped { .. } => {}
        }
    }
    drop(backend);
    Ok(())
}

/// Reads the whole input as PCM16 LE 24 kHz mono.
fn read_input(input: &str) -> anyhow::Result<Vec<u8>> {
    if input == "-" {
        let mut pcm = Vec::new();
        std::io::stdin()
            .read_to_end(&mut pcm)
            .context("reading stdin")?;
        pcm.truncate(pcm.len() - pcm.len() % 2);
        return Ok(pcm);
    }
    let bytes = std::fs::read(input).with_context(|| format!("reading {input}"))?;
    let wav = Wav::parse(&bytes).with_context(|| format!("reading {input}"))?;
    if wav.sample_rate_hz != protocol::SAMPLE_RATE_HZ {
        bail!(
            "{input} is at {} Hz; the Realtime API takes 24000 Hz. Convert it with: sox {input} -r 24000 -c 1 -b 16 out.wav",
            wav.sample_rate_hz
        );
    }
    Ok(wav.mono_pcm16le())
}
