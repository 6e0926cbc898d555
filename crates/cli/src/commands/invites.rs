//! Join codes under `party`: the host's `invite [--uses N] [--ttl 30m]`,
//! `invites` and `invite revoke NAMEPLATE`, and how `party join` tells a
//! code from a party ID (on a server that lists `invites`).

use std::time::Duration;

use clap::{Args, Subcommand};
use lanrage_proto::{
    Invite, InviteResponse, InvitesResponse, MAX_INVITE_TTL_SECS, MAX_INVITE_USES,
    MIN_INVITE_TTL_SECS, MIN_INVITE_USES, PartyId, StatusResponse, Timestamp,
};
use lanrage_rules::{CodeError, InviteCode, Nameplate};

use super::{Context, describe, party::print_table, when};

/// The limits `party invite` puts on a new code; absent ones take the
/// server's defaults.
#[derive(Debug, Clone, Args)]
pub struct InviteLimits {
    /// How many joins the code admits, 1 to 100 (default: the server's, 10).
    #[arg(long, value_name = "N", value_parser = parse_uses)]
    pub uses: Option<u32>,
    /// How long the code works, 60 s to 7 days: `90s`, `30m`, `2h`, `7d`
    /// or plain seconds (default: the server's, an hour).
    #[arg(long, value_name = "DURATION", value_parser = parse_ttl)]
    pub ttl: Option<Duration>,
}

#[derive(Debug, Subcommand)]
pub enum InviteCommand {
    /// End a live code early (the host only); members are told.
    Revoke {
        /// The code's word part (`frog`, or `frog-lamp`), as `party
        /// invites` shows it.
        #[arg(value_parser = parse_nameplate)]
        nameplate: String,
    },
}

/// What `party join` was given: a party ID or a join code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinTarget {
    Party(PartyId),
    /// As typed; the library reads it as the server does.
    Code(String),
}

/// A party ID when it is one as the server makes them (32 lowercase hex
/// digits), a join code otherwise; neither is a usage error saying why.
pub fn parse_join_target(value: &str) -> Result<JoinTarget, String> {
    let value = value.trim();
    if value.len() == 32
        && value
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return PartyId::parse(value)
            .map(JoinTarget::Party)
            .map_err(|e| e.to_string());
    }
    match InviteCode::parse(value) {
        Err(CodeError::Malformed(why)) => Err(format!(
            "neither a party ID (32 lowercase hex digits) nor a join code like FROG-7421: {why}"
        )),
        // Words that are not list words: the server's one 404 answers it.
        _ => Ok(JoinTarget::Code(value.to_owned())),
    }
}

fn parse_uses(value: &str) -> Result<u32, String> {
    value
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|n| (MIN_INVITE_USES..=MAX_INVITE_USES).contains(n))
        .ok_or_else(|| {
            format!("expected a whole number of uses from {MIN_INVITE_USES} to {MAX_INVITE_USES}")
        })
}

/// `90s`, `30m`, `2h`, `7d` or plain seconds, from 60 s to 7 days.
fn parse_ttl(value: &str) -> Result<Duration, String> {
    let text = value.trim();
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let scale = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => 0,
    };
    let secs = number
        .parse::<u64>()
        .ok()
        .filter(|_| scale > 0)
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(|| {
            "expected a duration like 90s, 30m, 2h, 7d, or a number of seconds".to_owned()
        })?;
    if !(MIN_INVITE_TTL_SECS..=MAX_INVITE_TTL_SECS).contains(&secs) {
        return Err(format!(
            "a code works from 60 seconds (1m) to 7 days (7d), not {text}"
        ));
    }
    Ok(Duration::from_secs(secs))
}

/// A nameplate as the server stores it (`frog-lamp`), read leniently.
fn parse_nameplate(value: &str) -> Result<String, String> {
    match Nameplate::parse(value) {
        Ok(nameplate) => Ok(nameplate.to_string()),
        Err(CodeError::Malformed(why)) => Err(format!(
            "not a nameplate (the word part of a code, like frog): {why}"
        )),
        Err(_) => Err("not a nameplate: its words are not nameplate words".to_owned()),
    }
}

/// `party invite`: makes a code and prints it alone on its line.
pub async fn create(
    cx: &Context,
    party_id: Option<PartyId>,
    limits: &InviteLimits,
) -> anyhow::Result<()> {
    let party_id = cx.party(party_id)?;
    let invite = cx
        .http
        .create_invite(&party_id, limits.uses, limits.ttl)
        .await
        .map_err(describe)?;
    if cx.args.json {
        return cx.print_json(&InviteResponse { invite });
    }
    out!()?;
    out!("{}", invite.code)?;
    out!()?;
    out!(
        "Works until {} ({}), for up to {}.",
        when(invite.expires_at),
        left(invite.expires_at),
        plural(invite.max_uses, "join")
    )?;
    out!(
        "Others join with: lanrage-control party join {}",
        invite.code
    )?;
    Ok(())
}

