//! Turning rows into validated records, for both backends: each backend
//! only says how to read a text or an integer column.

use lanrage_proto::{
    InvalidValue, IpOrUnknown, Name, PartyId, PartySettings, Peer, PeerId, PublicKey, Region,
    Relay, RelayId, ServerMessage, Signal, SignalData, Timestamp,
};

use super::{
    ChallengeRecord, MemberRecord, PartyRecord, PartyWithMembers, StoreError, StoreResult,
};

/// Column access shared by SQLite and PostgreSQL rows.
pub trait Columns {
    fn text(&self, column: &str) -> StoreResult<String>;
    fn int(&self, column: &str) -> StoreResult<i64>;
    fn nullable_text(&self, column: &str) -> StoreResult<Option<String>>;
    fn nullable_int(&self, column: &str) -> StoreResult<Option<i64>>;
}

impl Columns for sqlx::sqlite::SqliteRow {
    fn text(&self, column: &str) -> StoreResult<String> {
        Ok(sqlx::Row::try_get(self, column)?)
    }

    fn nullable_int(&self, column: &str) -> StoreResult<Option<i64>> {
        Ok(sqlx::Row::try_get(self, column)?)
    }

    fn nullable_text(&self, column: &str) -> StoreResult<Option<String>> {
        Ok(sqlx::Row::try_get(self, column)?)
    }

    fn int(&self, column: &str) -> StoreResult<i64> {
        Ok(sqlx::Row::try_get(self, column)?)
    }
}

impl Columns for sqlx::postgres::PgRow {
    fn text(&self, column: &str) -> StoreResult<String> {
        Ok(sqlx::Row::try_get(self, column)?)
    }

    fn nullable_int(&self, column: &str) -> StoreResult<Option<i64>> {
        Ok(sqlx::Row::try_get(self, column)?)
    }

    fn nullable_text(&self, column: &str) -> StoreResult<Option<String>> {
        Ok(sqlx::Row::try_get(self, column)?)
    }

    fn int(&self, column: &str) -> StoreResult<i64> {
        Ok(sqlx::Row::try_get(self, column)?)
    }
}

pub(super) fn valid<T>(value: Result<T, InvalidValue>) -> StoreResult<T> {
    value.map_err(|e| StoreError::Corrupt(e.0))
}

fn narrow<T: TryFrom<i64>>(value: i64, what: &str) -> StoreResult<T> {
    T::try_from(value).map_err(|_| StoreError::Corrupt(format!("{what} {value} out of range")))
}

pub(super) fn unsigned(value: i64, what: &str) -> StoreResult<u64> {
    narrow(value, what)
}

/// A `seq` as the databases store it.
/// A row count for `LIMIT`: anything beyond `i64::MAX` is no limit at all.
pub(super) fn limit_param(limit: u64) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

pub(super) fn seq_param(seq: u64) -> StoreResult<i64> {
    i64::try_from(seq).map_err(|_| StoreError::Corrupt(format!("seq {seq} out of range")))
}

fn timestamp(row: &impl Columns, column: &str) -> StoreResult<Timestamp> {
    Ok(Timestamp::from_micros(row.int(column)?))
}

fn ip(row: &impl Columns, column: &str) -> StoreResult<IpOrUnknown> {
    valid(row.text(column)?.parse())
}

pub(super) fn party_id(row: &impl Columns) -> StoreResult<PartyId> {
    valid(PartyId::parse(row.text("party_id")?))
}

pub(super) fn peer_id(row: &impl Columns, column: &str) -> StoreResult<PeerId> {
    valid(PeerId::parse(row.text(column)?))
}

pub(super) fn party_record(row: &impl Columns) -> StoreResult<PartyRecord> {
    party_named(row, "name")
}

fn party_named(row: &impl Columns, name_column: &str) -> StoreResult<PartyRecord> {
    Ok(PartyRecord {
        party_id: party_id(row)?,
        name: valid(Name::parse(row.text(name_column)?))?,
        host_id: peer_id(row, "host_id")?,
        created_at: timestamp(row, "created_at")?,
        seq: unsigned(row.int("seq")?, "seq")?,
        settings: PartySettings {
            host_policy: valid(row.text("host_policy")?.parse())?,
            join_policy: valid(row.text("join_policy")?.parse())?,
            max_members: row
                .nullable_int("max_members")?
                .map(|n| narrow(n, "max_members"))
                .transpose()?,
        },
        host_epoch: unsigned(row.int("host_epoch")?, "host_epoch")?,
    })
}

