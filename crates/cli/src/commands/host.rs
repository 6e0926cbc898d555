//! The host's commands under `party`: `settings [set]`, `host transfer`,
//! `kick`, and the settings flags `party create` shares with `settings
//! set` (host authority, on a server that lists `host-migration`).

use clap::{ArgGroup, Args, Subcommand};
use lanrage_proto::{
    HostPolicy, JoinPolicy, MAX_MAX_MEMBERS, MIN_MAX_MEMBERS, PartyId, PartySettings, PeerId,
    SettingsPatch,
};

use super::{Context, describe, parse_party_id, parse_peer_id};

/// `--party`: the party to act on, when not the one remembered.
#[derive(Debug, Clone, Args)]
pub struct PartyOption {
    /// The party (default: your current party).
    #[arg(long = "party", value_name = "PARTY_ID", value_parser = parse_party_id, global = true)]
    pub party_id: Option<PartyId>,
}

/// The settings flags of `party create` and `party settings set`.
#[derive(Debug, Clone, Args)]
pub struct SettingsArgs {
    /// When the host leaves or goes quiet: `end` (the party ends) or
    /// `migrate` (the first present member takes over).
    #[arg(long, value_name = "end|migrate")]
    pub host_policy: Option<HostPolicy>,
    /// Who may join: `open` (the party ID is enough) or `invite` (a join
    /// code only; members still refresh).
    #[arg(long, value_name = "open|invite")]
    pub join_policy: Option<JoinPolicy>,
    /// The most members, 2 to 256, or `none` for no limit but the
    /// server's; lowering it removes nobody.
    #[arg(long, value_name = "N|none", value_parser = parse_max_members)]
    pub max_members: Option<MaxMembers>,
}

impl SettingsArgs {
    /// The settings these flags name; empty when none was given.
    pub fn patch(&self) -> SettingsPatch {
        SettingsPatch {
            host_policy: self.host_policy,
            join_policy: self.join_policy,
            max_members: self.max_members.map(|m| m.0),
        }
    }
}

/// `--max-members`: a cap, or `none`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxMembers(Option<u16>);

fn parse_max_members(value: &str) -> Result<MaxMembers, String> {
    if value == "none" {
        return Ok(MaxMembers(None));
    }
    value
        .parse::<u16>()
        .ok()
        .filter(|n| (MIN_MAX_MEMBERS..=MAX_MAX_MEMBERS).contains(n))
        .map(|n| MaxMembers(Some(n)))
        .ok_or_else(|| {
            format!("expected `none` or a whole number from {MIN_MAX_MEMBERS} to {MAX_MAX_MEMBERS}")
        })
}

#[derive(Debug, Subcommand)]
pub enum SettingsCommand {
    /// Change the party's settings (the host only); members are told.
    #[command(group(
        ArgGroup::new("change")
            .args(["host_policy", "join_policy", "max_members"])
            .required(true)
            .multiple(true)
    ))]
    Set {
        #[command(flatten)]
        settings: SettingsArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum HostCommand {
    /// Hand the party to another member (the host only).
    Transfer {
        /// The member to become host.
        #[arg(value_name = "PEER", value_parser = parse_peer_id)]
        new_host_id: PeerId,
        /// Refuse (409) unless the host epoch is still N (`party show`
        /// prints it): of two transfers made from one view, one wins.
        #[arg(long, value_name = "N")]
        expected_epoch: Option<u64>,
        #[command(flatten)]
        party: PartyOption,
    },
}

/// `party settings`: prints them.
pub async fn show_settings(cx: &Context, party_id: Option<PartyId>) -> anyhow::Result<()> {
    let party_id = cx.party(party_id)?;
    let read = cx.http.party_settings(&party_id).await.map_err(describe)?;
    if cx.args.json {
        return cx.print_json(&read);
    }
    out!("Party {party_id}:")?;
    print_settings(&read.settings)
}

/// `party settings set`: changes them and prints them as they are now.
pub async fn set_settings(
    cx: &Context,
    party_id: Option<PartyId>,
    settings: &SettingsArgs,
) -> anyhow::Result<()> {
    let party_id = cx.party(party_id)?;
    let changed = cx
        .http
        .update_party_settings(&party_id, settings.patch())
        .await
        .map_err(describe)?;
    if cx.args.json {
        return cx.print_json(&changed);
    }
    out!("Changed the settings of party {party_id}:")?;
    print_settings(&changed.settings)
}

/// `party host transfer`.
pub async fn transfer(
    cx: &Context,
    party_id: Option<PartyId>,
    new_host_id: &PeerId,
    expected_epoch: Option<u64>,
) -> anyhow::Result<()> {
    let party_id = cx.party(party_id)?;
    let done = cx
        .http
        .transfer_host(&party_id, new_host_id, expected_epoch)
        .await
        .map_err(describe)?;
    if cx.args.json {
        return cx.print_json(&done);
    }
    out!(
        "Party {party_id} is now hosted by {} (host epoch {}).",
        done.party.host_id,
        done.host_epoch
    )?;
    Ok(())
}

/// `party kick`.
pub async fn kick(
    cx: &Context,
    party_id: Option<PartyId>,
    peer_id: &PeerId,
    ban: bool,
) -> anyhow::Result<()> {
    let party_id = cx.party(party_id)?;
    let removed = cx
        .http
        .kick(&party_id, peer_id, ban)
        .await
        .map_err(describe)?;
    if cx.args.json {
        return cx.print_json(&removed);
    }
    if removed.banned {
        out!("Removed {peer_id} from party {party_id}, banned from it until it ends.")?;
    } else {
        out!("Removed {peer_id} from party {party_id} (not banned).")?;
    }
    Ok(())
}

/// The settings, one per line.
pub fn print_settings(settings: &PartySettings) -> anyhow::Result<()> {
    out!("  host_policy  {}", settings.host_policy)?;
    out!("  join_policy  {}", settings.join_policy)?;
    out!("  max_members  {}", max_members_text(settings.max_members))?;
    Ok(())
}

/// The settings on one line.
pub fn settings_line(settings: &PartySettings) -> String {
    format!(
        "host_policy {}, join_policy {}, max_members {}",
        settings.host_policy,
        settings.join_policy,
        max_members_text(settings.max_members)
    )
}

fn max_members_text(max_members: Option<u16>) -> String {
    max_members.map_or_else(|| "none".to_owned(), |n| n.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_members_is_none_or_a_cap_in_range() {
        assert_eq!(parse_max_members("none"), Ok(MaxMembers(None)));
        assert_eq!(parse_max_members("2"), Ok(MaxMembers(Some(2))));
        assert_eq!(parse_max_members("256"), Ok(MaxMembers(Some(256))));
        for bad in ["1", "257", "0", "-3", "8.5", "None", ""] {
            assert!(parse_max_members(bad).is_err(), "{bad}");
        }
    }
}
