//! The proxy binary under a small open-file limit (set with `prlimit`, as an operator's
//! default of 1,024 or a container's would be): floods of sessions and slowloris connections
//! beyond its caps must leave `/healthz` and a good client working. It runs on its built-in
//! simulator, so the test needs no key.

mod common;

use std::time::Duration;

use common::{
    DEADLINE, a_good_session_works, a_good_session_works_soon, connect_from, healthy, open_session,
    start_proxy, wait_until_healthy,
};
use tokio::io::AsyncWriteExt as _;

#[tokio::test]
async fn the_open_file_limit_is_raised_and_the_caps_follow_it() {
    let proxy = start_proxy(256, 1024, &[]).await;
    assert!(
        proxy.startup_log.contains("open_files=1024"),
        "{}",
        proxy.startup_log
    );
    // (1024 - 64 headroom): a third for connections, the rest for sessions at 3 each.
    assert!(
        proxy.startup_log.contains("max_sessions=213")
            && proxy.startup_log.contains("max_connections=320"),
        "{}",
        proxy.startup_log
    );
    drop(proxy.child);
}

#[tokio::test]
async fn a_flood_of_sessions_beyond_the_caps_leaves_health_and_a_good_session_working() {
    let proxy = start_proxy(256, 256, &[]).await;
    let to = proxy.addr;

    // One address opens session after session: it gets its few, the rest are refused.
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..300 {
        match open_session("127.0.0.2", to).await {
            Ok(socket) => held.push(socket),
            Err(status) => {
                assert!(matches!(status, 0 | 429 | 503), "{status}");
                refused += 1;
            }
        }
    }
    assert!(held.len() <= 8, "{} sessions for one address", held.len());
    assert!(refused >= 292);
    assert!(healthy(to).await);
    a_good_session_works(to).await;

    // Many addresses at once fill the server's own cap (derived from the 256 descriptors)...
    let mut crowd = Vec::new();
    let mut busy = 0;
    for host in 3..=60 {
        for _ in 0..8 {
            match open_session(&format!("127.0.0.{host}"), to).await {
                Ok(socket) => crowd.push(socket),
                Err(503) => busy += 1,
                Err(status) => assert!(matches!(status, 0 | 429), "{status}"),
            }
        }
    }
    assert!(busy > 0, "the global cap refused some");
    // ...and the proxy still has descriptors to spare: health answers...
    assert!(healthy(to).await);
    // ...and once the crowd leaves, a good session is served at once.
    drop(crowd);
    drop(held);
    let give_up = tokio::time::Instant::now() + DEADLINE;
    loop {
        let body: serde_json::Value = reqwest::get(format!("http://{to}/healthz"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if body["sessions"] == 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < give_up, "sessions end");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    a_good_session_works(to).await;
}

#[tokio::test]
async fn two_thousand_slowloris_connections_do_not_stop_a_normal_client_under_1024_files() {
    slowloris(1024, 1024).await;
}

#[tokio::test]
async fn two_thousand_slowloris_connections_do_not_stop_a_normal_client() {
    // The common default: a soft limit of 1,024 under a higher hard one, which the proxy
    // raises itself to.
    let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).expect("read the limit");
    slowloris(1024, hard).await;
}

/// 2,000 slowloris connections, half from the good client's own address, against a proxy
/// under an open-file limit of `soft`:`hard`, while a good client is served.
async fn slowloris(soft: u64, hard: u64) {
    // The two slowloris tests hold 2,000 sockets each themselves.
    rlimit::increase_nofile_limit(8_192).expect("raise the test's own open-file limit");
    let proxy = start_proxy(soft, hard, &[("HEADER_READ_TIMEOUT_MS", "2000")]).await;
    let to = proxy.addr;
    let stop = tokio_util::sync::CancellationToken::new();
    let mut attackers = Vec::new();
    for n in 0..2_000u32 {
        // Half from the good client's own address (behind the same NAT, say), half from a
        // few others.
        let source = if n % 2 == 0 {
            "127.0.0.1".to_owned()
        } else {
            format!("127.0.1.{}", 1 + n % 4)
        };
        let stop = stop.clone();
        attackers.push(tokio::spawn(async move {
            // Connect, trickle one header line a second, never end the headers; when cut
            // off, come back.
            while !stop.is_cancelled() {
                if let Ok(mut stream) = connect_from(&source, to).await
                    && stream.write_all(b"GET / HTTP/1.1\r\n").await.is_ok()
                {
                    loop {
                        tokio::select! {
                            () = stop.cancelled() => return,
                            () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                        if stream.write_all(b"X-Slow: yes\r\n").await.is_err() {
                            break;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }));
    }
    // While they trickle, a normal client is served (it tries again when refused, as the page
    // does).
    wait_until_healthy(to).await;
    a_good_session_works_soon(to).await;
    wait_until_healthy(to).await;
    stop.cancel();
    for attacker in attackers {
        let _ = attacker.await;
    }
}
