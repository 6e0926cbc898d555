//! `admin …`: the operator's commands, with the server's admin key
//! (`--admin-key` or `LANRAGE_ADMIN_KEY`): parties (list, show, end,
//! remove a member), relays (list with state, deregister), the server's
//! numbers, and revoking or banning a peer. They act with the key alone:
//! no identity or token of the operator's own is made or kept.

use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use lanrage_client::{HttpClient, HttpConfig};
use lanrage_proto::{AdminParty, PartyId, PeerId, RelayId, Timestamp};

use super::{ClientArgs, describe, parse_party_id, party::print_table, print_json, when};

#[derive(Debug, Args)]
pub struct AdminArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The server's admin key (its LANRAGE_ADMIN_KEY).
    #[arg(long, env = "LANRAGE_ADMIN_KEY", hide_env_values = true, global = true)]
    admin_key: Option<String>,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// List every party: members, host and age.
    Parties,
    /// Show one party: its members with their virtual IPs, NAT types and
    /// last heartbeats, its settings and host.
    Party {
        /// The party's ID (as `admin parties` lists it).
        #[arg(value_parser = parse_party_id)]
        party_id: PartyId,
    },
    /// End a party: every member is told it ended (reason `operator`).
    End {
        /// The party's ID.
        #[arg(value_parser = parse_party_id)]
        party_id: PartyId,
    },
    /// Remove a member from its party (as a host's kick, without a ban).
    /// Removing the host ends the party unless it migrates.
    Remove {
        /// The party's ID.
        #[arg(value_parser = parse_party_id)]
        party_id: PartyId,
        /// The member's peer ID.
        #[arg(value_parser = parse_peer_id)]
        peer_id: PeerId,
    },
    /// List relays with region, last seen and state.
    Relays,
    /// Deregister a relay.
    Deregister {
        /// The relay's ID.
        #[arg(value_parser = parse_relay_id)]
        relay_id: RelayId,
    },
    /// The server's numbers: parties, members, sockets, requests, database.
    Stats,
    /// Revoke every token of a peer and take it out of its party.
    Revoke {
        /// The peer's ID.
        #[arg(value_parser = parse_peer_id)]
        peer_id: PeerId,
        /// Also ban it (and its bound key) until `admin unban`.
        #[arg(long)]
        ban: bool,
    },
    /// Lift a ban.
    Unban {
        /// The peer's ID.
        #[arg(value_parser = parse_peer_id)]
        peer_id: PeerId,
    },
}

fn parse_peer_id(value: &str) -> Result<PeerId, String> {
    PeerId::parse(value).map_err(|e| e.to_string())
}

fn parse_relay_id(value: &str) -> Result<RelayId, String> {
    RelayId::parse(value).map_err(|e| e.to_string())
}

pub async fn run(args: AdminArgs) -> anyhow::Result<()> {
    let key = args.admin_key.as_deref().context(
        "the admin key is needed: pass --admin-key or set LANRAGE_ADMIN_KEY (the server's own setting)",
    )?;
    let server = args.client.server.trim_end_matches('/').to_owned();
    // The admin key is the credential; the client's peer ID is never sent.
    let operator = PeerId::parse("operator").map_err(|e| anyhow::anyhow!("{e}"))?;
    let http = HttpClient::new(HttpConfig::new(server, operator)).map_err(describe)?;
    let json = args.client.json;
    let admin = Admin { http, key, json };
    match args.command {
        AdminCommand::Parties => admin.parties().await,
        AdminCommand::Party { party_id } => admin.party(&party_id).await,
        AdminCommand::End { party_id } => admin.end(&party_id).await,
        AdminCommand::Remove { party_id, peer_id } => admin.remove(&party_id, &peer_id).await,
        AdminCommand::Relays => admin.relays().await,
        AdminCommand::Deregister { relay_id } => admin.deregister(&relay_id).await,
        AdminCommand::Stats => admin.stats().await,
        AdminCommand::Revoke { peer_id, ban } => admin.revoke(&peer_id, ban).await,
        AdminCommand::Unban { peer_id } => admin.unban(&peer_id).await,
    }
}

struct Admin<'a> {
    http: HttpClient,
    key: &'a str,
    json: bool,
}

