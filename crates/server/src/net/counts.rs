//! Counts per client address (a [`ClientKey`]) with a ceiling: open
//! connections, unauthenticated sockets. A slot holds one unit and gives it
//! back when dropped, so no path that ends a connection can forget to.

use std::{collections::HashMap, sync::Arc};

use parking_lot::{Mutex, MutexGuard};

use super::ClientKey;

/// How many units each address holds now.
#[derive(Debug)]
pub struct AddressCounts {
    limit: usize,
    held: Mutex<HashMap<ClientKey, usize>>,
}

impl AddressCounts {
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            limit,
            held: Mutex::new(HashMap::new()),
        })
    }

    fn held(&self) -> MutexGuard<'_, HashMap<ClientKey, usize>> {
        self.held.lock()
    }

    /// One unit for `key`, unless it holds the limit already.
    pub fn acquire(self: &Arc<Self>, key: ClientKey) -> Option<AddressSlot> {
        let mut held = self.held();
        let count = held.entry(key).or_insert(0);
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(AddressSlot {
            counts: self.clone(),
            key,
        })
    }

    /// Units `key` holds now.
    pub fn count(&self, key: ClientKey) -> usize {
        self.held().get(&key).copied().unwrap_or(0)
    }
}

/// One unit held by an address; given back on drop.
#[derive(Debug)]
pub struct AddressSlot {
    counts: Arc<AddressCounts>,
    key: ClientKey,
}

impl AddressSlot {
    pub fn key(&self) -> ClientKey {
        self.key
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut held = self.counts.held();
        if let Some(count) = held.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_holds_at_most_the_limit_and_slots_come_back() {
        let counts = AddressCounts::new(2);
        let a = ClientKey::of("127.0.0.1".parse().unwrap());
        let b = ClientKey::of("127.0.0.2".parse().unwrap());
        let first = counts.acquire(a).unwrap();
        let _second = counts.acquire(a).unwrap();
        assert!(counts.acquire(a).is_none());
        assert!(
            counts.acquire(b).is_some(),
            "other addresses are not held up"
        );
        drop(first);
        assert_eq!(counts.count(a), 1);
        assert!(counts.acquire(a).is_some());
        assert!(
            counts.held().get(&b).is_none(),
            "empty entries are forgotten"
        );
    }
}
