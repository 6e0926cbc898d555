//! The connection layer against hostile clients on raw TCP: heads that
//! never come or trickle in, bodies that stall, idle kept-alive
//! connections, too many connections from one address, and the stack's
//! own error answers.

use std::{net::SocketAddr, time::Duration};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
    time::Instant,
};

use crate::helpers::{TestApp, spawn_app_with};

async fn app_with_timeouts(header: u64, body: u64, idle: u64) -> TestApp {
    spawn_app_with(|c| {
        c.http_header_timeout_secs = header;
        c.http_body_timeout_secs = body;
        c.http_idle_timeout_secs = idle;
    })
    .await
}

/// Everything the server sends until it closes the connection (or 30 s
/// pass), and how long that took.
async fn read_until_closed(stream: &mut TcpStream) -> (String, Duration) {
    let started = Instant::now();
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(30), stream.read(&mut chunk)).await {
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(n)) => bytes.extend_from_slice(&chunk[..n]),
            Err(_) => panic!(
                "the server kept the connection open for 30 s after {:?}",
                String::from_utf8_lossy(&bytes)
            ),
        }
    }
    (
        String::from_utf8_lossy(&bytes).into_owned(),
        started.elapsed(),
    )
}

/// The status and body of the one answer in `text`.
fn status_and_body(text: &str) -> (u16, serde_json::Value) {
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    let status = head[9..12].parse().unwrap();
    (status, serde_json::from_str(body).expect("a JSON body"))
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n")
}

/// Sends `GET /` on `stream` and expects a 200, leaving it open.
async fn get_root_ok(stream: &mut TcpStream) {
    stream.write_all(get("/").as_bytes()).await.unwrap();
    let answer = read_answer(stream).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// Reads one answer to a request without a body on a kept-alive connection.
async fn read_answer(stream: &mut TcpStream) -> String {
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed before answering");
        bytes.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&bytes);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(str::to_owned)
                })
                .and_then(|l| l.trim().parse().ok())
                .unwrap_or(0);
            if body.len() >= length {
                return text.into_owned();
            }
        }
    }
}

#[tokio::test]
async fn a_connection_that_never_sends_is_closed_after_the_header_timeout() {
    let app = app_with_timeouts(1, 10, 60).await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    let (text, took) = read_until_closed(&mut stream).await;
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "{took:?}"
    );
    let (status, body) = status_and_body(&text);
    assert_eq!(status, 408);
    assert!(body["detail"].is_string(), "{body}");
}

#[tokio::test]
async fn a_head_trickled_a_byte_at_a_time_is_cut_off_at_the_header_timeout() {
    let app = app_with_timeouts(2, 10, 60).await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    let started = Instant::now();
    let head =
        b"GET / HTTP/1.1\r\nhost: x\r\nx-slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let mut closed = false;
    for byte in head {
        if stream.write_all(&[*byte]).await.is_err() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        if started.elapsed() > Duration::from_secs(6) {
            break;
        }
    }
    let (text, _) = read_until_closed(&mut stream).await;
    let took = started.elapsed();
    assert!(closed || took < Duration::from_secs(8), "{took:?}");
    assert!(
        !text.contains("200 OK"),
        "the trickled request was served: {text}"
    );
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
}

#[tokio::test]
async fn a_first_byte_sent_late_does_not_buy_more_time() {
    let app = app_with_timeouts(2, 10, 60).await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    let started = Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stream.write_all(b"G").await.unwrap();
    let (text, _) = read_until_closed(&mut stream).await;
    let took = started.elapsed();
    assert!(took < Duration::from_millis(2900), "{took:?}");
    assert_eq!(status_and_body(&text).0, 408);
}

#[tokio::test]
async fn a_stalled_body_gets_408_and_the_connection_is_closed() {
    let app = app_with_timeouts(10, 1, 60).await;
    let token = app.register("stalling").await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST /parties HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\n\
         content-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"name\":"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let (text, took) = read_until_closed(&mut stream).await;
    assert!(took < Duration::from_secs(5), "{took:?}");
    let (status, body) = status_and_body(&text);
    assert_eq!(status, 408, "{text}");
    assert!(body["detail"].as_str().unwrap().contains("body"), "{body}");
    assert_eq!(app.party_count().await, 0);
}

#[tokio::test]
async fn kept_alive_connections_wait_for_the_idle_timeout_not_the_header_timeout() {
    let app = app_with_timeouts(1, 10, 3).await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    get_root_ok(&mut stream).await;
    // Longer than the header timeout, shorter than the idle one.
    tokio::time::sleep(Duration::from_millis(1800)).await;
    get_root_ok(&mut stream).await;
    let (rest, took) = read_until_closed(&mut stream).await;
    assert!(rest.is_empty(), "an idle close says nothing: {rest}");
    assert!(
        took >= Duration::from_millis(2800) && took < Duration::from_secs(6),
        "{took:?}"
    );
}

#[tokio::test]
async fn a_later_head_on_a_kept_alive_connection_has_the_header_timeout_too() {
    let app = app_with_timeouts(1, 10, 60).await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    get_root_ok(&mut stream).await;
    stream.write_all(b"GET / HTTP/1.1\r\nhost").await.unwrap();
    let (text, took) = read_until_closed(&mut stream).await;
    assert!(took < Duration::from_secs(4), "{took:?}");
    assert_eq!(status_and_body(&text).0, 408);
}

async fn connect_from(local: &str, server: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(format!("{local}:0").parse().unwrap())?;
    socket.connect(server).await
}

/// Whether the server closed `stream` (reads end) within a second.
async fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(
        tokio::time::timeout(Duration::from_secs(1), stream.read(&mut byte)).await,
        Ok(Ok(0) | Err(_))
    )
}

#[tokio::test]
async fn one_address_holds_at_most_its_connections_and_others_are_served() {
    let app = spawn_app_with(|c| c.max_connections_per_ip = 5).await;
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(connect_from("127.0.0.1", app.addr).await.unwrap());
    }
    // The server resets the sixth at once, maybe before connect returns.
    if let Ok(mut refused) = connect_from("127.0.0.1", app.addr).await {
        assert!(
            closed_by_server(&mut refused).await,
            "a sixth connection stayed open"
        );
    }
    // Another address is served while the first holds its share.
    let mut other = connect_from("127.0.0.2", app.addr).await.unwrap();
    get_root_ok(&mut other).await;
    // A slot freed is a slot again.
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut again = connect_from("127.0.0.1", app.addr).await.unwrap();
    get_root_ok(&mut again).await;
    drop((held, again));
    tokio::time::sleep(Duration::from_millis(200)).await;
    app.expect_metric(r#"lanrage_connections_refused_total{kind="per_address"} 1"#)
        .await;
}

#[tokio::test]
async fn errors_of_the_http_stack_carry_a_detail() {
    let app = app_with_timeouts(10, 10, 60).await;
    let long_uri = format!("/{}", "a".repeat(9000));
    let big_header = format!("x-big: {}\r\n", "b".repeat(40_000));
    let cases = [
        ("malformed", "GARBAGE\r\n\r\n".to_owned(), 400),
        ("URI too long", get(&long_uri), 414),
        (
            "header too large",
            format!("GET / HTTP/1.1\r\nhost: x\r\n{big_header}\r\n"),
            431,
        ),
    ];
    for (what, request, expected) in cases {
        let mut stream = TcpStream::connect(app.addr).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let (text, _) = read_until_closed(&mut stream).await;
        let (status, body) = status_and_body(&text);
        assert_eq!(status, expected, "{what}: {text}");
        assert!(body["detail"].is_string(), "{what}: {body}");
    }
}