impl Admin<'_> {
    async fn parties(&self) -> anyhow::Result<()> {
        let parties = self
            .http
            .admin_all_parties(self.key)
            .await
            .map_err(describe)?;
        if self.json {
            for party in &parties {
                print_json(party)?;
            }
            return Ok(());
        }
        if parties.is_empty() {
            out!("No parties.")?;
            return Ok(());
        }
        let now = Timestamp::now();
        let mut rows = vec![[
            "PARTY".to_owned(),
            "NAME".to_owned(),
            "HOST".to_owned(),
            "MEMBERS".to_owned(),
            "AGE".to_owned(),
        ]];
        rows.extend(parties.iter().map(|party| {
            [
                party.party_id.to_string(),
                party.name.to_string(),
                party.host_id.to_string(),
                party.members.len().to_string(),
                age(party.created_at, now),
            ]
        }));
        print_table(&rows)?;
        out!(
            "{} {}",
            parties.len(),
            if parties.len() == 1 {
                "party"
            } else {
                "parties"
            }
        )?;
        Ok(())
    }

    async fn party(&self, party_id: &PartyId) -> anyhow::Result<()> {
        let party = self
            .http
            .admin_party(self.key, party_id)
            .await
            .map_err(describe)?;
        if self.json {
            return print_json(&party);
        }
        print_party(&party)
    }

    async fn end(&self, party_id: &PartyId) -> anyhow::Result<()> {
        self.http
            .admin_end_party(self.key, party_id)
            .await
            .map_err(describe)?;
        if self.json {
            return print_json(&serde_json::json!({"status": "party_deleted"}));
        }
        out!("Ended party {party_id}; its members were told.")?;
        Ok(())
    }

    async fn remove(&self, party_id: &PartyId, peer_id: &PeerId) -> anyhow::Result<()> {
        let status = self
            .http
            .admin_remove_member(self.key, party_id, peer_id)
            .await
            .map_err(describe)?;
        if self.json {
            return print_json(&serde_json::json!({"status": status}));
        }
        if status == "party_deleted" {
            out!("Removed {peer_id}, the host: party {party_id} ended.")?;
        } else {
            out!("Removed {peer_id} from party {party_id}.")?;
        }
        Ok(())
    }

    async fn relays(&self) -> anyhow::Result<()> {
        let relays = self.http.admin_relays(self.key).await.map_err(describe)?;
        if self.json {
            for relay in &relays {
                print_json(relay)?;
            }
            return Ok(());
        }
        if relays.is_empty() {
            out!("No relays registered.")?;
            return Ok(());
        }
        let now = Timestamp::now();
        let mut rows = vec![[
            "RELAY".to_owned(),
            "ADDRESS".to_owned(),
            "REGION".to_owned(),
            "STATE".to_owned(),
            "LOAD".to_owned(),
            "LAST SEEN".to_owned(),
        ]];
        rows.extend(relays.iter().map(|r| {
            [
                r.relay.relay_id.to_string(),
                format!("{}:{}", r.relay.public_ip, r.relay.port),
                r.relay.region.to_string(),
                r.state.clone(),
                r.load
                    .map_or_else(|| "-".to_owned(), |load| format!("{:.0}%", load * 100.0)),
                format!("{} ago", age(r.last_seen, now)),
            ]
        }));
        print_table(&rows)
    }

    async fn deregister(&self, relay_id: &RelayId) -> anyhow::Result<()> {
        self.http
            .admin_deregister_relay(self.key, relay_id)
            .await
            .map_err(describe)?;
        if self.json {
            return print_json(
                &serde_json::json!({"status": "deregistered", "relay_id": relay_id}),
            );
        }
        out!("Deregistered relay {relay_id}.")?;
        Ok(())
    }

    async fn stats(&self) -> anyhow::Result<()> {
        let stats = self.http.admin_stats(self.key).await.map_err(describe)?;
        if self.json {
            return print_json(&stats);
        }
        let uptime = humantime_secs(stats.uptime_secs);
        out!(
            "Server {} (version {}), up {uptime}",
            self.http.server_url(),
            stats.version
        )?;
        out!(
            "  {} parties, {} members, {} relays, {} open sockets",
            stats.parties,
            stats.peers,
            stats.relays,
            stats.sockets
        )?;
        out!(
            "  {} requests and {} socket messages since it started",
            stats.requests_total,
            stats.socket_messages_total
        )?;
        out!(
            "  database: {} ({:.1} ms)",
            stats.database,
            stats.database_ms
        )?;
        Ok(())
    }

    async fn revoke(&self, peer_id: &PeerId, ban: bool) -> anyhow::Result<()> {
        let revoked = self
            .http
            .admin_revoke(self.key, peer_id, ban)
            .await
            .map_err(describe)?;
        if self.json {
            return print_json(&revoked);
        }
        out!(
            "Revoked {} token{} of {peer_id}{}.",
            revoked.tokens,
            if revoked.tokens == 1 { "" } else { "s" },
            if revoked.banned { " and banned it" } else { "" }
        )?;
        Ok(())
    }

    async fn unban(&self, peer_id: &PeerId) -> anyhow::Result<()> {
        self.http
            .admin_unban(self.key, peer_id)
            .await
            .map_err(describe)?;
        if self.json {
            return print_json(&serde_json::json!({"status": "unbanned"}));
        }
        out!("{peer_id} may register again.")?;
        Ok(())
    }
}

fn print_party(party: &AdminParty) -> anyhow::Result<()> {
    let now = Timestamp::now();
    out!("Party {} \"{}\"", party.party_id, party.name)?;
    out!(
        "  host {} (epoch {}), created {} ({} ago), host policy {}, join policy {}",
        party.host_id,
        party.host_epoch,
        when(party.created_at),
        age(party.created_at, now),
        party.settings.host_policy.as_str(),
        party.settings.join_policy.as_str()
    )?;
    let mut rows = vec![[
        "PEER".to_owned(),
        "NAME".to_owned(),
        "VIRTUAL IP".to_owned(),
        "NAT".to_owned(),
        "LAST HEARTBEAT".to_owned(),
    ]];
    rows.extend(party.members.iter().map(|m| {
        let peer = if m.peer_id == party.host_id {
            format!("{} (host)", m.peer_id)
        } else {
            m.peer_id.to_string()
        };
        [
            peer,
            m.name.to_string(),
            m.virtual_ip.to_string(),
            m.nat_type.as_str().to_owned(),
            format!("{} ago", age(m.last_seen, now)),
        ]
    }));
    print_table(&rows)
}

/// How long ago `at` was, in the largest whole unit.
fn age(at: Timestamp, now: Timestamp) -> String {
    let secs = (now.as_micros() - at.as_micros()).max(0) / 1_000_000;
    humantime_secs(u64::try_from(secs).unwrap_or(0))
}

fn humantime_secs(secs: u64) -> String {
    let d = Duration::from_secs(secs);
    match d.as_secs() {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        s => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
    }
}
