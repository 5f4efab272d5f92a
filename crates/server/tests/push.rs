//! The push channel over a real socket: its read buffer is a few hundred bytes, yet a message
//! up to the limit arrives whole and the channel carries on; a message over the limit closes
//! the channel.

mod common;

use std::time::Duration;

use fleetcare_server::{Center, ServerConfig};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const PATIENCE: Duration = Duration::from_secs(15);

#[tokio::test]
async fn a_push_channel_takes_messages_larger_than_its_read_buffer_up_to_the_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        data_dir: dir.path().join("center"),
        ..ServerConfig::default()
    };
    let center = Center::start(&config).await.expect("center");
    let token = common::enroll_over_http(&center, "PUSH-1").await;
    let mut req = format!("ws://{}/device/v1/push", center.addr)
        .into_client_request()
        .expect("request");
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("push channel");

    // Within the limit (16 KiB), many times the read buffer: taken whole, the channel stays.
    for size in [1_000, 12_000, 16 * 1024 - 64] {
        ws.send(Message::Text("x".repeat(size).into()))
            .await
            .expect("send");
        let tag = format!("after {size}");
        ws.send(Message::Ping(tag.clone().into_bytes().into()))
            .await
            .expect("ping");
        let answer = tokio::time::timeout(PATIENCE, async {
            loop {
                match ws.next().await {
                    Some(Ok(Message::Pong(p))) => break Some(p),
                    Some(Ok(_)) => continue,
                    Some(Err(_)) | None => break None,
                }
            }
        })
        .await
        .expect("an answer in time");
        assert_eq!(
            answer.as_deref(),
            Some(tag.as_bytes()),
            "the channel answers after a message of {size} bytes"
        );
    }

    // Over the limit: the center closes the channel.
    ws.send(Message::Text("x".repeat(20_000).into()))
        .await
        .expect("send");
    let ended = tokio::time::timeout(PATIENCE, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => continue,
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "a message over the limit ends the channel");
    center.stop().await.expect("stop");
}
