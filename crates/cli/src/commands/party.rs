//! `party create | join | show | leave | watch`.

use std::{collections::BTreeMap, net::Ipv4Addr, time::Duration};

use clap::{Args, Subcommand};
use lanrage_client::{ControlPlane, Event, Events, WsClient, WsConfig};
use lanrage_proto::{
    CreatePartyResponse, Name, Party, PartyId, PartyResponse, PeerId, ServerMessage, StatusResponse,
};

use super::{ClientArgs, Context, PeerArgs, describe, parse_name, parse_party_id};

#[derive(Debug, Args)]
pub struct PartyArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(subcommand)]
    command: PartyCommand,
}

#[derive(Debug, Subcommand)]
enum PartyCommand {
    /// Create a party and become its host.
    Create {
        /// The party's name.
        #[arg(value_name = "NAME", value_parser = parse_name)]
        party_name: Name,
        #[command(flatten)]
        peer: PeerArgs,
    },
    /// Join a party by its id (or refresh your info in it).
    Join {
        #[arg(value_parser = parse_party_id)]
        party_id: PartyId,
        #[command(flatten)]
        peer: PeerArgs,
    },
    /// Show a party and its members (default: your current party).
    Show {
        #[arg(value_parser = parse_party_id)]
        party_id: Option<PartyId>,
    },
    /// Leave a party (default: your current party); the host leaving ends it.
    Leave {
        #[arg(value_parser = parse_party_id)]
        party_id: Option<PartyId>,
    },
    /// Print the party's changes as they happen, until Ctrl-C; keeps you
    /// alive in the party meanwhile (heartbeats).
    Watch {
        #[arg(value_parser = parse_party_id)]
        party_id: Option<PartyId>,
    },
}

pub async fn run(args: PartyArgs) -> anyhow::Result<()> {
    let mut cx = Context::open(args.client)?;
    let result = match args.command {
        PartyCommand::Create { party_name, peer } => create(&mut cx, party_name, &peer).await,
        PartyCommand::Join { party_id, peer } => join(&mut cx, party_id, &peer).await,
        PartyCommand::Show { party_id } => show(&cx, party_id).await,
        PartyCommand::Leave { party_id } => leave(&mut cx, party_id).await,
        PartyCommand::Watch { party_id } => watch(&cx, party_id).await,
    };
    // The token is worth keeping even when the command itself failed.
    let saved = cx.save().await;
    result.and(saved)
}

async fn create(cx: &mut Context, name: Name, peer: &PeerArgs) -> anyhow::Result<()> {
    let me = cx.peer_details(peer);
    let joined = cx.http.register_party(name, me).await.map_err(describe)?;
    cx.remember_party(Some(joined.party.party_id.clone()));
    if cx.args.json {
        return cx.print_json(&CreatePartyResponse {
            party_id: joined.party.party_id.clone(),
            party: joined.party,
            virtual_ip: joined.virtual_ip,
            seq: joined.seq,
            verified: joined.verified,
        });
    }
    let party = &joined.party;
    out!(
        "Created party \"{}\" ({}). You are its host, {}, on {}.",
        party.name,
        party.party_id,
        cx.peer_id,
        joined.virtual_ip
    )?;
    out!(
        "Others join with: lanrage-control party join {}",
        party.party_id
    )?;
    Ok(())
}

async fn join(cx: &mut Context, party_id: PartyId, peer: &PeerArgs) -> anyhow::Result<()> {
    let me = cx.peer_details(peer);
    let joined = cx.http.join_party(&party_id, me).await.map_err(describe)?;
    cx.remember_party(Some(joined.party.party_id.clone()));
    if cx.args.json {
        return cx.print_json(&joined);
    }
    out!(
        "Joined party \"{}\" ({}) as {} on {}.",
        joined.party.name,
        joined.party.party_id,
        cx.peer_id,
        joined.virtual_ip
    )?;
    let ips = BTreeMap::from([(cx.peer_id.clone(), joined.virtual_ip)]);
    print_members(&joined.party, &ips)?;
    Ok(())
}

async fn show(cx: &Context, party_id: Option<PartyId>) -> anyhow::Result<()> {
    let party_id = cx.party(party_id)?;
    let view = cx.http.get_party(&party_id).await.map_err(describe)?;
    if cx.args.json {
        return cx.print_json(&view);
    }
    print_party(&view)?;
    Ok(())
}