pub(super) fn member_record(row: &impl Columns) -> StoreResult<MemberRecord> {
    Ok(MemberRecord {
        peer: Peer {
            peer_id: peer_id(row, "peer_id")?,
            name: valid(Name::parse(row.text("name")?))?,
            public_key: valid(PublicKey::parse(row.text("public_key")?))?,
            nat_type: valid(row.text("nat_type")?.parse())?,
            public_ip: ip(row, "public_ip")?,
            public_port: narrow(row.int("public_port")?, "public_port")?,
            local_ip: ip(row, "local_ip")?,
            local_port: narrow(row.int("local_port")?, "local_port")?,
            last_seen: timestamp(row, "last_seen")?,
        },
        vip_index: narrow(row.int("vip_index")?, "vip_index")?,
        verified: row.int("verified")? != 0,
        joined_at: timestamp(row, "joined_at")?,
        heard_at: timestamp(row, "heard_at")?,
    })
}

/// A party and its members from one `parties LEFT JOIN members` result
/// (the party's name as `party_name`, ordered by `vip_index`):
/// one statement, so one consistent snapshot without a transaction.
pub(super) fn snapshot_rows<R: Columns>(rows: &[R]) -> StoreResult<Option<PartyWithMembers>> {
    Ok(snapshots_rows(rows)?.into_iter().next())
}

/// Several parties and their members from one such result, ordered by
/// party then `vip_index`.
pub(super) fn snapshots_rows<R: Columns>(rows: &[R]) -> StoreResult<Vec<PartyWithMembers>> {
    let mut parties: Vec<PartyWithMembers> = Vec::new();
    for row in rows {
        let party_id = party_id(row)?;
        if parties
            .last()
            .is_none_or(|(party, _)| party.party_id != party_id)
        {
            parties.push((party_named(row, "party_name")?, Vec::new()));
        }
        if row.nullable_text("peer_id")?.is_some()
            && let Some((_, members)) = parties.last_mut()
        {
            members.push(member_record(row)?);
        }
    }
    Ok(parties)
}

pub(super) fn relay_record(row: &impl Columns) -> StoreResult<Relay> {
    Ok(Relay {
        relay_id: valid(RelayId::parse(row.text("relay_id")?))?,
        public_ip: ip(row, "public_ip")?,
        port: narrow(row.int("port")?, "port")?,
        region: valid(Region::parse(row.text("region")?))?,
        capacity: narrow(row.int("capacity")?, "capacity")?,
        registered_at: timestamp(row, "registered_at")?,
    })
}

pub(super) fn signal_record(row: &impl Columns) -> StoreResult<Signal> {
    let data: serde_json::Value = serde_json::from_str(&row.text("signal_data")?)
        .map_err(|e| StoreError::Corrupt(format!("signal_data: {e}")))?;
    Ok(Signal {
        party_id: party_id(row)?,
        from_peer_id: peer_id(row, "from_peer_id")?,
        to_peer_id: peer_id(row, "to_peer_id")?,
        signal_data: valid(SignalData::parse(data))?,
        sent_at: timestamp(row, "sent_at")?,
    })
}

/// The signals of rows a drain selected, with their ids, oldest first. A
/// row that does not parse (stored by an older version under looser
/// limits) is logged and left out: it is not removed either, and expires.
pub(super) fn drained_signals<R: Columns>(rows: &[R]) -> StoreResult<(Vec<i64>, Vec<Signal>)> {
    let mut drained = Vec::with_capacity(rows.len());
    for row in rows {
        let id = row.int("id")?;
        match signal_record(row) {
            Ok(signal) => drained.push((id, signal)),
            Err(error) => {
                tracing::warn!(id, error = %crate::telemetry::error_chain(&error), "a queued signal cannot be delivered; leaving it to expire");
            }
        }
    }
    drained.sort_by_key(|(id, _)| *id);
    Ok(drained.into_iter().unzip())
}

pub(super) fn event_payload(row: &impl Columns) -> StoreResult<ServerMessage> {
    serde_json::from_str(&row.text("payload")?)
        .map_err(|e| StoreError::Corrupt(format!("event payload: {e}")))
}

pub(super) fn event_recipients(row: &impl Columns) -> StoreResult<Vec<PeerId>> {
    serde_json::from_str(&row.text("recipients")?)
        .map_err(|e| StoreError::Corrupt(format!("event recipients: {e}")))
}

pub(super) fn to_json(value: &impl serde::Serialize, what: &str) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

/// A `relays` row with its status columns.
pub(super) fn relay_status(row: &impl Columns) -> StoreResult<super::RelayStatusRecord> {
    Ok(super::RelayStatusRecord {
        relay: relay_record(row)?,
        last_seen: timestamp(row, "last_seen")?,
        sessions: row
            .nullable_int("sessions")?
            .map(|n| narrow(n, "sessions"))
            .transpose()?,
        #[allow(clippy::cast_precision_loss)]
        load: row.nullable_int("load_ppm")?.map(|ppm| ppm as f64 / 1e6),
        draining: row.int("draining")? != 0,
        last_status_at: row
            .nullable_int("last_status_at")?
            .map(Timestamp::from_micros),
    })
}

