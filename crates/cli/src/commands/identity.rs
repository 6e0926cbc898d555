//! What the command line remembers in `~/.lanrage/`: the peer's identity and
//! WireGuard key pair, and per server the token, the current party and, for
//! a key-bound session, the key it proves. Both files are versioned,
//! written atomically and readable by their owner only.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow};
use base64::{Engine, engine::general_purpose::STANDARD};
use lanrage_client::PrivateKey;
use lanrage_files::{FileLock, read_optional, set_aside, write_atomic};
use lanrage_proto::{Name, PartyId, PeerId, PublicKey, TokenResponse};
use serde::{Deserialize, Serialize};

/// `$HOME/.lanrage`.
pub fn config_dir() -> anyhow::Result<PathBuf> {
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .ok_or_else(|| anyhow!("cannot find your home folder: set HOME"))?;
    Ok(PathBuf::from(home).join(".lanrage"))
}

/// Creates `dir` (and its parents) readable by its owner only; a folder
/// that already exists is left as it is.
pub fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))
}

/// This machine's peer: its v1 peer id (for `--peer-id`-less legacy use
/// it is no longer the default) and its WireGuard key pair.
#[derive(Debug, Clone)]
pub struct Identity {
    pub peer_id: PeerId,
    pub public_key: PublicKey,
    /// Proven to the server for key-bound tokens; never sent.
    pub private_key: PrivateKey,
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
        if let Some(identity) = Self::load(&path)? {
            return Ok(identity);
        }
        // Two first runs at once must not each make (and use) a key pair.
        let _lock = FileLock::exclusive(&path)
            .with_context(|| format!("cannot lock {}", path.display()))?;
        if let Some(identity) = Self::load(&path)? {
            return Ok(identity);
        }
        Self::create(&path)
    }

    fn load(path: &Path) -> anyhow::Result<Option<Self>> {
        if let Some(bytes) =
            read_optional(path).with_context(|| format!("cannot read {}", path.display()))?
        {
            let not_identity = || {
                format!(
                    "{} is not a LANrage identity (move it away to create a new one)",
                    path.display()
                )
            };
            let IdentityFile::V1 {
                peer_id,
                public_key,
                private_key,
            } = serde_json::from_slice(&bytes).with_context(not_identity)?;
            let private_key = PrivateKey::parse(&private_key).with_context(not_identity)?;
            return Ok(Some(Self {
                peer_id,
                public_key,
                private_key,
            }));
        }
        Ok(None)
    }

    fn create(path: &Path) -> anyhow::Result<Self> {
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
        write_atomic(path, &serde_json::to_vec_pretty(&file)?, true)
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(Self {
            peer_id,
            public_key,
            private_key: PrivateKey::from_bytes(secret.to_bytes()),
        })
    }

    /// A fresh private key (base64, as `wg genkey` prints it), saved in
    /// `identity.rotating` before any server hears of it: should this
    /// process die between the server's rotation and
    /// [`Identity::replace_key`], the key the server now expects is not lost.
    /// Returns the key, its base64 text and the file.
    pub fn stage_new_key(dir: &Path) -> anyhow::Result<(PrivateKey, String, PathBuf)> {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|e| anyhow!("no randomness for a key: {e}"))?;
        let text = STANDARD.encode(secret);
        let path = dir.join("identity.rotating");
        write_atomic(&path, text.as_bytes(), true)
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok((PrivateKey::from_bytes(secret), text, path))
    }

    /// Makes `key` this identity's key pair in `identity.json` (the v1
    /// peer id stays).
    pub fn replace_key(
        &mut self,
        dir: &Path,
        key: &PrivateKey,
        secret: &str,
    ) -> anyhow::Result<()> {
        let path = dir.join("identity.json");
        let file = IdentityFile::V1 {
            peer_id: self.peer_id.clone(),
            private_key: secret.to_owned(),
            public_key: key.public_key(),
        };
        write_atomic(&path, &serde_json::to_vec_pretty(&file)?, true)
            .with_context(|| format!("cannot write {}", path.display()))?;
        self.public_key = key.public_key();
        self.private_key = key.clone();
        Ok(())
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
    /// The public key a key-bound session proves (absent: v1, by peer id;
    /// files from before key-bound identity have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<PublicKey>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "version")]
enum SessionsFile {
    #[serde(rename = "1")]
    V1 { sessions: Vec<Session> },
}

/// `client.json`: tokens and current parties, per server and peer.
///
/// Several commands may run at once (a `party watch` and a `signal send`):
/// each reads the file at start and, at the end, saves only the session it
/// changed, merged under a file lock into the file as it is then, so none
/// loses another's session.
#[derive(Debug)]
pub struct Sessions {
    path: PathBuf,
    sessions: Vec<Session>,
    /// The sessions this process changed, to merge when saving.
    changed: Vec<Session>,
}

impl Sessions {
    /// Reads `client.json`; an unreadable one is moved aside with a warning
    /// (it holds nothing a new registration cannot give back).
    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join("client.json");
        let sessions = match read_sessions(&path)? {
            Some(sessions) => sessions,
            None => {
                let _lock = FileLock::exclusive(&path)
                    .with_context(|| format!("cannot lock {}", path.display()))?;
                read_or_set_aside(&path)?
            }
        };
        Ok(Self {
            path,
            sessions,
            changed: Vec::new(),
        })
    }

    pub fn get(&self, server: &str, peer_id: &PeerId) -> Option<&Session> {
        self.sessions
            .iter()
            .find(|s| s.server == server && s.peer_id == *peer_id)
    }

    /// The key-bound session proving `key` on `server`: after a rotation
    /// its peer id is not the one derived from the key.
    pub fn get_key_bound(&self, server: &str, key: &PublicKey) -> Option<&Session> {
        self.sessions
            .iter()
            .find(|s| s.server == server && s.key.as_ref() == Some(key))
    }

    pub fn put(
        &mut self,
        server: &str,
        peer_id: &PeerId,
        key: Option<PublicKey>,
        token: Option<TokenResponse>,
        party_id: Option<PartyId>,
    ) {
        let session = Session {
            server: server.to_owned(),
            peer_id: peer_id.clone(),
            token,
            party_id,
            key,
        };
        if self.get(server, peer_id) == Some(&session) {
            return;
        }
        upsert(&mut self.sessions, session.clone());
        upsert(&mut self.changed, session);
    }

    /// Writes the sessions this process changed, if any: under the file's
    /// lock, into the file as it is now, atomically, mode 0600 (tokens).
    /// Blocks while another process holds the lock.
    pub fn save(&mut self) -> anyhow::Result<()> {
        if self.changed.is_empty() {
            return Ok(());
        }
        let _lock = FileLock::exclusive(&self.path)
            .with_context(|| format!("cannot lock {}", self.path.display()))?;
        let mut sessions = read_or_set_aside(&self.path)?;
        for session in &self.changed {
            upsert(&mut sessions, session.clone());
        }
        let file = SessionsFile::V1 {
            sessions: sessions.clone(),
        };
        write_atomic(&self.path, &serde_json::to_vec_pretty(&file)?, true)
            .with_context(|| format!("cannot write {}", self.path.display()))?;
        self.sessions = sessions;
        self.changed.clear();
        Ok(())
    }
}

