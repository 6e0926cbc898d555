//! The `abuse` scenario: about a thousand hostile connections at once
//! (slowloris heads, sockets that never read, resume storms on a long
//! event log), from their own loopback addresses, while a well-behaved
//! client heartbeats and reads its party from 127.0.0.1. It reports that
//! client's latency and the server's memory before, during and after.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::{io::AsyncWriteExt, net::TcpSocket, task::JoinSet};
use tokio_tungstenite::tungstenite::Message;

use crate::{
    report::{self, ScenarioResult},
    server::{Target, Usage},
    setup::{self, Member},
};

/// How many hostile connections of each kind, and from which addresses
/// (spread so the per-address cap lets them all in: what is measured is
/// the server under their load, not the cap refusing them).
#[derive(Debug, Clone, Copy)]
pub struct Hostiles {
    pub slowloris: usize,
    pub never_read: usize,
    pub resume_storm: usize,
    /// Requests a second each socket of the last two kinds sends.
    pub per_second: u32,
}

impl Hostiles {
    pub fn around(total: usize, per_second: u32) -> Self {
        Self {
            slowloris: total * 4 / 10,
            never_read: total * 3 / 10,
            resume_storm: total * 3 / 10,
            per_second: per_second.max(1),
        }
    }

    fn pause(&self) -> Duration {
        Duration::from_secs(1) / self.per_second
    }
}

/// Hostile members per party.
const PARTY_SIZE: usize = 10;
/// Events written to each hostile party's log before the run: more than
/// any replay (half the default send queue), so every resume is a snapshot.
const LOG_EVENTS: usize = 300;

/// The loopback address hostile connection `i` comes from (127.0.0.2 up,
/// 200 a piece).
fn hostile_address(i: usize) -> SocketAddr {
    let host = u8::try_from(2 + i / 200).unwrap_or(u8::MAX);
    SocketAddr::from(([127, 0, 0, host], 0))
}

fn server_address(target: &Target) -> anyhow::Result<SocketAddr> {
    target
        .base
        .trim_start_matches("http://")
        .parse()
        .context("the abuse scenario needs a plain http://IP:port server")
}

async fn connect_from(
    local: SocketAddr,
    server: SocketAddr,
    receive_buffer: Option<u32>,
) -> std::io::Result<tokio::net::TcpStream> {
    let socket = TcpSocket::new_v4()?;
    if let Some(size) = receive_buffer {
        socket.set_recv_buffer_size(size)?;
    }
    socket.bind(local)?;
    socket.connect(server).await
}

