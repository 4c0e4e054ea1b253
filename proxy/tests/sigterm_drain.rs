//! The proxy binary drains on SIGTERM, as a rolling deploy stops it: it stops accepting,
//! closes every session with 1012 "service restart" (the page reconnects and resumes,
//! elsewhere with a shared session store) and exits cleanly.

mod common;

use std::time::Duration;

use common::{DEADLINE, open_session, start_proxy};
use futures_util::StreamExt as _;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn sigterm_closes_sessions_with_service_restart_and_exits() {
    let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).expect("read the limit");
    let mut proxy = start_proxy(1024, hard, &[]).await;
    let mut socket = open_session("127.0.0.1", proxy.addr)
        .await
        .expect("a session");
    let ready = tokio::time::timeout(DEADLINE, socket.next())
        .await
        .expect("session_ready in time");
    assert!(
        matches!(&ready, Some(Ok(Message::Text(text))) if text.contains("\"resume\"")),
        "{ready:?}"
    );
    let pid = proxy.child.id().expect("the proxy runs");
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let close = tokio::time::timeout(DEADLINE, async {
        while let Some(frame) = socket.next().await {
            if let Ok(Message::Close(frame)) = frame {
                return frame.map(|frame| u16::from(frame.code));
            }
        }
        None
    })
    .await
    .expect("the proxy closes the session in time");
    assert_eq!(close, Some(1012), "service restart");
    let exit = tokio::time::timeout(DEADLINE, proxy.child.wait())
        .await
        .expect("the proxy exits in time")
        .expect("its status");
    assert!(exit.success(), "{exit:?}");
    // Nothing listens any more: a reconnect goes elsewhere.
    assert!(
        tokio::time::timeout(
            Duration::from_secs(5),
            open_session("127.0.0.1", proxy.addr)
        )
        .await
        .is_ok_and(|opened| opened.is_err())
    );
}
