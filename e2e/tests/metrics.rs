//! `/metrics`: what a scrape shows before, during and after a conversation, where it is
//! served, and that Prometheus' own `promtool` accepts it.

use std::collections::BTreeMap;

use openai_sim::{Fault, SimConfig, SimStage};
use protocol::ServerMessage;
use proxy::config::Secret;
use voice_agent_e2e::{DEADLINE, TEST_ACCESS_TOKEN, TestProxy, silence, tone};

/// One sample of a scrape: its metric name and labels.
type Series = (String, BTreeMap<String, String>);

/// A parsed scrape: every sample's value by its series.
#[derive(Debug)]
struct Scrape {
    text: String,
    samples: BTreeMap<Series, f64>,
}

impl Scrape {
    /// Parses the text exposition format as far as the proxy writes it: `# ` comments, blank
    /// lines, and `name{label="value",…} value` samples whose label values hold no quote,
    /// comma or escape.
    fn parse(text: String) -> Self {
        let mut samples = BTreeMap::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect("a sample has a value");
            let value: f64 = value.parse().expect("a sample's value is a number");
            let (name, labels) = match series.split_once('{') {
                None => (series, BTreeMap::new()),
                Some((name, labels)) => {
                    let labels = labels.strip_suffix('}').expect("labels close");
                    let labels = labels
                        .split(',')
                        .filter(|pair| !pair.is_empty())
                        .map(|pair| {
                            let (key, value) = pair.split_once('=').expect("label=value");
                            let value = value.trim_matches('"');
                            (key.to_owned(), value.to_owned())
                        })
                        .collect();
                    (name, labels)
                }
            };
            let previous = samples.insert((name.to_owned(), labels), value);
            assert!(previous.is_none(), "a series appears once: {line}");
        }
        Self { text, samples }
    }

    /// The value of `name` with exactly `labels`; absent counts as 0 (a series that has not
    /// happened yet).
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let labels = labels
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect();
        self.samples
            .get(&(name.to_owned(), labels))
            .copied()
            .unwrap_or(0.0)
    }

    /// Whether the series exists.
    fn has(&self, name: &str, labels: &[(&str, &str)]) -> bool {
        let labels = labels
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect();
        self.samples.contains_key(&(name.to_owned(), labels))
    }
}

/// GETs `url`: the status and body.
async fn get(url: &str) -> (u16, String) {
    let response = reqwest::get(url).await.expect("the proxy answers");
    let status = response.status().as_u16();
    (status, response.text().await.expect("a body"))
}

/// Scrapes the proxy's main port.
async fn scrape(proxy: &TestProxy) -> Scrape {
    let (status, text) = get(&format!("{}/metrics", proxy.http_url())).await;
    assert_eq!(status, 200, "{text}");
    Scrape::parse(text)
}