async fn leave(cx: &mut Context, party_id: Option<PartyId>) -> anyhow::Result<()> {
    let party_id = cx.party(party_id)?;
    let outcome = cx.http.leave_party(&party_id).await.map_err(describe)?;
    if cx.party(None).ok().as_ref() == Some(&party_id) {
        cx.remember_party(None);
    }
    if cx.args.json {
        return cx.print_json(&StatusResponse::new(outcome.as_str()));
    }
    match outcome {
        lanrage_client::LeaveOutcome::Left => out!("Left party {party_id}.")?,
        lanrage_client::LeaveOutcome::PartyDeleted => {
            out!("Left party {party_id}; it has ended (its host or last member left).")?
        }
        other => out!("Left party {party_id} ({}).", other.as_str())?,
    }
    Ok(())
}

/// Prints the current party, then every event, until Ctrl-C, the party's
/// end, or the server being gone for good. Heartbeats keep us in the party.
async fn watch(cx: &Context, party_id: Option<PartyId>) -> anyhow::Result<()> {
    let party_id = cx.party(party_id)?;
    let snapshot = cx.http.get_party(&party_id).await.map_err(describe)?;
    let first = Event::PartyUpdated {
        party: snapshot.party.clone(),
        seq: snapshot.seq,
        virtual_ip: snapshot.virtual_ips.get(&cx.peer_id).copied(),
    };
    // The socket follows the party from the snapshot's seq: whatever
    // happened since is replayed once, and nothing is printed twice.
    let (socket, mut events) =
        WsClient::connect_tracking(cx.http.clone(), WsConfig::default(), snapshot)
            .await
            .map_err(describe)?;
    eprintln!(
        "Watching party {party_id} as {} on {} (Ctrl-C to stop).",
        cx.peer_id,
        socket.url()
    );
    let outcome = follow(cx, &party_id, &first, &mut events).await;
    let _ = tokio::time::timeout(Duration::from_secs(3), socket.close()).await;
    outcome
}

async fn follow(
    cx: &Context,
    party_id: &PartyId,
    first: &Event,
    events: &mut Events,
) -> anyhow::Result<()> {
    print_event(cx, first)?;
    let heartbeat_every = cx.http.config().heartbeat_interval;
    let mut heartbeat = tokio::time::interval_at(
        tokio::time::Instant::now() + heartbeat_every,
        heartbeat_every,
    );
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        tokio::select! {
            _ = &mut interrupted => return Ok(()),
            _ = heartbeat.tick() => {
                if let Err(error) = cx.http.heartbeat(party_id).await {
                    eprintln!("heartbeat failed: {}", describe(error));
                }
            }
            event = events.recv() => match event {
                None => return Err(anyhow::anyhow!("the socket stopped")),
                Some(Event::Connected { reconnect: true, .. }) => eprintln!("Reconnected; catching up."),
                Some(Event::Connected { .. }) => {}
                Some(Event::Disconnected { reason }) => eprintln!("Connection lost: {reason}"),
                Some(Event::Reconnecting { attempt, retry_in, .. }) => {
                    eprintln!("Reconnecting in {:.1} s (attempt {attempt})", retry_in.as_secs_f64());
                }
                Some(Event::Lagged { dropped }) => {
                    eprintln!("Output fell behind: {dropped} events skipped; the party as it is now follows.");
                }
                Some(Event::PartyLost { party_id, detail }) => {
                    return Err(anyhow::anyhow!("party {party_id} is gone: {detail}"));
                }
                Some(Event::GaveUp { attempts, error }) => {
                    return Err(anyhow::anyhow!(
                        "the control server stayed unreachable after {attempts} attempts: {error}"
                    ));
                }
                Some(event) => {
                    print_event(cx, &event)?;
                    if matches!(&event, Event::PartyEnded { party_id: ended, .. } if ended == party_id) {
                        return Ok(());
                    }
                    if matches!(&event, Event::PeerLeft { peer_id, party_id: left, .. } if *peer_id == cx.peer_id && left == party_id) {
                        return Ok(());
                    }
                }
            }
        }
    }
}

