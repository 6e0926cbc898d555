//! The heartbeat task a plane runs for its peer's party once it creates or
//! joins one: one implementation for the HTTP client and the local plane,
//! so both beat on the same way and stop for the same reasons.

use std::time::Duration;

use lanrage_proto::PartyId;
use parking_lot::{Mutex, MutexGuard};
use tokio::task::JoinHandle;

use crate::{ClientError, ControlPlane, error_chain};

/// Whether a refused heartbeat means beating on is pointless: the party or
/// the membership is gone (404), or the plane may no longer act for this
/// peer (403). Anything else (a transport error, a 5xx) may pass.
pub(crate) fn ends_heartbeat(error: &ClientError) -> bool {
    matches!(error.status(), Some(404 | 403))
}

/// The running heartbeat task of one party.
#[derive(Debug)]
struct Beating {
    party_id: PartyId,
    task: JoinHandle<()>,
}

/// Where a plane keeps its heartbeat task: at most one, for the party its
/// peer is in.
#[derive(Debug, Default)]
pub(crate) struct HeartbeatSlot(Mutex<Option<Beating>>);

impl HeartbeatSlot {
    fn slot(&self) -> MutexGuard<'_, Option<Beating>> {
        self.0.lock()
    }

    /// Starts beating for `party_id` every `every`, replacing the task of
    /// any other party. `upgrade` hands the plane back for each beat, or
    /// none once it is gone (the task then ends, so it never keeps a
    /// dropped plane alive); `sent` counts a beat that went through.
    pub(crate) fn start<P>(
        &self,
        party_id: PartyId,
        every: Duration,
        upgrade: impl Fn() -> Option<P> + Send + 'static,
        sent: fn(&P),
    ) where
        P: ControlPlane + 'static,
    {
        let party = party_id.clone();
        let task = tokio::spawn(async move {
            let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let Some(plane) = upgrade() else { return };
                match plane.heartbeat(&party).await {
                    Ok(()) => sent(&plane),
                    Err(error) if ends_heartbeat(&error) => {
                        tracing::warn!(party_id = %party, error = %error_chain(&error),
                            "no longer in the party; heartbeat stopped");
                        return;
                    }
                    Err(error) => {
                        tracing::warn!(party_id = %party, error = %error_chain(&error), "heartbeat failed");
                    }
                }
            }
        });
        if let Some(old) = self.slot().replace(Beating { party_id, task }) {
            old.task.abort();
        }
    }

    /// Stops the task (of `party_id` only, when given).
    pub(crate) fn stop(&self, party_id: Option<&PartyId>) {
        let mut slot = self.slot();
        if slot
            .as_ref()
            .is_some_and(|b| party_id.is_none_or(|p| *p == b.party_id))
            && let Some(beating) = slot.take()
        {
            beating.task.abort();
        }
    }

    /// The party whose task is still running, if any.
    pub(crate) fn party(&self) -> Option<PartyId> {
        self.slot()
            .as_ref()
            .filter(|b| !b.task.is_finished())
            .map(|b| b.party_id.clone())
    }
}

impl Drop for HeartbeatSlot {
    /// A dropped handle would leave the task running: end it.
    fn drop(&mut self) {
        self.stop(None);
    }
}

#[cfg(test)]
mod tests {
    use reqwest::StatusCode;

    use super::*;

    #[test]
    fn only_a_lost_membership_or_identity_ends_the_heartbeat() {
        let refused = |status| ClientError::refused(status, "no");
        assert!(ends_heartbeat(&refused(StatusCode::NOT_FOUND)));
        assert!(ends_heartbeat(&refused(StatusCode::FORBIDDEN)));
        assert!(!ends_heartbeat(&refused(StatusCode::INTERNAL_SERVER_ERROR)));
        assert!(!ends_heartbeat(&refused(StatusCode::TOO_MANY_REQUESTS)));
        assert!(!ends_heartbeat(&ClientError::Closed));
    }
}
