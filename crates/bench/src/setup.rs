//! Preparing state for a scenario over the real API: peers with tokens,
//! parties with members.

use anyhow::{Context, bail};
use base64::{Engine, engine::general_purpose::STANDARD};
use lanrage_proto::{CreatePartyResponse, JoinPartyResponse, TokenResponse};
use serde_json::{Value, json};

use crate::server::Target;

/// A registered peer.
#[derive(Debug, Clone)]
pub struct Member {
    pub peer_id: String,
    pub token: String,
}

pub fn peer_info(peer_id: &str) -> Value {
    let mut key = [0u8; 32];
    for (i, b) in peer_id.bytes().enumerate() {
        key[i % 32] ^= b;
    }
    json!({
        "peer_id": peer_id,
        "name": peer_id,
        "public_key": STANDARD.encode(key),
        "nat_type": "unknown",
        "public_ip": "unknown",
        "public_port": 0,
        "local_ip": "10.0.0.2",
        "local_port": 51820
    })
}

async fn checked(response: reqwest::Response) -> anyhow::Result<reqwest::Response> {
    if !response.status().is_success() {
        let status = response.status();
        bail!("{status}: {}", response.text().await.unwrap_or_default());
    }
    Ok(response)
}

pub async fn register(
    client: &reqwest::Client,
    target: &Target,
    peer_id: &str,
) -> anyhow::Result<Member> {
    let response = client
        .post(format!("{}/auth/register?peer_id={peer_id}", target.base))
        .send()
        .await?;
    let token: TokenResponse = checked(response).await?.json().await?;
    Ok(Member {
        peer_id: peer_id.to_owned(),
        token: token.token,
    })
}

/// Registers `host` and creates a party; returns the party id.
pub async fn create_party(
    client: &reqwest::Client,
    target: &Target,
    host: &Member,
) -> anyhow::Result<String> {
    let response = client
        .post(format!("{}/parties", target.base))
        .bearer_auth(&host.token)
        .json(&json!({"name": "bench", "host_peer_info": peer_info(&host.peer_id)}))
        .send()
        .await?;
    let created: CreatePartyResponse = checked(response).await?.json().await?;
    Ok(created.party_id.to_string())
}

pub async fn join(
    client: &reqwest::Client,
    target: &Target,
    party: &str,
    member: &Member,
) -> anyhow::Result<u64> {
    let response = client
        .post(format!("{}/parties/{party}/join", target.base))
        .bearer_auth(&member.token)
        .json(&json!({"party_id": party, "peer_info": peer_info(&member.peer_id)}))
        .send()
        .await?;
    let joined: JoinPartyResponse = checked(response).await?.json().await.context("join")?;
    Ok(joined.seq)
}

pub async fn leave(
    client: &reqwest::Client,
    target: &Target,
    party: &str,
    member: &Member,
) -> anyhow::Result<()> {
    let response = client
        .delete(format!(
            "{}/parties/{party}/peers/{}",
            target.base, member.peer_id
        ))
        .bearer_auth(&member.token)
        .send()
        .await?;
    checked(response).await?;
    Ok(())
}

/// Registers `count` peers named `{prefix}{i}`, 32 at a time.
pub async fn register_many(
    client: &reqwest::Client,
    target: &Target,
    prefix: &str,
    count: usize,
) -> anyhow::Result<Vec<Member>> {
    let mut members = Vec::with_capacity(count);
    for chunk in (0..count).collect::<Vec<_>>().chunks(32) {
        let names: Vec<String> = chunk.iter().map(|i| format!("{prefix}{i}")).collect();
        let batch = names.iter().map(|name| register(client, target, name));
        for member in futures_util::future::join_all(batch).await {
            members.push(member?);
        }
    }
    Ok(members)
}

/// A party of `hosts` hosts, each hosting a party, and `per_party` members
/// joined to each; returns (party ids, members per party incl. the host).
pub async fn parties_with_members(
    client: &reqwest::Client,
    target: &Target,
    prefix: &str,
    parties: usize,
    per_party: usize,
) -> anyhow::Result<Vec<(String, Vec<Member>)>> {
    let mut result = Vec::new();
    for p in 0..parties {
        let members = register_many(client, target, &format!("{prefix}{p}m"), per_party).await?;
        let (host, guests) = members.split_first().context("a party needs a host")?;
        let party = create_party(client, target, host).await?;
        for chunk in guests.chunks(32) {
            let joins = chunk.iter().map(|m| join(client, target, &party, m));
            for joined in futures_util::future::join_all(joins).await {
                joined?;
            }
        }
        result.push((party, members));
    }
    Ok(result)
}