fn upsert(sessions: &mut Vec<Session>, session: Session) {
    match sessions
        .iter_mut()
        .find(|s| s.server == session.server && s.peer_id == session.peer_id)
    {
        Some(existing) => *existing = session,
        None => sessions.push(session),
    }
}

/// The sessions in `path` (none if it does not exist); `None` if the file
/// cannot be understood.
fn read_sessions(path: &Path) -> anyhow::Result<Option<Vec<Session>>> {
    let Some(bytes) =
        read_optional(path).with_context(|| format!("cannot read {}", path.display()))?
    else {
        return Ok(Some(Vec::new()));
    };
    Ok(match serde_json::from_slice(&bytes) {
        Ok(SessionsFile::V1 { sessions }) => Some(sessions),
        Err(_) => None,
    })
}

/// [`read_sessions`], moving an unreadable file aside (with a warning) so
/// that it can be looked at and a fresh one takes its place. Call it with
/// the file's lock held.
fn read_or_set_aside(path: &Path) -> anyhow::Result<Vec<Session>> {
    let Some(bytes) =
        read_optional(path).with_context(|| format!("cannot read {}", path.display()))?
    else {
        return Ok(Vec::new());
    };
    match serde_json::from_slice(&bytes) {
        Ok(SessionsFile::V1 { sessions }) => Ok(sessions),
        Err(error) => {
            let moved_to =
                set_aside(path).with_context(|| format!("cannot move {} aside", path.display()))?;
            eprintln!(
                "warning: {} is unreadable ({error}); moved to {} and starting a new session",
                path.display(),
                moved_to.display()
            );
            Ok(Vec::new())
        }
    }
}