fn print_event(cx: &Context, event: &Event) -> anyhow::Result<()> {
    if cx.args.json {
        return match wire_message(event) {
            Some(message) => cx.print_json(&message),
            None => Ok(()),
        };
    }
    match event {
        Event::PartyUpdated { party, seq, .. } => {
            let members: Vec<&str> = party.peers.keys().map(PeerId::as_str).collect();
            out!(
                "[{seq}] party \"{}\" hosted by {}: {} ({})",
                party.name,
                party.host_id,
                plural(members.len(), "member"),
                members.join(", ")
            )?;
        }
        Event::PeerJoined { peer, seq, .. } => out!(
            "[{seq}] + {} ({}) joined: lan {}:{}, public {}:{}, nat {}",
            peer.peer_id,
            peer.name,
            peer.local_ip,
            peer.local_port,
            peer.public_ip,
            peer.public_port,
            peer.nat_type
        )?,
        Event::PeerLeft { peer_id, seq, .. } => out!("[{seq}] - {peer_id} left")?,
        Event::PartyEnded { reason, seq, .. } => out!("[{seq}] party ended: {reason}")?,
        Event::Signal(signal) => out!(
            "signal from {}: {}",
            signal.from_peer_id,
            serde_json::to_string(&signal.signal_data)?
        )?,
        // Connection changes go to stderr in `follow`; newer kinds are
        // not printed.
        _ => {}
    }
    Ok(())
}

/// The server's JSON message an event came from, for `--json`: the
/// output keeps the protocol's shape, whatever the library calls it.
fn wire_message(event: &Event) -> Option<ServerMessage> {
    Some(match event.clone() {
        Event::PartyUpdated {
            party,
            seq,
            virtual_ip,
        } => ServerMessage::PartyUpdate {
            party,
            seq,
            virtual_ip,
            request_id: None,
            snapshot: false,
            verified: std::collections::BTreeMap::new(),
        },
        Event::PeerJoined {
            party_id,
            peer,
            seq,
        } => ServerMessage::PeerJoined {
            party_id,
            peer,
            seq,
        },
        Event::PeerLeft {
            party_id,
            peer_id,
            seq,
        } => ServerMessage::PeerLeft {
            party_id,
            peer_id,
            seq,
        },
        Event::PartyEnded {
            party_id,
            reason,
            seq,
        } => ServerMessage::PartyEnded {
            party_id,
            reason,
            seq,
        },
        Event::Signal(signal) => ServerMessage::Signal {
            party_id: signal.party_id,
            from_peer_id: signal.from_peer_id,
            to_peer_id: signal.to_peer_id,
            signal_data: signal.signal_data,
            sent_at: signal.sent_at,
        },
        _ => return None,
    })
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

pub fn print_party(view: &PartyResponse) -> anyhow::Result<()> {
    let party = &view.party;
    out!(
        "Party \"{}\" ({}), hosted by {}, created {}, event {}",
        party.name,
        party.party_id,
        party.host_id,
        party.created_at,
        view.seq
    )?;
    print_members(party, &view.virtual_ips)
}

/// One line per member, columns aligned.
fn print_members(party: &Party, ips: &BTreeMap<PeerId, Ipv4Addr>) -> anyhow::Result<()> {
    let mut rows = vec![[
        "PEER".to_owned(),
        "NAME".to_owned(),
        "VIRTUAL IP".to_owned(),
        "LAN".to_owned(),
        "PUBLIC".to_owned(),
        "NAT".to_owned(),
        "PUBLIC KEY".to_owned(),
    ]];
    for (peer_id, peer) in &party.peers {
        let host = if *peer_id == party.host_id {
            " (host)"
        } else {
            ""
        };
        rows.push([
            format!("{peer_id}{host}"),
            peer.name.to_string(),
            ips.get(peer_id)
                .map_or_else(|| "-".to_owned(), Ipv4Addr::to_string),
            format!("{}:{}", peer.local_ip, peer.local_port),
            format!("{}:{}", peer.public_ip, peer.public_port),
            peer.nat_type.to_string(),
            peer.public_key.to_string(),
        ]);
    }
    print_table(&rows)
}

pub fn print_table<const N: usize>(rows: &[[String; N]]) -> anyhow::Result<()> {
    let mut widths = [0usize; N];
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out!("  {}", line.join("  ").trim_end())?;
    }
    Ok(())
}
