//! Every task a server starts is owned by it and ends with it: started and
//! stopped fifty times in one process, with TLS, a request and an open
//! socket each time (and on PostgreSQL, its event feed, in that suite), it
//! leaves no port open and no task alive.

use std::time::Duration;

use futures_util::StreamExt;
use lanrage_server::Server;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::oneshot,
};

use crate::{
    BACKEND,
    helpers::{Backend, ScratchDatabase, test_config},
    tls::{connect, write_certificate},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_starts_and_stops_leave_no_port_and_no_task_behind() {
    let dir = tempfile::tempdir().unwrap();
    let certificate = write_certificate(dir.path());
    let scratch = match BACKEND {
        Backend::Postgres => Some(ScratchDatabase::create().await),
        Backend::Sqlite => None,
    };
    let database_url = scratch.as_ref().map_or_else(
        || format!("sqlite://{}", dir.path().join("control.db").display()),
        |scratch| scratch.url.clone(),
    );
    let runtime = tokio::runtime::Handle::current().metrics();
    let alive_before = runtime.num_alive_tasks();

    for round in 0..50 {
        let mut config = test_config(&database_url);
        config.tls_cert = Some(dir.path().join("cert.pem"));
        config.tls_key = Some(dir.path().join("key.pem"));
        let server = Server::start(config).await.unwrap();
        let addr = server.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let running = tokio::spawn(server.run(async {
            let _ = stopped.await;
        }));

        // A request answered over TLS, and a socket left open.
        let mut https = connect(addr, &certificate).await.unwrap();
        https
            .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        https.read_to_string(&mut answer).await.unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "round {round}: {answer}"
        );
        let tls = connect(addr, &certificate).await.unwrap();
        let (mut socket, _) = tokio_tungstenite::client_async("wss://localhost/ws", tls)
            .await
            .unwrap();

        // The server closes the socket while it stops; the client answers
        // the close, as a client does.
        stop.send(()).unwrap();
        let closing = async {
            let mut closed = false;
            // Read on after the close frame: that sends the client's answer.
            while let Some(Ok(frame)) = socket.next().await {
                closed |= frame.is_close();
            }
            closed
        };
        let (stopped, closed) = tokio::join!(
            tokio::time::timeout(Duration::from_secs(15), running),
            closing
        );
        stopped.expect("the server stops").unwrap().unwrap();
        assert!(closed, "round {round}: the socket got no close frame");
        assert!(
            TcpStream::connect(addr).await.is_err(),
            "round {round}: the port is still open"
        );
    }

    // A finished task stops counting once the runtime has dropped it.
    let started = tokio::time::Instant::now();
    while runtime.num_alive_tasks() > alive_before && started.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        runtime.num_alive_tasks(),
        alive_before,
        "tasks left alive after fifty servers stopped"
    );
}
