//! `status`: who this command line is, which server it talks to and
//! whether that answers, the token and party it remembers, and that a
//! one-shot command holds no socket.

use std::net::Ipv4Addr;

use clap::Args;
use lanrage_client::ControlPlane;
use lanrage_proto::{PartyId, PeerId, PublicKey, Timestamp};
use serde::Serialize;

use super::{ClientArgs, Context, describe, when};

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub client: ClientArgs,
}

/// What `status --json` prints.
#[derive(Debug, Serialize)]
struct Status {
    peer_id: PeerId,
    /// The key the peer proves; `None` with `--peer-id` (v1, no proof).
    public_key: Option<PublicKey>,
    server: String,
    /// The server's version from `GET /`; `None` when it did not answer.
    server_version: Option<String>,
    /// Why the server did not answer.
    server_error: Option<String>,
    /// When the remembered token expires; `None` when none is kept.
    token_expires_at: Option<Timestamp>,
    /// The remembered party, when it is still there with us in it.
    party_id: Option<PartyId>,
    party_name: Option<String>,
    virtual_ip: Option<Ipv4Addr>,
    /// The party remembered until now, found gone (and so forgotten).
    party_forgotten: Option<PartyId>,
    /// Always `not_connected`: the socket lives only in `party watch`.
    socket: &'static str,
}

pub async fn run(args: StatusArgs) -> anyhow::Result<()> {
    let mut cx = Context::open(args.client)?;
    let result = status(&mut cx).await;
    let saved = cx.save().await;
    result.and(saved)
}

async fn status(cx: &mut Context) -> anyhow::Result<()> {
    // Read before any request: a request may register a fresh token.
    let token = cx.http.current_token().await;
    let (server_version, server_error) = match cx.http.service_info().await {
        Ok(info) => (Some(info.version), None),
        Err(error) => (None, Some(describe(error).to_string())),
    };
    let mut status = Status {
        peer_id: cx.peer_id.clone(),
        public_key: cx.key.clone(),
        server: cx.http.server_url().to_owned(),
        server_version,
        server_error,
        token_expires_at: token.map(|t| t.expires_at),
        party_id: None,
        party_name: None,
        virtual_ip: None,
        party_forgotten: None,
        socket: "not_connected",
    };
    // A server that does not answer cannot say whether the party is there.
    if let Some(party_id) = cx.remembered_party().cloned()
        && status.server_error.is_none()
    {
        match cx.http.get_party(&party_id).await.map_err(describe) {
            Ok(view) => {
                status.virtual_ip = view.virtual_ips.get(&cx.peer_id).copied();
                status.party_name = Some(view.party.name.to_string());
                status.party_id = Some(party_id);
            }
            Err(error) if cx.gone(&error).is_some() => {
                cx.remember_party(None);
                status.party_forgotten = Some(party_id);
            }
            Err(error) => return Err(error),
        }
    } else {
        status.party_id = cx.remembered_party().cloned();
    }
    if cx.args.json {
        return cx.print_json(&status);
    }
    print(&status)
}

fn print(status: &Status) -> anyhow::Result<()> {
    let identity = match &status.public_key {
        Some(key) => format!("key {}", fingerprint(key)),
        None => "by peer ID with --peer-id, no key proven".to_owned(),
    };
    out!("Peer:   {} ({identity})", status.peer_id)?;
    match (&status.server_version, &status.server_error) {
        (Some(version), _) => out!("Server: {} answers (version {version})", status.server)?,
        (None, Some(error)) => out!("Server: {} does not answer: {error}", status.server)?,
        (None, None) => out!("Server: {}", status.server)?,
    }
    match status.token_expires_at {
        Some(at) if at.as_micros() <= Timestamp::now().as_micros() => {
            out!(
                "Token:  expired {} (the next command gets a new one)",
                when(at)
            )?;
        }
        Some(at) => out!("Token:  valid until {}", when(at))?,
        None => out!("Token:  none kept (the next command gets one)")?,
    }
    match (&status.party_id, &status.party_forgotten) {
        (Some(party_id), _) => {
            let name = status
                .party_name
                .as_ref()
                .map_or_else(String::new, |name| format!("\"{name}\" "));
            let ip = status.virtual_ip.map_or_else(
                || "no virtual IP known".to_owned(),
                |ip| format!("virtual IP {ip}"),
            );
            if status.party_name.is_some() {
                out!("Party:  {name}({party_id}), {ip}")?;
            } else {
                out!("Party:  {party_id} (not checked: the server does not answer)")?;
            }
        }
        (None, Some(gone)) => out!(
            "Party:  none (party {gone} has ended or no longer has you; forgotten. \
             Create or join another.)"
        )?,
        (None, None) => out!("Party:  none (create or join one)")?,
    }
    out!(
        "Socket: not connected (a one-shot command has none; `lanrage-control party watch` \
         keeps one open and heartbeats)"
    )?;
    Ok(())
}

/// The start of a public key: enough to tell keys apart by eye.
fn fingerprint(key: &PublicKey) -> String {
    let text = key.to_string();
    let short: String = text.chars().take(10).collect();
    format!("{short}…")
}
