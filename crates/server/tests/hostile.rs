//! Hostile clients over real sockets: a client that trickles its request head (slowloris) is
//! cut off once the header timeout passes, and the center goes on serving others.

use std::time::{Duration, Instant};

use fleetcare_server::{Center, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn a_slow_request_head_is_cut_off_and_the_center_serves_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        data_dir: dir.path().join("center"),
        header_read_timeout: Duration::from_secs(1),
        ..ServerConfig::default()
    };
    let center = Center::start(&config).await.expect("center");
    let addr = center.addr;
    let started = Instant::now();
    let mut slow = tokio::net::TcpStream::connect(addr).await.expect("connect");
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    // The head never ends: the center closes the connection (perhaps after a 408).
    let mut buf = vec![0u8; 1024];
    let mut got = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            match slow.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    let took = started.elapsed();
    assert!(
        closed.is_ok(),
        "the slow connection was still open after 15 s"
    );
    assert!(
        took >= Duration::from_millis(900),
        "cut off after {took:?}, before the timeout"
    );
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "a slow head got: {text}"
    );
    // Others are served.
    let mut ok = tokio::net::TcpStream::connect(addr).await.expect("connect");
    ok.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), ok.read_to_end(&mut answer))
        .await
        .expect("answered in time")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    center.stop().await.expect("stop");
}