/// A request head sent a byte a second, reconnecting when cut off.
async fn slowloris(local: SocketAddr, server: SocketAddr, stop: Arc<AtomicBool>) {
    let head = b"GET / HTTP/1.1\r\nHost: bench\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut stream) = connect_from(local, server, None).await else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        for byte in head.iter().cycle() {
            if stop.load(Ordering::Relaxed) || stream.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// The `auth` message of `member`.
fn auth_message(member: &Member) -> String {
    json!({"type": "auth", "peer_id": member.peer_id, "token": member.token}).to_string()
}

/// A WebSocket from `local` to the target, or `None` (after a pause) when
/// the server refused it.
async fn upgrade(
    local: SocketAddr,
    target: &Target,
    receive_buffer: Option<u32>,
) -> Option<tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>> {
    let connected = async {
        let tcp = connect_from(local, server_address(target).ok()?, receive_buffer)
            .await
            .ok()?;
        let (socket, _) = tokio_tungstenite::client_async(target.ws_url(), tcp)
            .await
            .ok()?;
        Some(socket)
    };
    let socket = connected.await;
    if socket.is_none() {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    socket
}

/// A member's socket that asks for snapshots (`resume` from 0, every
/// `pause`) and never reads them: the server's queue and the kernel's
/// buffers fill until the server drops it; then it comes back.
async fn never_read(
    local: SocketAddr,
    target: Arc<Target>,
    member: Member,
    party: String,
    pause: Duration,
    stop: Arc<AtomicBool>,
    dropped: Arc<AtomicU64>,
) {
    while !stop.load(Ordering::Relaxed) {
        let Some(mut socket) = upgrade(local, &target, Some(4096)).await else {
            continue;
        };
        let auth = auth_message(&member);
        let resume = json!({"type": "resume", "party_id": party, "after_seq": 0}).to_string();
        let mut ok = socket.send(Message::Text(auth.into())).await.is_ok();
        while ok && !stop.load(Ordering::Relaxed) {
            tokio::time::sleep(pause).await;
            // Written without reading: a reset from the server ends it.
            ok = tokio::time::timeout(
                Duration::from_secs(1),
                socket.send(Message::Text(resume.clone().into())),
            )
            .await
            .is_ok_and(|sent| sent.is_ok())
                && socket.get_ref().peer_addr().is_ok();
        }
        if !stop.load(Ordering::Relaxed) {
            dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A member's socket asking for the whole log again and again.
async fn resume_storm(
    local: SocketAddr,
    target: Arc<Target>,
    member: Member,
    party: String,
    pause: Duration,
    stop: Arc<AtomicBool>,
    resumes: Arc<AtomicU64>,
) {
    while !stop.load(Ordering::Relaxed) {
        let Some(socket) = upgrade(local, &target, None).await else {
            continue;
        };
        let (mut sink, mut stream) = socket.split();
        // Read and discard everything, so this socket is not a slow reader.
        let reader = tokio::spawn(async move { while let Some(Ok(_)) = stream.next().await {} });
        let auth = auth_message(&member);
        let mut ok = sink.send(Message::Text(auth.into())).await.is_ok();
        while ok && !stop.load(Ordering::Relaxed) && !reader.is_finished() {
            let resume = json!({"type": "resume", "party_id": party, "after_seq": 0});
            ok = sink
                .send(Message::Text(resume.to_string().into()))
                .await
                .is_ok();
            resumes.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(pause).await;
        }
        reader.abort();
    }
}

/// Keeps the hostile parties' logs growing: their hosts rejoin in turn (a
/// refresh, one event each), about 50 events a second in all.
async fn churn(target: Arc<Target>, parties: Vec<(String, Member)>, stop: Arc<AtomicBool>) {
    let client = reqwest::Client::new();
    for (party, host) in parties.iter().cycle() {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let _ = setup::join(&client, &target, party, host).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1024.0 / 1024.0
}

/// Runs the scenario for `duration` with `hostiles`.
pub async fn abuse(
    target: &Target,
    hostiles: Hostiles,
    duration: Duration,
) -> anyhow::Result<ScenarioResult> {
    // The same server, shareable between the hostile tasks.
    let target = Arc::new(Target::external(target.base.clone(), target.pid));
    let server = server_address(&target)?;
    let client = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 1]))
        .timeout(Duration::from_secs(10))
        .build()?;
    // Hostile members in parties of ten, each party's log longer than
    // any replay: every resume from 0 must be answered by a snapshot.
    let members = hostiles.never_read + hostiles.resume_storm;
    let party_count = members.div_ceil(PARTY_SIZE).max(1);
    eprintln!(
        "  preparing {party_count} parties of {PARTY_SIZE} hostile members with long event logs"
    );
    let hostile_members = setup::register_many(&client, &target, "abuser", members).await?;
    let hosts = setup::register_many(&client, &target, "abuse-host", party_count).await?;
    let mut parties = Vec::with_capacity(party_count);
    let mut party_of = Vec::with_capacity(members);
    for (p, host) in hosts.iter().enumerate() {
        let party = setup::create_party(&client, &target, host).await?;
        let guests: Vec<&Member> = hostile_members
            .iter()
            .skip(p)
            .step_by(party_count)
            .collect();
        for chunk in guests.chunks(32) {
            let joins = chunk
                .iter()
                .map(|m| setup::join(&client, &target, &party, m));
            for joined in futures_util::future::join_all(joins).await {
                joined?;
            }
        }
        parties.push((party, host.clone()));
    }
    for i in 0..members {
        party_of.push(parties[i % party_count].0.clone());
    }
    for round in 0..LOG_EVENTS {
        let refreshes = parties
            .iter()
            .map(|(party, host)| setup::join(&client, &target, party, host));
        for refreshed in futures_util::future::join_all(refreshes).await {
            refreshed?;
        }
        if (round + 1) % 50 == 0 {
            eprint!("\r  {} events in each party's log", round + 1);
        }
    }
    eprintln!();
    // The well-behaved client: a party of its own.
    let player = setup::register(&client, &target, "abuse-player").await?;
    let own_party = setup::create_party(&client, &target, &player).await?;

    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = target.usage();
    let stop = Arc::new(AtomicBool::new(false));
    let dropped = Arc::new(AtomicU64::new(0));
    let resumes = Arc::new(AtomicU64::new(0));
    let mut tasks = JoinSet::new();
    let mut next = 0;
    for _ in 0..hostiles.slowloris {
        tasks.spawn(slowloris(hostile_address(next), server, stop.clone()));
        next += 1;
    }
    let (quiet, stormy) = hostile_members.split_at(hostiles.never_read);
    let (quiet_parties, storm_parties) = party_of.split_at(hostiles.never_read);
    for (member, party) in quiet.iter().zip(quiet_parties) {
        tasks.spawn(never_read(
            hostile_address(next),
            target.clone(),
            member.clone(),
            party.clone(),
            hostiles.pause(),
            stop.clone(),
            dropped.clone(),
        ));
        next += 1;
    }
    for (member, party) in stormy.iter().zip(storm_parties) {
        tasks.spawn(resume_storm(
            hostile_address(next),
            target.clone(),
            member.clone(),
            party.clone(),
            hostiles.pause(),
            stop.clone(),
            resumes.clone(),
        ));
        next += 1;
    }
    tasks.spawn(churn(target.clone(), parties, stop.clone()));
    eprintln!("  {next} hostile connections starting; the player heartbeats and reads");
    // Give the hostiles a moment to connect before measuring.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let started = Instant::now();
    let mut latencies = report::histogram();
    let mut errors = 0u64;
    let mut peak: Option<Usage> = None;
    let mut sampled = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < duration {
        let sent = Instant::now();
        let request = if n.is_multiple_of(2) {
            client
                .post(format!(
                    "{}/parties/{own_party}/peers/{}/heartbeat",
                    target.base, player.peer_id
                ))
                .bearer_auth(&player.token)
        } else {
            client
                .get(format!("{}/parties/{own_party}", target.base))
                .bearer_auth(&player.token)
        };
        let ok = match request.send().await {
            Ok(response) => response.status().is_success() && response.bytes().await.is_ok(),
            Err(_) => false,
        };
        let micros = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
        let _ = latencies.record(micros.max(1));
        errors += u64::from(!ok);
        n += 1;
        if sampled.elapsed() > Duration::from_millis(250) {
            sampled = Instant::now();
            if let Some(now) = target.usage()
                && peak.is_none_or(|p| now.rss_bytes > p.rss_bytes)
            {
                peak = Some(now);
            }
        }
        // A player's pace, not a load test: under 100 requests a second.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    // What the server gives back once they are gone.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = target.usage();
    let mut result = ScenarioResult::from_histogram(
        &format!(
            "abuse ({next} hostile connections, {}/s each; player latency)",
            hostiles.per_second
        ),
        &latencies,
        errors,
        elapsed,
        idle,
        after,
        1,
    );
    if let (Some(idle), Some(peak), Some(after)) = (idle, peak, after) {
        result.note = Some(format!(
            "server RSS idle {:.1} MiB, peak during {:.1} MiB ({:.2}x idle), after {:.1} MiB; \
             {} never-reading sockets dropped by the server, {} resumes sent by the storm",
            mib(idle.rss_bytes),
            mib(peak.rss_bytes),
            peak.rss_bytes as f64 / idle.rss_bytes.max(1) as f64,
            mib(after.rss_bytes),
            dropped.load(Ordering::Relaxed),
            resumes.load(Ordering::Relaxed),
        ));
    }
    if latencies.is_empty() {
        bail!("the player sent no request");
    }
    Ok(result)
}