/// Scrapes until `condition` holds, failing the test after [`DEADLINE`].
async fn scrape_until(proxy: &TestProxy, condition: impl Fn(&Scrape) -> bool) -> Scrape {
    let give_up = tokio::time::Instant::now() + DEADLINE;
    loop {
        let latest = scrape(proxy).await;
        if condition(&latest) {
            return latest;
        }
        assert!(
            tokio::time::Instant::now() < give_up,
            "the metrics did not get there within {DEADLINE:?}:\n{}",
            latest.text
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Opens `/ws` without a token as a page of `origin` would, or a program without one; the
/// HTTP status of the refusal (`None`: opened).
async fn open_ws(proxy: &TestProxy, origin: Option<&str>) -> Option<u16> {
    proxy
        .try_open_ws("", origin)
        .await
        .err()
        .map(|(status, _)| status)
}

/// Runs `promtool check metrics` on a scrape: parse errors and lint problems both fail.
/// promtool comes with Debian's `prometheus` package, which `scripts/install-tools.sh`
/// installs (the test command runs it first).
async fn promtool_check(text: &str) {
    use tokio::io::AsyncWriteExt as _;
    let mut child = tokio::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| {
            panic!("promtool runs (scripts/install-tools.sh installs it): {error}")
        });
    let mut stdin = child.stdin.take().expect("promtool's stdin");
    stdin
        .write_all(text.as_bytes())
        .await
        .expect("write the scrape to promtool");
    drop(stdin);
    let output = child.wait_with_output().await.expect("promtool runs");
    assert!(
        output.status.success(),
        "promtool check metrics: {}\n{}{}\n--- the scrape ---\n{text}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
}

#[tokio::test]
async fn a_conversation_moves_the_metrics_and_promtool_accepts_them() {
    let proxy = TestProxy::start(SimConfig::default(), |_| {}).await;
    let before = scrape(&proxy).await;
    assert_eq!(before.value("voice_sessions_live", &[]), 0.0);
    // Fixed series exist before anything happened, so a rate over them misses nothing.
    let fixed: [(&str, &[(&str, &str)]); 8] = [
        ("voice_turns_total", &[][..]),
        ("voice_audio_in_seconds_total", &[]),
        ("voice_audio_out_seconds_total", &[]),
        ("voice_first_audio_seconds_count", &[]),
        (
            "voice_sessions_closed_total",
            &[("reason", "client_closed")],
        ),
        ("voice_handshakes_refused_total", &[("reason", "origin")]),
        ("voice_upstream_retries_total", &[("stage", "tts")]),
        ("voice_turn_hop_seconds_count", &[("hop", "stt")]),
    ];
    for (name, labels) in fixed {
        assert!(
            before.has(name, labels),
            "{name} {labels:?}:\n{}",
            before.text
        );
    }
    promtool_check(&before.text).await;

    // A page of another site is refused, and counted by why.
    assert_eq!(
        open_ws(&proxy, Some("https://evil.example")).await,
        Some(403)
    );
    let refused = scrape(&proxy).await;
    let origin = [("reason", "origin")];
    assert_eq!(
        refused.value("voice_handshakes_refused_total", &origin),
        before.value("voice_handshakes_refused_total", &origin) + 1.0
    );
    assert_eq!(refused.value("voice_sessions_live", &[]), 0.0);

    let mut browser = proxy.connect().await;
    let during = scrape(&proxy).await;
    assert_eq!(during.value("voice_sessions_live", &[]), 1.0);

    // An error event the browser is sent, counted by stage and code.
    browser.send_text("{not json").await;
    browser
        .wait_for_error(|e| e.code == protocol::ErrorCode::InvalidMessage)
        .await;
    let invalid = [("stage", "proxy"), ("code", "invalid_message")];
    assert_eq!(
        scrape(&proxy).await.value("voice_errors_total", &invalid),
        before.value("voice_errors_total", &invalid) + 1.0
    );

    // The LLM is rate limited once: retried, and counted under its stage.
    proxy.sim.inject(SimStage::Chat, Fault::rate_limited());
    proxy
        .sim
        .script_transcript("What is the capital of France?");
    proxy
        .sim
        .script_reply("Paris is the capital of France. It sits on the Seine.");
    browser.say(&[tone(1.0), silence(0.2)].concat()).await;
    browser
        .wait_for(|m| matches!(m, ServerMessage::ResponseDone { .. }))
        .await;
    // The waterfall is counted before it is sent.
    browser
        .wait_for(|m| matches!(m, ServerMessage::Metrics { .. }))
        .await;
    let answered = scrape(&proxy).await;
    assert_eq!(answered.value("voice_sessions_live", &[]), 1.0);
    let llm = [("stage", "llm")];
    assert_eq!(
        answered.value("voice_upstream_retries_total", &llm),
        before.value("voice_upstream_retries_total", &llm) + 1.0
    );
    assert!(
        answered.value("voice_turns_total", &[]) >= before.value("voice_turns_total", &[]) + 1.0
    );
    assert!(answered.value("voice_audio_in_seconds_total", &[]) > 0.0);
    assert!(answered.value("voice_audio_out_seconds_total", &[]) > 0.0);
    assert_eq!(
        answered.value("voice_first_audio_seconds_count", &[]),
        before.value("voice_first_audio_seconds_count", &[]) + 1.0
    );
    assert_eq!(
        answered.value("voice_first_audio_seconds_bucket", &[("le", "+Inf")]),
        answered.value("voice_first_audio_seconds_count", &[])
    );
    for hop in ["stt", "llm_ttft", "tts_ttfb"] {
        assert_eq!(
            answered.value("voice_turn_hop_seconds_count", &[("hop", hop)]),
            before.value("voice_turn_hop_seconds_count", &[("hop", hop)]) + 1.0,
            "{hop}"
        );
    }

    browser.close().await;
    let closed = [("reason", "client_closed")];
    let after = scrape_until(&proxy, |scrape| {
        scrape.value("voice_sessions_live", &[]) == 0.0
            && scrape.value("voice_sessions_closed_total", &closed)
                > before.value("voice_sessions_closed_total", &closed)
    })
    .await;
    assert_eq!(
        after.value("voice_sessions_closed_total", &closed),
        before.value("voice_sessions_closed_total", &closed) + 1.0
    );
    promtool_check(&after.text).await;
    proxy.stop().await;
}

#[tokio::test]
async fn metrics_need_no_token_but_answer_only_allowed_hosts() {
    let proxy = TestProxy::start(SimConfig::default(), |config| {
        config.access_token = Some(Secret::new(TEST_ACCESS_TOKEN));
    })
    .await;
    // A scraper has no token; a voice session without one is refused, and counted.
    assert_eq!(open_ws(&proxy, None).await, Some(401));
    let refusals = scrape(&proxy).await;
    assert_eq!(
        refusals.value("voice_handshakes_refused_total", &[("reason", "token")]),
        1.0
    );
    // A name DNS rebinding pointed here is refused, as it is for /ws.
    let status = reqwest::Client::new()
        .get(format!("{}/metrics", proxy.http_url()))
        .header("host", "evil.example")
        .send()
        .await
        .expect("the proxy answers")
        .status();
    assert_eq!(status, 403);
    proxy.stop().await;
}

#[tokio::test]
async fn metrics_addr_moves_the_metrics_to_their_own_listener() {
    let proxy = TestProxy::start(SimConfig::default(), |config| {
        config.metrics_addr = Some("127.0.0.1:0".parse().expect("an address"));
    })
    .await;
    let give_up = tokio::time::Instant::now() + DEADLINE;
    let metrics_addr = loop {
        if let Some(addr) = proxy.state.metrics_addr() {
            break addr;
        }
        assert!(
            tokio::time::Instant::now() < give_up,
            "the metrics listener is bound"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    assert_ne!(metrics_addr, proxy.addr());
    let (status, _) = get(&format!("{}/metrics", proxy.http_url())).await;
    assert_eq!(status, 404, "the main port no longer serves /metrics");
    let (status, text) = get(&format!("http://{metrics_addr}/metrics")).await;
    assert_eq!(status, 200);
    let scrape = Scrape::parse(text);
    assert_eq!(scrape.value("voice_sessions_live", &[]), 0.0);
    // It counts this server's sessions.
    let browser = proxy.connect().await;
    let (_, text) = get(&format!("http://{metrics_addr}/metrics")).await;
    assert_eq!(Scrape::parse(text).value("voice_sessions_live", &[]), 1.0);
    drop(browser);
    proxy.stop().await;
}
