//! Closed-loop HTTP load: `concurrency` workers, each on its own
//! connection, send requests back to back for the duration.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use crate::{
    report::{self, ScenarioResult},
    server::Target,
    setup::{self, Member},
};

/// One request a worker sends, again and again.
type MakeRequest =
    Arc<dyn Fn(&reqwest::Client, usize, u64) -> reqwest::RequestBuilder + Send + Sync>;

fn client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .timeout(Duration::from_secs(10))
        .build()?)
}

/// Runs `make` on `concurrency` workers for `duration`.
async fn drive(
    target: &Target,
    name: &str,
    concurrency: usize,
    duration: Duration,
    make: MakeRequest,
) -> anyhow::Result<ScenarioResult> {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let before = target.usage();
    let started = Instant::now();
    let mut workers = Vec::new();
    for worker in 0..concurrency {
        let make = make.clone();
        let stop = stop.clone();
        let done = done.clone();
        let client = client()?;
        workers.push(tokio::spawn(async move {
            let mut latencies = report::histogram();
            let mut errors = 0u64;
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let sent = Instant::now();
                let ok = match make(&client, worker, n).send().await {
                    Ok(response) => {
                        let ok = response.status().is_success();
                        ok && response.bytes().await.is_ok()
                    }
                    Err(_) => false,
                };
                let micros = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
                let _ = latencies.record(micros.max(1));
                if !ok {
                    errors += 1;
                }
                n += 1;
                done.fetch_add(1, Ordering::Relaxed);
            }
            (latencies, errors)
        }));
    }
    progress(&stop, &done, duration).await;
    let elapsed = started.elapsed();
    let mut latencies = report::histogram();
    let mut errors = 0;
    for worker in workers {
        let (histogram, failed) = worker.await?;
        latencies.add(&histogram)?;
        errors += failed;
    }
    Ok(ScenarioResult::from_histogram(
        name,
        &latencies,
        errors,
        elapsed,
        before,
        target.usage(),
        concurrency,
    ))
}

/// Prints the running count each second; stops the workers at the end.
async fn progress(stop: &AtomicBool, done: &AtomicU64, duration: Duration) {
    let started = Instant::now();
    while started.elapsed() < duration {
        tokio::time::sleep(Duration::from_secs(1).min(duration)).await;
        eprint!(
            "\r  {:>4.1}s  {:>9} requests",
            started.elapsed().as_secs_f64(),
            done.load(Ordering::Relaxed)
        );
    }
    eprintln!();
    stop.store(true, Ordering::Relaxed);
}

pub async fn noop(
    target: &Target,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<Vec<ScenarioResult>> {
    let url = format!("{}/livez", target.base);
    let make: MakeRequest = Arc::new(move |client, _, _| client.get(&url));
    Ok(vec![
        drive(target, "noop (GET /livez)", concurrency, duration, make).await?,
    ])
}

/// Parties of 8 whose members are the workers: each worker acts as one.
async fn workers_in_parties(
    target: &Target,
    prefix: &str,
    concurrency: usize,
) -> anyhow::Result<Vec<(String, Member)>> {
    let client = client()?;
    let parties =
        setup::parties_with_members(&client, target, prefix, concurrency.div_ceil(8), 8).await?;
    Ok(parties
        .into_iter()
        .flat_map(|(party, members)| members.into_iter().map(move |m| (party.clone(), m)))
        .take(concurrency)
        .collect())
}

pub async fn heartbeat(
    target: &Target,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<Vec<ScenarioResult>> {
    let workers = Arc::new(workers_in_parties(target, "hb", concurrency).await?);
    let base = target.base.clone();
    let make: MakeRequest = Arc::new(move |client, worker, _| {
        let (party, member) = &workers[worker % workers.len()];
        client
            .post(format!(
                "{base}/parties/{party}/peers/{}/heartbeat",
                member.peer_id
            ))
            .bearer_auth(&member.token)
    });
    Ok(vec![
        drive(
            target,
            "heartbeat (POST …/heartbeat)",
            concurrency,
            duration,
            make,
        )
        .await?,
    ])
}

pub async fn party_read(
    target: &Target,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<Vec<ScenarioResult>> {
    let workers = Arc::new(workers_in_parties(target, "read", concurrency).await?);
    let base = target.base.clone();
    let make: MakeRequest = Arc::new(move |client, worker, _| {
        let (party, member) = &workers[worker % workers.len()];
        client
            .get(format!("{base}/parties/{party}"))
            .bearer_auth(&member.token)
    });
    Ok(vec![
        drive(
            target,
            "party read (GET /parties/{id})",
            concurrency,
            duration,
            make,
        )
        .await?,
    ])
}

pub async fn peer_list(
    target: &Target,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<Vec<ScenarioResult>> {
    let workers = Arc::new(workers_in_parties(target, "list", concurrency).await?);
    let base = target.base.clone();
    let make: MakeRequest = Arc::new(move |client, worker, _| {
        let (party, member) = &workers[worker % workers.len()];
        client
            .get(format!("{base}/parties/{party}/peers"))
            .bearer_auth(&member.token)
    });
    Ok(vec![
        drive(
            target,
            "peer list (GET …/peers)",
            concurrency,
            duration,
            make,
        )
        .await?,
    ])
}

/// Each worker joins one of 16 parties and leaves it, again and again.
pub async fn churn(
    target: &Target,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<Vec<ScenarioResult>> {
    let client = client()?;
    let hosts = setup::register_many(&client, target, "churnhost", 16).await?;
    let mut parties = Vec::new();
    for host in &hosts {
        parties.push(setup::create_party(&client, target, host).await?);
    }
    let members = setup::register_many(&client, target, "churner", concurrency).await?;
    let parties = Arc::new(parties);
    let members = Arc::new(members);
    let base = target.base.clone();
    let make: MakeRequest = Arc::new(move |client, worker, n| {
        let member = &members[worker];
        let party = &parties[worker % parties.len()];
        if n % 2 == 0 {
            client
                .post(format!("{base}/parties/{party}/join"))
                .bearer_auth(&member.token)
                .json(&serde_json::json!({"party_id": party, "peer_info": setup::peer_info(&member.peer_id)}))
        } else {
            client
                .delete(format!("{base}/parties/{party}/peers/{}", member.peer_id))
                .bearer_auth(&member.token)
        }
    });
    Ok(vec![
        drive(
            target,
            "churn (join, leave, join, …)",
            concurrency,
            duration,
            make,
        )
        .await?,
    ])
}

pub async fn register(
    target: &Target,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<Vec<ScenarioResult>> {
    let base = target.base.clone();
    let make: MakeRequest = Arc::new(move |client, worker, n| {
        client.post(format!("{base}/auth/register?peer_id=reg{worker}x{n}"))
    });
    Ok(vec![
        drive(
            target,
            "register (POST /auth/register)",
            concurrency,
            duration,
            make,
        )
        .await?,
    ])
}