/// A party's relay columns.
pub(super) fn stored_relay(row: &impl Columns) -> StoreResult<super::StoredRelay> {
    let relay = |text: Option<String>| {
        text.filter(|t| !t.is_empty())
            .map(|t| valid(RelayId::parse(t)))
            .transpose()
    };
    Ok(super::StoredRelay {
        relay_id: relay(row.nullable_text("relay_id")?)?,
        reason: row.nullable_text("relay_reason")?,
        announced: row
            .nullable_text("relay_announced")?
            .map(|t| relay(Some(t)))
            .transpose()?,
        announced_at: row
            .nullable_int("relay_announced_at")?
            .map(Timestamp::from_micros),
    })
}

/// A `relay_rtts` row: the member and one entry of its report.
pub(super) fn rtt_entry(row: &impl Columns) -> StoreResult<(PeerId, super::RttEntry)> {
    Ok((
        peer_id(row, "peer_id")?,
        (
            valid(RelayId::parse(row.text("relay_id")?))?,
            row.nullable_int("rtt_ms")?
                .map(|ms| narrow(ms, "rtt_ms"))
                .transpose()?,
        ),
    ))
}

/// A `peer_nat` row.
pub(super) fn peer_nat(row: &impl Columns) -> StoreResult<(PeerId, lanrage_proto::NatReport)> {
    Ok((
        peer_id(row, "peer_id")?,
        lanrage_proto::NatReport {
            mapping: valid(row.text("mapping")?.parse())?,
            filtering: valid(row.text("filtering")?.parse())?,
            port_mapping: row.int("port_mapping")? != 0,
        },
    ))
}

/// A `path_reports` row.
pub(super) fn path_report(row: &impl Columns) -> StoreResult<super::PathReportRecord> {
    Ok(super::PathReportRecord {
        from_peer: peer_id(row, "from_peer")?,
        to_peer: peer_id(row, "to_peer")?,
        outcome: valid(row.text("outcome")?.parse())?,
        rtt_us: row
            .nullable_int("rtt_us")?
            .map(|us| unsigned(us, "rtt_us"))
            .transpose()?,
        reported_at: timestamp(row, "reported_at")?,
    })
}

/// A class pair's summed outcomes.
pub(super) fn class_counts(row: &impl Columns) -> StoreResult<super::ClassCounts> {
    Ok((
        (row.text("class_a")?, row.text("class_b")?),
        lanrage_rules::ClassOutcomes {
            direct: unsigned(row.int("direct")?, "direct")?,
            relayed: unsigned(row.int("relayed")?, "relayed")?,
            failed: unsigned(row.int("failed")?, "failed")?,
        },
    ))
}

/// A `party_paths` row.
pub(super) fn stored_path(row: &impl Columns) -> StoreResult<super::StoredPath> {
    let plan = match row.text("plan")?.as_str() {
        "lan" => lanrage_proto::PathPlanKind::Lan,
        "direct" => lanrage_proto::PathPlanKind::Direct,
        "attempt" => lanrage_proto::PathPlanKind::Attempt,
        "relay" => lanrage_proto::PathPlanKind::Relay,
        other => return Err(StoreError::Corrupt(format!("path plan {other:?}"))),
    };
    Ok((peer_id(row, "a")?, peer_id(row, "b")?, plan))
}

/// An `invites` row.
pub(super) fn invite(row: &impl Columns) -> StoreResult<super::InviteRecord> {
    Ok(super::InviteRecord {
        nameplate: row.text("nameplate")?,
        party_id: party_id(row)?,
        secret: row.text("secret")?,
        created_by: peer_id(row, "created_by")?,
        created_at: timestamp(row, "created_at")?,
        expires_at: timestamp(row, "expires_at")?,
        max_uses: narrow(row.int("max_uses")?, "max_uses")?,
        uses: narrow(row.int("uses")?, "uses")?,
        failures: narrow(row.int("failures")?, "failures")?,
        ended_at: row.nullable_int("ended_at")?.map(Timestamp::from_micros),
        end_reason: row.nullable_text("end_reason")?,
    })
}

/// A `key_challenges` row.
pub(super) fn challenge<R: Columns>(row: &R) -> StoreResult<ChallengeRecord> {
    use base64::{Engine, engine::general_purpose::STANDARD};
    let secret = STANDARD
        .decode(row.text("secret")?)
        .ok()
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
        .ok_or_else(|| StoreError::Corrupt("a challenge's secret is not 32 bytes".into()))?;
    Ok(ChallengeRecord {
        challenge_id: row.text("challenge_id")?,
        public_key: row.text("public_key")?,
        secret,
        client: row.text("client")?,
        expires_at: Timestamp::from_micros(row.int("expires_at")?),
    })
}
