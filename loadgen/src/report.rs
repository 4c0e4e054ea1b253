//! What a run measured, added up over its sessions, and the line it prints.

use std::collections::BTreeMap;
use std::time::Duration;

use protocol::Waterfall;
use serde::Serialize;

/// What one answered turn measured.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TurnFigures {
    /// Last voiced sample fed → first audio frame of the answer, in ms.
    pub speech_end_to_first_audio_ms: Option<f64>,
    /// The proxy's own hops of the turn (from its `metrics`), each in ms, in the order of
    /// [`HOP_NAMES`].
    pub proxy_hops_ms: Option<[f64; HOPS]>,
    /// The answer ended as generated (not interrupted, not cut by an error).
    pub complete: bool,
    /// Times the player ran dry mid-answer.
    pub underruns: u32,
    /// Audio frames that arrived after the answer's `response_done`.
    pub late_frames: u32,
}

/// What a run counted.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Counts {
    /// Sessions that got `session_ready`.
    pub sessions_ready: usize,
    /// Sessions that could not connect (or were refused).
    pub sessions_failed: usize,
    /// Turns spoken.
    pub turns: usize,
    /// Answers started (`response_started`).
    pub answers: usize,
    /// Answers ended as generated.
    pub answers_complete: usize,
    /// Barge-ins made.
    pub barge_ins: usize,
    /// Answers whose playback ran dry at least once.
    pub answers_with_underruns: usize,
    /// All underruns.
    pub underruns: u64,
    /// Audio frames after their answer's `response_done`.
    pub late_frames: u64,
    /// Errors by code.
    pub errors: BTreeMap<String, usize>,
}

/// Everything a run measured.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    /// What it counted.
    pub counts: Counts,
    /// Per answered turn.
    pub latencies_ms: Vec<f64>,
    /// Per answered turn with a waterfall: the sum of its hops.
    pub proxy_ms: Vec<f64>,
    /// Per answered turn with a waterfall: each hop, in the order of [`HOP_NAMES`].
    pub hop_ms: [Vec<f64>; HOPS],
}

impl Tally {
    /// Adds one turn's figures.
    pub fn add_turn(&mut self, turn: &TurnFigures) {
        if let Some(ms) = turn.speech_end_to_first_audio_ms {
            self.latencies_ms.push(ms);
        }
        if let Some(hops) = turn.proxy_hops_ms {
            self.proxy_ms.push(hops.iter().sum());
            for (all, ms) in self.hop_ms.iter_mut().zip(hops) {
                all.push(ms);
            }
        }
        let counts = &mut self.counts;
        counts.answers_complete += usize::from(turn.complete);
        if turn.underruns > 0 {
            counts.answers_with_underruns += 1;
            counts.underruns += u64::from(turn.underruns);
        }
        counts.late_frames += u64::from(turn.late_frames);
    }

    /// Adds an error.
    pub fn add_error(&mut self, code: &str) {
        *self.counts.errors.entry(code.to_owned()).or_default() += 1;
    }

    /// The run's summary.
    pub fn summary(&self, sessions: usize, cost: Option<ProxyCost>) -> Summary {
        let mut latencies = self.latencies_ms.clone();
        let mut proxy = self.proxy_ms.clone();
        Summary {
            sessions,
            counts: self.counts.clone(),
            first_audio_p50_ms: percentile(&mut latencies, 0.50),
            first_audio_p99_ms: percentile(&mut latencies, 0.99),
            proxy_p50_ms: percentile(&mut proxy, 0.50),
            proxy_p99_ms: percentile(&mut proxy, 0.99),
            hop_p99_ms: self
                .hop_ms
                .clone()
                .map(|mut hop| percentile(&mut hop, 0.99)),
            proxy: cost,
            sim_cores: None,
            loadgen_cores: None,
        }
    }
}

/// How many of the proxy's own hops a turn has.
pub const HOPS: usize = 4;

/// The proxy's own hops, as the report names them.
pub const HOP_NAMES: [&str; HOPS] = [
    "end of speech → commit",
    "transcript → LLM request",
    "first clause → TTS request",
    "TTS first byte → browser",
];

