//! WebSocket scenarios: many idle members (memory per socket), and one
//! join fanned out to every member of a party (delivery latency).

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt, stream::SplitStream};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, tungstenite::Message};

use crate::{
    report::{self, ScenarioResult},
    server::Target,
    setup::{self, Member},
};

type Reader = SplitStream<WebSocketStream<MaybeTlsStream<TcpStream>>>;

/// Connects and authenticates one socket; returns its reading half (the
/// writing half is dropped: the client library answers pings by itself
/// only while reading, which the scenarios do).
async fn connect(
    target: &Target,
    member: &Member,
) -> anyhow::Result<(Reader, impl SinkExt<Message> + Unpin)> {
    let (socket, _) = tokio_tungstenite::connect_async(target.ws_url()).await?;
    let (mut sink, mut stream) = socket.split();
    sink.send(Message::Text(
        json!({"type": "auth", "peer_id": member.peer_id, "token": member.token})
            .to_string()
            .into(),
    ))
    .await?;
    let reply = next_json(&mut stream).await?;
    if reply["type"] != "auth_ok" {
        bail!("socket refused: {reply}");
    }
    Ok((stream, sink))
}

async fn next_json(stream: &mut Reader) -> anyhow::Result<Value> {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(30), stream.next())
            .await
            .context("no frame within 30 s")?
            .context("socket closed")??;
        if let Message::Text(text) = frame {
            return Ok(serde_json::from_str(&text)?);
        }
    }
}

/// Waits for the party event of `kind` about `peer_id` on a socket.
async fn wait_for(stream: &mut Reader, kind: &str, peer_id: &str) -> anyhow::Result<Instant> {
    loop {
        let message = next_json(stream).await?;
        let about = message["peer"]["peer_id"]
            .as_str()
            .or(message["peer_id"].as_str());
        if message["type"] == kind && about == Some(peer_id) {
            return Ok(Instant::now());
        }
    }
}

/// `count` members connected and idle: the server's memory per socket.
pub async fn idle_sockets(target: &Target, count: usize) -> anyhow::Result<ScenarioResult> {
    let client = reqwest::Client::new();
    eprintln!("  registering {count} peers");
    let members = setup::register_many(&client, target, "idle", count).await?;
    let before = target.usage();
    let started = Instant::now();
    let mut sockets = Vec::with_capacity(count);
    let mut latencies = report::histogram();
    for (i, member) in members.iter().enumerate() {
        let connecting = Instant::now();
        sockets.push(connect(target, member).await?);
        let _ = latencies.record(
            u64::try_from(connecting.elapsed().as_micros())
                .unwrap_or(u64::MAX)
                .max(1),
        );
        if (i + 1) % 1000 == 0 {
            eprint!("\r  {} sockets connected", i + 1);
        }
    }
    eprintln!();
    // Let the server settle, then measure it holding them all.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let holding = target.usage();
    let elapsed = started.elapsed();
    let mut result = ScenarioResult::from_histogram(
        &format!("idle sockets ({count}, connect+auth latency)"),
        &latencies,
        0,
        elapsed,
        before,
        holding,
        1,
    );
    if let (Some(before), Some(holding)) = (before, holding) {
        let added = holding.rss_bytes.saturating_sub(before.rss_bytes);
        result.note = Some(format!(
            "server RSS {:.1} MiB holding {count} sockets ({:.1} KiB per socket over the {:.1} MiB before)",
            mib(holding.rss_bytes),
            added as f64 / 1024.0 / count.max(1) as f64,
            mib(before.rss_bytes)
        ));
        result.rss_bytes_per_socket = Some(added / count.max(1) as u64);
    }
    drop(sockets);
    Ok(result)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1024.0 / 1024.0
}

/// A party of `size` members, all on sockets; `rounds` times a new peer
/// joins (and leaves) over HTTP and every member's socket must see it.
/// Latency: from sending the join to each member receiving `peer_joined`.
pub async fn fanout(target: &Target, size: usize, rounds: usize) -> anyhow::Result<ScenarioResult> {
    fanout_between(
        target,
        target,
        size,
        rounds,
        &format!("fan-out to {size} members (join → every socket)"),
    )
    .await
}

/// Fan-out with the joins sent to `target` and the members' sockets on
/// `sockets_on` (another instance on the same database, or the same one).
pub async fn fanout_between(
    target: &Target,
    sockets_on: &Target,
    size: usize,
    rounds: usize,
    name: &str,
) -> anyhow::Result<ScenarioResult> {
    let client = reqwest::Client::new();
    eprintln!("  preparing a party of {size} on sockets");
    let parties =
        setup::parties_with_members(&client, target, &format!("fan{size}x"), 1, size).await?;
    let (party, members) = parties.into_iter().next().context("no party")?;
    let mut readers = Vec::with_capacity(size);
    let mut writers = Vec::with_capacity(size);
    for member in &members {
        let (reader, writer) = connect(sockets_on, member).await?;
        readers.push(reader);
        writers.push(writer);
    }
    let joiner = setup::register(&client, target, &format!("fan{size}joiner")).await?;
    let before = target.usage();
    let started = Instant::now();
    let mut latencies = report::histogram();
    let mut errors = 0u64;
    for round in 0..rounds {
        let sent = Instant::now();
        setup::join(&client, target, &party, &joiner).await?;
        let arrivals = futures_util::future::join_all(
            readers
                .iter_mut()
                .map(|r| wait_for(r, "peer_joined", &joiner.peer_id)),
        )
        .await;
        for arrival in arrivals {
            match arrival {
                Ok(at) => {
                    let micros =
                        u64::try_from(at.duration_since(sent).as_micros()).unwrap_or(u64::MAX);
                    let _ = latencies.record(micros.max(1));
                }
                Err(_) => errors += 1,
            }
        }
        setup::leave(&client, target, &party, &joiner).await?;
        let departures = futures_util::future::join_all(
            readers
                .iter_mut()
                .map(|r| wait_for(r, "peer_left", &joiner.peer_id)),
        )
        .await;
        errors += departures.iter().filter(|d| d.is_err()).count() as u64;
        if (round + 1) % 10 == 0 {
            eprint!(
                "\r  {} of {rounds} joins delivered to {size} members",
                round + 1
            );
        }
    }
    eprintln!();
    let mut result = ScenarioResult::from_histogram(
        name,
        &latencies,
        errors,
        started.elapsed(),
        before,
        target.usage(),
        size,
    );
    result.note = Some(format!(
        "{rounds} joins and leaves, {} deliveries measured",
        latencies.len()
    ));
    drop(writers);
    Ok(result)
}
