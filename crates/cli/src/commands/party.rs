//! `party create | join | show | leave | watch`, the host's `settings
//! [set] | host transfer | kick` (in `host.rs`), join codes, `invite
//! [revoke] | invites` (in `invites.rs`), the path plan, `paths | nat` (in
//! `paths.rs`), and the party's relay, `relay` (in `relay.rs`).

use std::{collections::BTreeMap, io::IsTerminal, net::Ipv4Addr, time::Duration};

use clap::{Args, Subcommand};
use lanrage_client::{ControlPlane, Event, Events, WsClient, WsConfig};
use lanrage_proto::{
    CreatePartyResponse, HostPolicy, JoinPolicy, Name, Party, PartyId, PartyResponse, PeerId,
    ServerMessage, StatusResponse,
};

use super::{
    ClientArgs, Context, Gone, PeerArgs, describe,
    host::{self, HostCommand, PartyOption, SettingsArgs, SettingsCommand},
    invites::{self, InviteCommand, InviteLimits, JoinTarget, parse_join_target},
    now_local, parse_name, parse_party_id, parse_peer_id,
    paths::{self, NatArgs},
    relay, when,
};

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
        /// Settings other than the server's defaults (needs a server with
        /// host authority).
        #[command(flatten)]
        settings: SettingsArgs,
        /// Go ahead without asking when this ends a party you host.
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Join a party by a join code (`FROG-7421`) or by its ID (32 hex
    /// digits), or refresh your info in it.
    Join {
        /// A join code as given to you (`FROG-7421`, `frog 7421`), or the
        /// party's ID.
        #[arg(value_name = "CODE_OR_PARTY_ID", value_parser = parse_join_target)]
        target: JoinTarget,
        #[command(flatten)]
        peer: PeerArgs,
        /// Go ahead without asking when this ends a party you host.
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Show a party and its members (default: your current party).
    Show {
        /// The party's ID, 32 hex digits (default: your current party).
        #[arg(value_parser = parse_party_id)]
        party_id: Option<PartyId>,
    },
    /// Leave a party (default: your current party); the host leaving ends
    /// it, unless its host policy is `migrate`.
    Leave {
        /// The party's ID, 32 hex digits (default: your current party).
        #[arg(value_parser = parse_party_id)]
        party_id: Option<PartyId>,
    },
    /// Print the party's changes as they happen, until Ctrl-C; keeps you
    /// alive in the party meanwhile (heartbeats).
    Watch {
        /// The party's ID, 32 hex digits (default: your current party).
        #[arg(value_parser = parse_party_id)]
        party_id: Option<PartyId>,
    },
    /// Show the party's settings; `set` changes them (the host only).
    Settings {
        #[command(flatten)]
        party: PartyOption,
        #[command(subcommand)]
        command: Option<SettingsCommand>,
    },
    /// The host's hand-over: `host transfer PEER`.
    Host {
        #[command(subcommand)]
        command: HostCommand,
    },
    /// Make a join code for the party and print it (the host only);
    /// `revoke` ends one early.
    Invite {
        #[command(flatten)]
        limits: InviteLimits,
        #[command(flatten)]
        party: PartyOption,
        #[command(subcommand)]
        command: Option<InviteCommand>,
    },
    /// List the party's live join codes (the host only).
    Invites {
        #[command(flatten)]
        party: PartyOption,
    },
    /// How each pair of members should connect (lan, direct, attempt,
    /// relay), how sure the server is and why, their round trip and what
    /// was last observed.
    Paths {
        #[command(flatten)]
        party: PartyOption,
    },
    /// The relay the party's relayed pairs should share: its address, the
    /// worst round trip through it, each member's, the alternates and why.
    Relay {
        #[command(flatten)]
        party: PartyOption,
    },
    /// Report your NAT's behaviour, as RFC 5780 tests measured it, for
    /// the party's path plan.
    Nat(NatArgs),
    /// Remove a member from the party (the host only).
    Kick {
        /// The member to remove.
        // Not `peer_id`: that is the global `--peer-id`'s id.
        #[arg(value_name = "PEER", value_parser = parse_peer_id)]
        member: PeerId,
        /// Also keep them (and their bound key) out until the party ends.
        #[arg(long)]
        ban: bool,
        #[command(flatten)]
        party: PartyOption,
    },
}

impl PartyArgs {
    /// What the parser lets through but the command line refuses as a
    /// usage error: limits given to `party invite revoke` (they would be
    /// ignored).
    pub fn check(&self) -> Result<(), String> {
        match &self.command {
            PartyCommand::Invite {
                limits,
                command: Some(InviteCommand::Revoke { .. }),
                ..
            } if limits.uses.is_some() || limits.ttl.is_some() => {
                Err("--uses and --ttl are for making a code, not for `party invite revoke`".into())
            }
            _ => Ok(()),
        }
    }
}

impl PartyCommand {
    /// For a command on an existing party, the party named on the command
    /// line (none: the remembered one); `None` for `create` and `join`.
    fn party_given(&self) -> Option<Option<&PartyId>> {
        let given = match self {
            Self::Create { .. } | Self::Join { .. } => return None,
            Self::Show { party_id } | Self::Leave { party_id } | Self::Watch { party_id } => {
                party_id
            }
            Self::Settings { party, .. }
            | Self::Invite { party, .. }
            | Self::Invites { party }
            | Self::Paths { party }
            | Self::Relay { party }
            | Self::Kick { party, .. }
            | Self::Host {
                command: HostCommand::Transfer { party, .. },
            } => &party.party_id,
            Self::Nat(args) => &args.party.party_id,
        };
        Some(given.as_ref())
    }
}

pub async fn run(args: PartyArgs) -> anyhow::Result<()> {
    let mut cx = Context::open(args.client)?;
    let given = args.command.party_given().map(|given| given.cloned());
    let result = match args.command {
        PartyCommand::Create {
            party_name,
            peer,
            settings,
            yes,
        } => create(&mut cx, party_name, &peer, &settings, yes).await,
        PartyCommand::Join { target, peer, yes } => join(&mut cx, target, &peer, yes).await,
        PartyCommand::Show { party_id } => show(&cx, party_id).await,
        PartyCommand::Leave { party_id } => leave(&mut cx, party_id).await,
        PartyCommand::Watch { party_id } => watch(&mut cx, party_id).await,
        PartyCommand::Settings {
            party,
            command: None,
        } => host::show_settings(&cx, party.party_id).await,
        PartyCommand::Settings {
            party,
            command: Some(SettingsCommand::Set { settings }),
        } => host::set_settings(&cx, party.party_id, &settings).await,
        PartyCommand::Host {
            command:
                HostCommand::Transfer {
                    new_host_id,
                    expected_epoch,
                    party,
                },
        } => host::transfer(&cx, party.party_id, &new_host_id, expected_epoch).await,
        PartyCommand::Kick { member, ban, party } => {
            host::kick(&cx, party.party_id, &member, ban).await
        }
        PartyCommand::Invite {
            limits,
            party,
            command: None,
        } => invites::create(&cx, party.party_id, &limits).await,
        PartyCommand::Invite {
            party,
            command: Some(InviteCommand::Revoke { nameplate }),
            ..
        } => invites::revoke(&cx, party.party_id, &nameplate).await,
        PartyCommand::Invites { party } => invites::list(&cx, party.party_id).await,
        PartyCommand::Paths { party } => paths::show(&cx, party.party_id).await,
        PartyCommand::Relay { party } => relay::show_party_relay(&cx, party.party_id).await,
        PartyCommand::Nat(args) => paths::report_nat(&cx, &args).await,
    };
    let result = match given {
        Some(given) => cx.forget_if_gone(given.as_ref(), result),
        None => result,
    };
    // The token is worth keeping even when the command itself failed.
    let saved = cx.save().await;
    result.and(saved)
}

async fn create(
    cx: &mut Context,
    name: Name,
    peer: &PeerArgs,
    settings: &SettingsArgs,
    yes: bool,
) -> anyhow::Result<()> {
    confirm_leaving_hosted(cx, None, "creating a new one", yes).await?;
    let me = cx.peer_details(peer);
    // Without settings flags, any server will do (no feature check).
    let joined = cx
        .http
        .register_party_with_settings(name, me, settings.patch())
        .await
        .map_err(describe)?;
    cx.remember_party(Some(joined.party.party_id.clone()));
    if cx.args.json {
        return cx.print_json(&CreatePartyResponse {
            party_id: joined.party.party_id.clone(),
            party: joined.party,
            virtual_ip: joined.virtual_ip,
            seq: joined.seq,
            extras: joined.extras,
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
    if settings.patch() != Default::default()
        && let Some(settings) = &joined.extras.settings
    {
        out!("Settings: {}.", host::settings_line(settings))?;
    }
    // An invite-only party takes newcomers by code only.
    if joined.extras.settings.map(|s| s.join_policy) == Some(JoinPolicy::Invite) {
        out!("Others join with a code: make one with lanrage-control party invite")?;
    } else {
        out!(
            "Others join with: lanrage-control party join {}",
            party.party_id
        )?;
    }
    print_keep_alive()?;
    Ok(())
}

/// What a party needs that nothing else says: it forgets members who stop
/// heartbeating, and the host's going ends it.
fn print_keep_alive() -> anyhow::Result<()> {
    out!(
        "You stay in the party only while `lanrage-control party watch` runs (it heartbeats): \
         without it the server removes you after its peer timeout (5 minutes by default), \
         and a party whose host is removed ends."
    )?;
    Ok(())
}

/// Before `create` or `join` moves the host of the remembered party out of
/// it (which ends it for its members, unless it hands over): asks on a
/// terminal, and otherwise refuses unless `yes`. A party that cannot be
/// read (gone) or that has no one else is left without asking.
async fn confirm_leaving_hosted(
    cx: &Context,
    joining: Option<&PartyId>,
    doing: &str,
    yes: bool,
) -> anyhow::Result<()> {
    let Some(current) = cx.remembered_party() else {
        return Ok(());
    };
    if yes || joining == Some(current) {
        return Ok(());
    }
    let Ok(view) = cx.http.get_party(current).await else {
        return Ok(());
    };
    let hands_over = view
        .extras
        .settings
        .is_some_and(|s| s.host_policy == HostPolicy::Migrate);
    if view.party.host_id != cx.peer_id || view.party.peers.len() < 2 || hands_over {
        return Ok(());
    }
    let what = format!(
        "you host party \"{}\" ({current}) with {}; {doing} ends it for all of them",
        view.party.name,
        plural(view.party.peers.len(), "member")
    );
    if !std::io::stdin().is_terminal() {
        return Err(anyhow::anyhow!(
            "{what}. Nothing was done: pass --yes to go ahead."
        ));
    }
    eprint!("{what}. Go ahead? [y/N] ");
    let mut answer = String::new();
    // Waiting on a person: not on a worker thread.
    tokio::task::block_in_place(|| std::io::stdin().read_line(&mut answer))?;
    if matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
        Ok(())
    } else {
        Err(anyhow::anyhow!("nothing was done: party {current} goes on"))
    }
}

async fn join(
    cx: &mut Context,
    target: JoinTarget,
    peer: &PeerArgs,
    yes: bool,
) -> anyhow::Result<()> {
    let joining = match &target {
        JoinTarget::Party(party_id) => Some(party_id),
        JoinTarget::Code(_) => None,
    };
    confirm_leaving_hosted(cx, joining, "joining another", yes).await?;
    let me = cx.peer_details(peer);
    let (joined, how) = match &target {
        JoinTarget::Party(party_id) => (cx.http.join_party(party_id, me).await, ""),
        JoinTarget::Code(code) => (cx.http.join_by_code(code, me).await, " by code"),
    };
    let joined = joined.map_err(describe)?;
    cx.remember_party(Some(joined.party.party_id.clone()));
    if cx.args.json {
        return cx.print_json(&joined);
    }
    out!(
        "Joined party \"{}\" ({}){how} as {} on {}.",
        joined.party.name,
        joined.party.party_id,
        cx.peer_id,
        joined.virtual_ip
    )?;
    // The join answer has only our own address; a read has everyone's.
    let ips = match cx.http.get_party(&joined.party.party_id).await {
        Ok(view) => view.virtual_ips,
        Err(_) => BTreeMap::from([(cx.peer_id.clone(), joined.virtual_ip)]),
    };
    print_members(&joined.party, &ips)?;
    print_keep_alive()?;
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
    let given = party_id.is_some();
    let party_id = cx.party(party_id)?;
    let outcome = match cx.http.leave_party(&party_id).await.map_err(describe) {
        Ok(outcome) => outcome,
        Err(error) => {
            // Out of a party that is gone is where leaving gets you.
            let Some(gone) = cx.gone(&error).filter(|_| !given) else {
                return Err(error);
            };
            cx.remember_party(None);
            if cx.args.json {
                let status = match gone {
                    Gone::Ended(_) => "party_deleted",
                    Gone::NotAMember(_) => "left",
                };
                return cx.print_json(&StatusResponse::new(status));
            }
            out!("{}", capitalised(&gone.to_string()))?;
            return Ok(());
        }
    };
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
async fn watch(cx: &mut Context, party_id: Option<PartyId>) -> anyhow::Result<()> {
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
    let ending = follow(cx, &party_id, &first, &mut events).await;
    let _ = tokio::time::timeout(Duration::from_secs(3), socket.close()).await;
    let ours = cx.remembered_party() == Some(&party_id);
    match ending? {
        Ending::Stopped => Ok(()),
        // Nothing more can be done in it: a party kept would only fail.
        Ending::Out if ours => {
            cx.remember_party(None);
            eprintln!("Party {party_id} forgotten. Create or join another.");
            Ok(())
        }
        Ending::Out => Ok(()),
        Ending::Lost(detail) => {
            if ours {
                cx.remember_party(None);
            }
            Err(anyhow::anyhow!(
                "party {party_id} is gone ({detail}){}",
                if ours {
                    "; forgotten. Create or join another."
                } else {
                    ""
                }
            ))
        }
    }
}

/// How following a party stopped.
enum Ending {
    /// Ctrl-C.
    Stopped,
    /// The party ended, or this peer left it or was removed.
    Out,
    /// The socket came back to find the party gone, for this reason.
    Lost(String),
}

async fn follow(
    cx: &Context,
    party_id: &PartyId,
    first: &Event,
    events: &mut Events,
) -> anyhow::Result<Ending> {
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
            _ = &mut interrupted => return Ok(Ending::Stopped),
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
                Some(Event::PartyLost { party_id: lost, detail }) if lost == *party_id => {
                    return Ok(Ending::Lost(detail));
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
                        return Ok(Ending::Out);
                    }
                    if matches!(&event, Event::PeerLeft { peer_id, party_id: left, .. } if *peer_id == cx.peer_id && left == party_id) {
                        return Ok(Ending::Out);
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
    // The local time the line is printed, for people; the event's number
    // is for programs (`--json`).
    let at = now_local();
    match event {
        Event::PartyUpdated { party, .. } => {
            let members: Vec<&str> = party.peers.keys().map(PeerId::as_str).collect();
            out!(
                "[{at}] party \"{}\" hosted by {}: {} ({})",
                party.name,
                party.host_id,
                plural(members.len(), "member"),
                members.join(", ")
            )?;
        }
        Event::PeerJoined { peer, .. } => out!(
            "[{at}] + {} ({}) joined: lan {}:{}, public {}:{}, nat {}",
            peer.peer_id,
            peer.name,
            peer.local_ip,
            peer.local_port,
            peer.public_ip,
            peer.public_port,
            peer.nat_type
        )?,
        Event::PeerLeft {
            peer_id, reason, ..
        } => match reason.as_deref() {
            Some("kicked") => out!("[{at}] - {peer_id} was removed by the host")?,
            Some("timeout") => out!("[{at}] - {peer_id} was silent for too long and was removed")?,
            _ => out!("[{at}] - {peer_id} left")?,
        },
        Event::HostChanged {
            old_host_id,
            new_host_id,
            reason,
            ..
        } => {
            let why = match reason.as_str() {
                "transferred" => format!("{old_host_id} handed it over"),
                "left" => format!("{old_host_id} left"),
                "absent" => format!("{old_host_id} was silent for too long"),
                other => format!("was {old_host_id}: {other}"),
            };
            out!("[{at}] host is now {new_host_id} ({why})")?;
        }
        Event::SettingsChanged { settings, .. } => {
            out!("[{at}] settings: {}", host::settings_line(settings))?;
        }
        Event::InviteRevoked {
            nameplate, reason, ..
        } => {
            // The event names the code by its word part only.
            let code = format!("{}-…", nameplate.to_ascii_uppercase());
            match reason.as_str() {
                "host" => out!("[{at}] join code {code} was revoked by the host")?,
                "guessing" => {
                    out!(
                        "[{at}] join code {code} was revoked: too many wrong guesses of its digits"
                    )?;
                }
                other => out!("[{at}] join code {code} was revoked ({other})")?,
            }
        }
        Event::RelayRecommended {
            relay_id,
            worst_pair_rtt_ms,
            reason,
            ..
        } => out!(
            "[{at}] {}",
            relay::recommendation_line(relay_id.as_ref(), *worst_pair_rtt_ms, reason)
        )?,
        Event::PathPlan { pairs, .. } => out!("[{at}] {}", paths::plan_line(pairs))?,
        Event::PartyEnded { reason, .. } => out!("[{at}] {}", ended_line(reason))?,
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

/// Why a party ended, in words.
fn ended_line(reason: &str) -> String {
    match reason {
        "host_left" => "the host left, so the party ended".to_owned(),
        "host_timed_out" => "the host was silent for too long, so the party ended".to_owned(),
        "empty" => "everyone left, so the party ended".to_owned(),
        "operator" => "the server's operator ended the party".to_owned(),
        other => format!("the party ended ({other})"),
    }
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
            extras: Default::default(),
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
            reason,
            seq,
        } => ServerMessage::PeerLeft {
            party_id,
            peer_id,
            reason,
            seq,
        },
        Event::HostChanged {
            party_id,
            old_host_id,
            new_host_id,
            reason,
            host_epoch,
            seq,
        } => ServerMessage::HostChanged {
            party_id,
            old_host_id,
            new_host_id,
            reason,
            host_epoch,
            seq,
        },
        Event::SettingsChanged {
            party_id,
            settings,
            seq,
        } => ServerMessage::PartySettings {
            party_id,
            settings,
            seq,
        },
        Event::InviteRevoked {
            party_id,
            nameplate,
            reason,
            seq,
        } => ServerMessage::InviteRevoked {
            party_id,
            nameplate,
            reason,
            seq,
        },
        Event::RelayRecommended {
            party_id,
            relay_id,
            worst_pair_rtt_ms,
            reason,
            seq,
        } => ServerMessage::RelayRecommendation {
            party_id,
            relay_id,
            worst_pair_rtt_ms,
            reason,
            seq,
        },
        Event::PathPlan {
            party_id,
            pairs,
            seq,
        } => ServerMessage::PathPlan {
            party_id,
            pairs,
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

/// `text` with its first letter a capital, to start a sentence.
fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_uppercase().chain(chars).collect()
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
        "Party \"{}\" ({}), hosted by {}, created {}",
        party.name,
        party.party_id,
        party.host_id,
        when(party.created_at),
    )?;
    if let Some(epoch) = view.extras.host_epoch {
        // What `party host transfer --expected-epoch` compares with.
        out!("Host epoch {epoch} (changes with each new host)")?;
    }
    if let Some(settings) = &view.extras.settings {
        out!("Settings: {}", host::settings_line(settings))?;
    }
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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Line {
        #[command(flatten)]
        party: PartyArgs,
    }

    fn parse(args: &[&str]) -> PartyArgs {
        let line = Line::try_parse_from(std::iter::once("party").chain(args.iter().copied()));
        line.map(|line| line.party)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn invite_takes_limits_or_revoke_and_the_shared_flags_anywhere() {
        let made = parse(&["invite", "--uses", "3", "--ttl", "30m", "--json"]);
        let revoked = parse(&[
            "invite",
            "--json",
            "revoke",
            "FROG",
            "--party",
            &"a".repeat(32),
        ]);
        let mixed = parse(&["invite", "--uses", "3", "revoke", "frog"]);

        assert!(
            matches!(&made.command, PartyCommand::Invite { limits, command: None, .. }
                if limits.uses == Some(3) && limits.ttl == Some(Duration::from_secs(1800))),
            "{made:?}"
        );
        assert!(made.client.json && made.check().is_ok());
        assert!(
            matches!(&revoked.command, PartyCommand::Invite { command: Some(InviteCommand::Revoke { nameplate }), party, .. }
                if nameplate == "frog" && party.party_id.is_some()),
            "{revoked:?}"
        );
        assert!(revoked.client.json && revoked.check().is_ok());
        assert!(mixed.check().is_err());
    }

    #[test]
    fn a_peer_named_by_a_host_command_is_not_the_peer_acting() {
        let kick = parse(&["kick", "carol", "--ban", "--peer-id", "bob"]);
        let transfer = parse(&["host", "transfer", "carol", "--peer-id", "bob"]);

        for args in [&kick, &transfer] {
            assert_eq!(
                args.client.peer_id.as_ref().map(PeerId::as_str),
                Some("bob")
            );
        }
        assert!(
            matches!(&kick.command, PartyCommand::Kick { member, ban: true, .. } if member.as_str() == "carol"),
            "{kick:?}"
        );
        assert!(
            matches!(&transfer.command, PartyCommand::Host { command: HostCommand::Transfer { new_host_id, .. } } if new_host_id.as_str() == "carol"),
            "{transfer:?}"
        );
    }
}