/// The proxy's own hops in one turn, from its waterfall: the commit, transcript → LLM
/// request, first clause → TTS request, first TTS byte → first frame written (0 for a hop
/// the pipeline that ran does not have). The rest is upstream time.
pub fn proxy_hops_ms(w: &Waterfall) -> [f64; HOPS] {
    let hop = |from: Option<f64>, to: Option<f64>| match (from, to) {
        (Some(from), Some(to)) => (to - from).max(0.0),
        _ => 0.0,
    };
    [
        w.commit_sent_ms.unwrap_or_default(),
        hop(w.transcript_final_ms, w.llm_request_ms),
        hop(w.first_clause_ms, w.tts_request_ms),
        hop(w.tts_first_byte_ms, w.first_audio_sent_ms),
    ]
}

/// The `q` quantile (nearest rank) of `values`, which it sorts; `None` when empty.
pub fn percentile(values: &mut [f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    Some(values[rank - 1])
}

/// What the proxy process cost over the run, read from `/proc`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ProxyCost {
    /// CPU-seconds per session-minute.
    pub cpu_s_per_session_minute: f64,
    /// Cores in use on average.
    pub cores: f64,
    /// Resident memory per session (peak minus before the sessions), in KiB.
    pub rss_kib_per_session: f64,
    /// Resident memory at its peak, in MiB.
    pub rss_peak_mib: f64,
}

impl ProxyCost {
    /// The cost between two readings, with `sessions` open for `elapsed`.
    pub fn between(
        before: ProcReading,
        after: ProcReading,
        peak_rss_kib: u64,
        sessions: usize,
        elapsed: Duration,
    ) -> Self {
        let cpu_s = after.cpu_s - before.cpu_s;
        let minutes = elapsed.as_secs_f64() / 60.0;
        let sessions = sessions.max(1) as f64;
        Self {
            cpu_s_per_session_minute: cpu_s / (sessions * minutes).max(f64::EPSILON),
            cores: cpu_s / elapsed.as_secs_f64().max(f64::EPSILON),
            rss_kib_per_session: peak_rss_kib.saturating_sub(before.rss_kib) as f64 / sessions,
            rss_peak_mib: peak_rss_kib as f64 / 1024.0,
        }
    }
}

/// One reading of a process's CPU time and resident memory.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcReading {
    /// User + system CPU time, in seconds.
    pub cpu_s: f64,
    /// Resident set, in KiB.
    pub rss_kib: u64,
}

/// Clock ticks per second of `/proc/PID/stat` (Linux's `USER_HZ`, 100 on every architecture
/// it runs on today).
const USER_HZ: f64 = 100.0;

impl ProcReading {
    /// Reads process `pid`; `None` if it is gone or `/proc` is not there.
    pub fn of(pid: u32) -> Option<Self> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        Some(Self {
            cpu_s: parse_cpu_ticks(&stat)? as f64 / USER_HZ,
            rss_kib: parse_rss_kib(&status)?,
        })
    }
}

/// utime + stime of a `/proc/PID/stat` line (fields 14 and 15, after the parenthesised name,
/// which may hold spaces).
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// `VmRSS` of a `/proc/PID/status`, in KiB.
fn parse_rss_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// A run's figures, as printed.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Sessions asked for.
    pub sessions: usize,
    /// What the run counted.
    #[serde(flatten)]
    pub counts: Counts,
    /// End of speech → first audio, p50.
    pub first_audio_p50_ms: Option<f64>,
    /// End of speech → first audio, p99.
    pub first_audio_p99_ms: Option<f64>,
    /// The proxy's own hops, p50.
    pub proxy_p50_ms: Option<f64>,
    /// The proxy's own hops, p99.
    pub proxy_p99_ms: Option<f64>,
    /// Each of the proxy's hops on its own, p99, in the order of [`HOP_NAMES`].
    pub hop_p99_ms: [Option<f64>; HOPS],
    /// The proxy's cost, when its pid was given.
    pub proxy: Option<ProxyCost>,
    /// Cores the simulator used, when its pid was given.
    pub sim_cores: Option<f64>,
    /// Cores the load generator itself used.
    pub loadgen_cores: Option<f64>,
}

