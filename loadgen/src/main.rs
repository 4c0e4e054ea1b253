//! `loadgen`: runs M simulated browsers against a running proxy and prints a row of figures
//! per M. `scripts/loadtest.sh` starts a simulator and a proxy and runs the sweep.
//!
//! ```text
//! loadgen --url ws://127.0.0.1:8000/ws --sessions 50,200 --duration-s 30 --proxy-pid PID
//! ```

use std::time::Duration;

use clap::Parser;

/// Load generator for the voice proxy.
#[derive(Debug, Parser)]
#[command(name = "loadgen", version)]
struct Cli {
    /// The proxy's WebSocket URL (add `?token=…` if it needs one).
    #[arg(long, default_value = "ws://127.0.0.1:8000/ws")]
    url: String,
    /// Sessions per run, comma-separated: one run each, in order.
    #[arg(long, value_delimiter = ',', default_value = "10")]
    sessions: Vec<usize>,
    /// How long each run lasts once every session has started, in seconds.
    #[arg(long, default_value_t = 30.0)]
    duration_s: f64,
    /// Over how long the sessions of a run start, in seconds: one turn cycle of the default
    /// plan against the load test's simulator (1.5 s of speech, the 0.5 s hangover, ~2 s to
    /// the first audio, ~7 s of answer, 1 s of thought), so the turns of all sessions are
    /// spread over the cycle instead of coming in waves at twice the average rate.
    #[arg(long, default_value_t = 12.0)]
    ramp_s: f64,
    /// Voice per turn, in seconds.
    #[arg(long, default_value_t = 1.5)]
    speech_s: f64,
    /// Speak each turn in phrases of this many seconds with short pauses between them (0: one
    /// phrase), as a long question is spoken.
    #[arg(long, default_value_t = 0.0)]
    phrase_s: f64,
    /// The pause between phrases, in milliseconds: longer than the VAD's short pause, shorter
    /// than its hangover.
    #[arg(long, default_value_t = 300)]
    phrase_gap_ms: u64,
    /// Instead of the proxy, talk to this upstream base URL (e.g. `http://127.0.0.1:8001/v1`)
    /// in the seed's sequential design: whole transcript, whole answer, one Speech request
    /// (with the key in `OPENAI_API_KEY`, if set).
    #[arg(long)]
    sequential_upstream: Option<String>,
    /// Pause after an answer has played, in seconds.
    #[arg(long, default_value_t = 1.0)]
    think_s: f64,
    /// Talk over every Nth answer (0: never).
    #[arg(long, default_value_t = 0)]
    barge_in_every: usize,
    /// Only open the sessions and hold them.
    #[arg(long)]
    idle: bool,
    /// The proxy's process id, to read its CPU and memory from /proc.
    #[arg(long)]
    proxy_pid: Option<u32>,
    /// The simulator's process id, to read its CPU from /proc.
    #[arg(long)]
    sim_pid: Option<u32>,
    /// Print each run's summary as a JSON line too.
    #[arg(long)]
    json: bool,
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    // Two descriptors per session at most; the default soft limit of 1,024 is too few.
    if let Ok((_, hard)) = rlimit::getrlimit(rlimit::Resource::NOFILE) {
        let _ = rlimit::setrlimit(rlimit::Resource::NOFILE, hard, hard);
    }
    let phrases = loadgen::speaker::phrases(cli.speech_s, cli.phrase_s);
    let gap = Duration::from_millis(cli.phrase_gap_ms);
    let utterance = std::sync::Arc::new(loadgen::speaker::Utterance::record_phrases(
        &phrases, gap, false,
    ));
    let browsers = match &cli.sequential_upstream {
        Some(base_url) => loadgen::Browsers::Sequential(loadgen::sequential::Plan {
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_key: std::env::var("OPENAI_API_KEY").ok(),
            utterance,
            think_s: cli.think_s,
        }),
        None => loadgen::Browsers::Proxy(loadgen::client::Plan {
            url: cli.url.clone(),
            utterance,
            barge_in: std::sync::Arc::new(loadgen::speaker::Utterance::record_phrases(
                &phrases, gap, true,
            )),
            think_s: cli.think_s,
            barge_in_every: cli.barge_in_every,
            idle: cli.idle,
        }),
    };
    println!("{}", loadgen::report::Summary::HEADER);
    for &sessions in &cli.sessions {
        let summary = loadgen::run(
            browsers.clone(),
            sessions,
            Duration::from_secs_f64(cli.ramp_s),
            Duration::from_secs_f64(cli.duration_s),
            cli.proxy_pid,
            cli.sim_pid,
        )
        .await;
        println!("{}", summary.row());
        println!("{}", summary.hops_line());
        if cli.json {
            println!(
                "{}",
                serde_json::to_string(&summary)
                    .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
            );
        }
    }
}
