//! Relay servers: registered by their operator, listed to peers.

use lanrage_proto::{Region, Relay, RelayId, RelayRegistration, Timestamp};

use super::{Error, Result, Service};

impl Service {
    /// Registers a relay, or refreshes it (its heartbeat) when known.
    pub async fn register_relay(&self, registration: RelayRegistration) -> Result<RelayId> {
        if registration.region.as_str() == "status" {
            return Err(Error::Invalid(
                "region \"status\" is reserved: GET /relays/status lists relays' status".into(),
            ));
        }
        let now = Timestamp::now();
        let relay = Relay {
            relay_id: registration.relay_id,
            public_ip: registration.public_ip,
            port: registration.port,
            region: registration.region,
            capacity: registration.capacity,
            registered_at: now,
        };
        self.store.upsert_relay(&relay, now).await?;
        self.relay_dirty.everyone();
        Ok(relay.relay_id)
    }

    pub async fn deregister_relay(&self, relay_id: &RelayId) -> Result<()> {
        if self.store.delete_relay(relay_id).await? {
            self.relay_dirty.everyone();
            Ok(())
        } else {
            Err(Error::NotFound(format!("relay {relay_id} not found")))
        }
    }

    pub async fn relays(&self, region: Option<&Region>) -> Result<Vec<Relay>> {
        Ok(self.store.relays(region).await?)
    }
}