impl Summary {
    /// The table's header.
    pub const HEADER: &'static str = "sessions  ready  turns  answers  complete  barge-ins  first-audio p50/p99 ms  proxy p50/p99 ms  underrun-answers  late-frames  errors  cpu-s/session-min  cores proxy/sim/loadgen  KiB/session";

    /// The table's row.
    pub fn row(&self) -> String {
        let ms = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.0}"));
        let fine = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"));
        let c = &self.counts;
        let errors: usize = c.errors.values().sum();
        let (cpu, kib) = self.proxy.map_or_else(
            || ("-".to_owned(), "-".to_owned()),
            |c| {
                (
                    format!("{:.3}", c.cpu_s_per_session_minute),
                    format!("{:.0}", c.rss_kib_per_session),
                )
            },
        );
        let cores = [
            self.proxy.map(|c| c.cores),
            self.sim_cores,
            self.loadgen_cores,
        ]
        .map(fine)
        .join("/");
        format!(
            "{:>8}  {:>5}  {:>5}  {:>7}  {:>8}  {:>9}  {:>23}  {:>16}  {:>16}  {:>11}  {:>6}  {:>17}  {:>23}  {:>11}",
            self.sessions,
            c.sessions_ready,
            c.turns,
            c.answers,
            c.answers_complete,
            c.barge_ins,
            format!(
                "{}/{}",
                ms(self.first_audio_p50_ms),
                ms(self.first_audio_p99_ms)
            ),
            format!("{}/{}", fine(self.proxy_p50_ms), fine(self.proxy_p99_ms)),
            c.answers_with_underruns,
            c.late_frames,
            errors,
            cpu,
            cores,
            kib,
        )
    }
}

impl Summary {
    /// A line naming each of the proxy's hops with its p99, to see which one a high total
    /// comes from.
    pub fn hops_line(&self) -> String {
        let hops: Vec<String> = HOP_NAMES
            .iter()
            .zip(self.hop_p99_ms)
            .map(|(name, ms)| match ms {
                Some(ms) => format!("{name} {ms:.2}"),
                None => format!("{name} -"),
            })
            .collect();
        format!("{:>8}  proxy hops p99 ms: {}", "", hops.join(" · "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut values = vec![5.0, 1.0, 3.0, 2.0, 4.0];
        assert_eq!(percentile(&mut values, 0.5), Some(3.0));
        assert_eq!(percentile(&mut values, 0.99), Some(5.0));
        assert_eq!(percentile(&mut [], 0.5), None);
    }

    #[test]
    fn the_proxy_share_is_the_hops_between_upstream_steps() {
        let w = Waterfall {
            commit_sent_ms: Some(0.1),
            transcript_final_ms: Some(800.0),
            llm_request_ms: Some(800.2),
            llm_first_token_ms: Some(1200.0),
            first_clause_ms: Some(1300.0),
            tts_request_ms: Some(1300.3),
            tts_first_byte_ms: Some(1900.0),
            first_audio_sent_ms: Some(1900.4),
            ..Waterfall::default()
        };
        let hops = proxy_hops_ms(&w);
        let expected = [0.1, 0.2, 0.3, 0.4];
        for (hop, expected) in hops.iter().zip(expected) {
            assert!((hop - expected).abs() < 1e-6, "{hops:?}");
        }
    }

    #[test]
    fn proc_files_are_read() {
        let stat = "1234 (my proxy) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0";
        assert_eq!(parse_cpu_ticks(stat), Some(300));
        let status = "Name:\tproxy\nVmPeak:\t  9000 kB\nVmRSS:\t  4321 kB\n";
        assert_eq!(parse_rss_kib(status), Some(4321));
        assert!(ProcReading::of(std::process::id()).is_some());
    }
}
