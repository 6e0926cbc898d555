//! What the command line remembers in `~/.lanrage/`: the peer's identity and
//! WireGuard key pair, and per server the token and the current party. Both
//! files are versioned, written atomically and readable by their owner only.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow};
use base64::{Engine, engine::general_purpose::STANDARD};
use lanrage_client::files::{read_optional, write_atomic};
use lanrage_proto::{Name, PartyId, PeerId, PublicKey, TokenResponse};
use serde::{Deserialize, Serialize};

/// `$HOME/.lanrage`.
pub fn config_dir() -> anyhow::Result<PathBuf> {
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .ok_or_else(|| anyhow!("cannot find your home folder: set HOME"))?;
    Ok(PathBuf::from(home).join(".lanrage"))
}

/// This machine's peer: its default id and its WireGuard key pair.
#[derive(Debug, Clone)]
pub struct Identity {
    pub peer_id: PeerId,
    pub public_key: PublicKey,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "version")]
enum IdentityFile {
    #[serde(rename = "1")]
    V1 {
        peer_id: PeerId,
        /// WireGuard private key, base64 as `wg genkey` prints it.
        private_key: String,
        public_key: PublicKey,
    },
}

impl Identity {
    /// Reads `identity.json`, creating it (a random peer id and a fresh
    /// X25519 key pair) on first use.
    pub fn load_or_create(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join("identity.json");
        if let Some(bytes) =
            read_optional(&path).with_context(|| format!("cannot read {}", path.display()))?
        {
            let IdentityFile::V1 {
                peer_id,
                public_key,
                ..
            } = serde_json::from_slice(&bytes).with_context(|| {
                format!(
                    "{} is not a LANrage identity (move it away to create a new one)",
                    path.display()
                )
            })?;
            return Ok(Self {
                peer_id,
                public_key,
            });
        }
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|e| anyhow!("no randomness for a key: {e}"))?;
        let secret = x25519_dalek::StaticSecret::from(secret);
        let public = x25519_dalek::PublicKey::from(&secret);
        let mut id = [0u8; 6];
        getrandom::fill(&mut id).map_err(|e| anyhow!("no randomness for an id: {e}"))?;
        let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
        let peer_id = PeerId::parse(format!("peer-{hex}")).map_err(|e| anyhow!(e))?;
        let public_key = PublicKey::from_bytes(public.as_bytes());
        let file = IdentityFile::V1 {
            peer_id: peer_id.clone(),
            private_key: STANDARD.encode(secret.to_bytes()),
            public_key: public_key.clone(),
        };
        write_atomic(&path, &serde_json::to_vec_pretty(&file)?, true)
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(Self {
            peer_id,
            public_key,
        })
    }

    pub fn default_name(&self) -> Name {
        Name::parse("LANrage peer").unwrap_or_else(|_| unreachable!("a constant valid name"))
    }
}

/// What is remembered for one server and peer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub server: String,
    pub peer_id: PeerId,
    pub token: Option<TokenResponse>,
    pub party_id: Option<PartyId>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "version")]
enum SessionsFile {
    #[serde(rename = "1")]
    V1 { sessions: Vec<Session> },
}

/// `client.json`: tokens and current parties, per server and peer.
#[derive(Debug)]
pub struct Sessions {
    path: PathBuf,
    sessions: Vec<Session>,
    changed: bool,
}

impl Sessions {
    /// Reads `client.json`; an unreadable one is only forgotten (it holds
    /// nothing a new registration cannot give back).
    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join("client.json");
        let sessions = match read_optional(&path)
            .with_context(|| format!("cannot read {}", path.display()))?
        {
            None => Vec::new(),
            Some(bytes) => match serde_json::from_slice(&bytes) {
                Ok(SessionsFile::V1 { sessions }) => sessions,
                Err(error) => {
                    eprintln!(
                        "warning: {} is unreadable ({error}); starting a new session",
                        path.display()
                    );
                    Vec::new()
                }
            },
        };
        Ok(Self {
            path,
            sessions,
            changed: false,
        })
    }

    pub fn get(&self, server: &str, peer_id: &PeerId) -> Option<&Session> {
        self.sessions
            .iter()
            .find(|s| s.server == server && s.peer_id == *peer_id)
    }

    pub fn put(
        &mut self,
        server: &str,
        peer_id: &PeerId,
        token: Option<TokenResponse>,
        party_id: Option<PartyId>,
    ) {
        let session = Session {
            server: server.to_owned(),
            peer_id: peer_id.clone(),
            token,
            party_id,
        };
        match self
            .sessions
            .iter_mut()
            .find(|s| s.server == server && s.peer_id == *peer_id)
        {
            Some(existing) if *existing == session => {}
            Some(existing) => {
                *existing = session;
                self.changed = true;
            }
            None => {
                self.sessions.push(session);
                self.changed = true;
            }
        }
    }

    /// Writes the file if anything changed: atomically, mode 0600 (tokens).
    pub fn save(&mut self) -> anyhow::Result<()> {
        if !self.changed {
            return Ok(());
        }
        let file = SessionsFile::V1 {
            sessions: self.sessions.clone(),
        };
        write_atomic(&self.path, &serde_json::to_vec_pretty(&file)?, true)
            .with_context(|| format!("cannot write {}", self.path.display()))?;
        self.changed = false;
        Ok(())
    }
}