/// `party invites`: the live codes, one per line.
pub async fn list(cx: &Context, party_id: Option<PartyId>) -> anyhow::Result<()> {
    let party_id = cx.party(party_id)?;
    let invites = cx.http.invites(&party_id).await.map_err(describe)?;
    if cx.args.json {
        return cx.print_json(&InvitesResponse { invites });
    }
    if invites.is_empty() {
        out!(
            "Party {party_id} has no live join codes (make one with: lanrage-control party invite)."
        )?;
        return Ok(());
    }
    out!("Live join codes of party {party_id}:")?;
    let mut rows = vec![[
        "CODE".to_owned(),
        "USES".to_owned(),
        "EXPIRES".to_owned(),
        "MADE BY".to_owned(),
    ]];
    rows.extend(invites.iter().map(row));
    print_table(&rows)
}

fn row(invite: &Invite) -> [String; 4] {
    [
        invite.code.clone(),
        format!("{}/{}", invite.uses, invite.max_uses),
        format!("{} ({})", when(invite.expires_at), left(invite.expires_at)),
        invite.created_by.to_string(),
    ]
}

/// `party invite revoke`.
pub async fn revoke(
    cx: &Context,
    party_id: Option<PartyId>,
    nameplate: &str,
) -> anyhow::Result<()> {
    let party_id = cx.party(party_id)?;
    cx.http
        .revoke_invite(&party_id, nameplate)
        .await
        .map_err(describe)?;
    if cx.args.json {
        return cx.print_json(&StatusResponse::new("revoked"));
    }
    out!(
        "Revoked join code {}-… of party {party_id}; members are told.",
        nameplate.to_ascii_uppercase()
    )?;
    Ok(())
}

/// How long until `at`, roughly: `in 30 minutes`, or `expired`.
fn left(at: Timestamp) -> String {
    let micros = at.as_micros().saturating_sub(Timestamp::now().as_micros());
    match u64::try_from(micros / 1_000_000) {
        Ok(secs) if secs > 0 => format!("in {}", span(secs)),
        _ => "expired".to_owned(),
    }
}

/// `secs` in the largest unit that keeps it above one of them.
fn span(secs: u64) -> String {
    let (n, unit) = match secs {
        0..120 => (secs, "second"),
        120..7_200 => (secs.div_ceil(60), "minute"),
        7_200..172_800 => (secs.div_ceil(3600), "hour"),
        _ => (secs.div_ceil(86_400), "day"),
    };
    plural(n, unit)
}

fn plural(n: impl Into<u64>, what: &str) -> String {
    match n.into() {
        1 => format!("1 {what}"),
        n => format!("{n} {what}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_take_a_unit_or_plain_seconds_within_a_minute_and_a_week() {
        for (text, secs) in [
            ("90s", 90),
            ("30m", 1800),
            ("2h", 7200),
            ("7d", 604_800),
            ("3600", 3600),
            ("1m", 60),
            (" 60 ", 60),
        ] {
            assert_eq!(parse_ttl(text), Ok(Duration::from_secs(secs)), "{text}");
        }
        for bad in ["59s", "59", "8d", "604801", "0"] {
            let error = parse_ttl(bad).unwrap_err();
            assert!(error.contains("from 60 seconds"), "{bad}: {error}");
        }
        for bad in [
            "",
            "m",
            "30x",
            "1.5h",
            "30 m",
            "-5m",
            "2h30m",
            "99999999999999999999d",
        ] {
            let error = parse_ttl(bad).unwrap_err();
            assert!(error.contains("like 90s"), "{bad}: {error}");
        }
    }

    #[test]
    fn uses_are_1_to_100() {
        assert_eq!(parse_uses("1"), Ok(1));
        assert_eq!(parse_uses("100"), Ok(100));
        for bad in ["0", "101", "-1", "two", ""] {
            assert!(parse_uses(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn party_ids_are_32_lowercase_hex_digits_and_anything_else_a_code() {
        let id = "0123456789abcdef0123456789abcdef";
        assert_eq!(
            parse_join_target(id),
            Ok(JoinTarget::Party(PartyId::parse(id).unwrap()))
        );
        for code in ["FROG-7421", "frog 7421", " frog_lamp_0042 ", "zzzzq-1234"] {
            assert_eq!(
                parse_join_target(code),
                Ok(JoinTarget::Code(code.trim().to_owned())),
                "{code}"
            );
        }
        for bad in [
            "FROG-74",
            "not/an/id",
            "0123456789ABCDEF0123456789ABCDEF",
            "",
        ] {
            let error = parse_join_target(bad).unwrap_err();
            assert!(error.starts_with("neither a party ID"), "{bad}: {error}");
        }
    }

    #[test]
    fn nameplates_are_read_leniently_and_kept_in_stored_form() {
        assert_eq!(parse_nameplate("FROG").as_deref(), Ok("frog"));
        assert_eq!(parse_nameplate("frog lamp").as_deref(), Ok("frog-lamp"));
        for bad in ["frog/lamp", "..", "zzzzq", ""] {
            assert!(parse_nameplate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn spans_read_in_the_largest_fitting_unit() {
        assert_eq!(span(1), "1 second");
        assert_eq!(span(90), "90 seconds");
        assert_eq!(span(1800), "30 minutes");
        assert_eq!(span(3599), "60 minutes");
        assert_eq!(span(7200), "2 hours");
        assert_eq!(span(604_800), "7 days");
    }
}
