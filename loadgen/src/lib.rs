//! The load generator: M simulated browsers against a running proxy, over real sockets.
//!
//! Each browser speaks turns at real time in 20 ms frames through the page's own capture
//! pipeline (`client/audio`: VAD with the browser's defaults, pre-roll, hangover), plays the
//! answers on a model of the page's 24 kHz player (reporting progress as the worklet does),
//! thinks, and speaks again; some answers can be talked over. A run reports, for its M: end of
//! speech → first audio p50/p99 (from the last voiced sample, so the VAD's hangover counts as
//! it does for a user), the proxy's own hops (from its `metrics`), answers complete, underruns,
//! audio after `response_done`, errors, and the proxy's CPU and memory per session from
//! `/proc`.
//!
//! * [`speaker`] — the microphone and the capture pipeline;
//! * [`player`] — the player model;
//! * [`client`] — one browser's session;
//! * [`sequential`] — the seed's sequential design, a baseline talking to the upstream itself;
//! * [`report`] — the tally and the printed row.

pub mod client;
pub mod player;
pub mod report;
pub mod sequential;
pub mod speaker;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use report::{ProcReading, ProxyCost, Summary, Tally};

/// Who the simulated browsers talk to.
#[derive(Debug, Clone)]
pub enum Browsers {
    /// The proxy, as the page does.
    Proxy(client::Plan),
    /// The upstream directly, in the seed's sequential design.
    Sequential(sequential::Plan),
}

/// One run: `sessions` browsers following `plan`, their starts spread over `ramp`, speaking
/// for `duration` after the last has started. With `proxy_pid`, the proxy's cost is read from
/// `/proc` over the part of the run when every session is open.
pub async fn run(
    browsers: Browsers,
    sessions: usize,
    ramp: Duration,
    duration: Duration,
    proxy_pid: Option<u32>,
    sim_pid: Option<u32>,
) -> Summary {
    let browsers = match browsers {
        Browsers::Proxy(plan) => Ok(Arc::new(plan)),
        Browsers::Sequential(plan) => Err(Arc::new(plan)),
    };
    let tally = Arc::new(Mutex::new(Tally::default()));
    let began = Instant::now();
    let steady_from = began + ramp;
    let end = steady_from + duration;
    let before_sessions = proxy_pid.and_then(ProcReading::of);
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..sessions {
        let offset = ramp.mul_f64(n as f64 / sessions.max(1) as f64);
        match &browsers {
            Ok(plan) => tasks.spawn(client::run(
                plan.clone(),
                began + offset,
                end,
                tally.clone(),
            )),
            Err(plan) => tasks.spawn(sequential::run(
                plan.clone(),
                began + offset,
                end,
                tally.clone(),
            )),
        };
    }
    let others = tokio::spawn(cores_of(
        [sim_pid, Some(std::process::id())],
        steady_from,
        end,
    ));
    let cost = match proxy_pid {
        Some(pid) => measure(pid, before_sessions, steady_from, end, sessions).await,
        None => None,
    };
    let [sim_cores, loadgen_cores] = others.await.unwrap_or_default();
    while tasks.join_next().await.is_some() {}
    let tally = tally
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut summary = tally.summary(sessions, cost);
    summary.sim_cores = sim_cores;
    summary.loadgen_cores = loadgen_cores;
    summary
}

/// The cores each process used on average over the steady part of the run.
async fn cores_of<const N: usize>(
    pids: [Option<u32>; N],
    steady_from: Instant,
    end: Instant,
) -> [Option<f64>; N] {
    tokio::time::sleep_until(steady_from.into()).await;
    let before = pids.map(|pid| pid.and_then(ProcReading::of));
    tokio::time::sleep_until(end.into()).await;
    let elapsed = (end - steady_from).as_secs_f64().max(f64::EPSILON);
    let mut cores = [None; N];
    for (n, pid) in pids.iter().enumerate() {
        if let (Some(before), Some(after)) = (before[n], pid.and_then(ProcReading::of)) {
            cores[n] = Some((after.cpu_s - before.cpu_s) / elapsed);
        }
    }
    cores
}

/// Reads the proxy's CPU time across the steady part of the run and its peak memory, sampled
/// every half second.
async fn measure(
    pid: u32,
    before_sessions: Option<ProcReading>,
    steady_from: Instant,
    end: Instant,
    sessions: usize,
) -> Option<ProxyCost> {
    let baseline = before_sessions?;
    tokio::time::sleep_until(steady_from.into()).await;
    let start = ProcReading::of(pid)?;
    let mut peak_rss_kib = start.rss_kib;
    let mut last = start;
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(500)).await;
        last = ProcReading::of(pid)?;
        peak_rss_kib = peak_rss_kib.max(last.rss_kib);
    }
    let mut cost = ProxyCost::between(start, last, peak_rss_kib, sessions, end - steady_from);
    cost.rss_kib_per_session =
        peak_rss_kib.saturating_sub(baseline.rss_kib) as f64 / sessions.max(1) as f64;
    Some(cost)
}
