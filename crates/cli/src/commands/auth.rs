//! `auth logout | rotate`: ending the token in use, and replacing the
//! WireGuard key the peer is bound to.

use anyhow::anyhow;
use clap::{Args, Subcommand};
use lanrage_client::{ClientError, ControlPlane};
use serde_json::json;

use super::{ClientArgs, Context, describe, identity::Identity};

#[derive(Debug, Args)]
pub struct AuthArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(subcommand)]
    command: AuthCommand,
}

#[derive(Debug, Subcommand)]
enum AuthCommand {
    /// Revoke the token kept for this server (on every server instance) and
    /// forget it. The next command obtains a new one.
    Logout,
    /// Bind a fresh WireGuard key pair to this peer in place of the current
    /// one: the peer keeps its ID, its other tokens are revoked, party
    /// members see the new public key, and ~/.lanrage/identity.json holds
    /// the new pair. Key-bound peers only (not with --peer-id).
    Rotate,
}

pub async fn run(args: AuthArgs) -> anyhow::Result<()> {
    let mut cx = Context::open(args.client)?;
    let result = match args.command {
        AuthCommand::Logout => logout(&cx).await,
        AuthCommand::Rotate => rotate(&mut cx).await,
    };
    let saved = cx.save().await;
    result.and(saved)
}

async fn logout(cx: &Context) -> anyhow::Result<()> {
    let had_token = cx.http.current_token().await.is_some();
    cx.http.logout().await.map_err(describe)?;
    if cx.args.json {
        let status = if had_token { "revoked" } else { "no_token" };
        cx.print_json(&json!({"status": status}))?;
    } else if had_token {
        out!("logged out: the token of {} is revoked", cx.http.peer_id())?;
    } else {
        out!(
            "no token kept for {}: nothing to revoke",
            cx.http.server_url()
        )?;
    }
    Ok(())
}

async fn rotate(cx: &mut Context) -> anyhow::Result<()> {
    if cx.key.is_none() {
        return Err(anyhow!(
            "auth rotate binds a new key to a key-bound peer: run it without --peer-id"
        ));
    }
    let (key, secret, staged) = Identity::stage_new_key(&cx.dir)?;
    let rotated = match cx.http.rotate(key.clone()).await {
        Ok(rotated) => rotated,
        Err(error) => {
            // Whether the server rotated is unknown after a timeout: keep
            // the staged key then, since it may be the one now bound.
            if matches!(error, ClientError::Refused { .. }) {
                let _ = std::fs::remove_file(&staged);
            } else {
                eprintln!(
                    "warning: the rotation may have happened; the new private key is kept in {}",
                    staged.display()
                );
            }
            return Err(describe(error));
        }
    };
    cx.identity.replace_key(&cx.dir, &key, &secret)?;
    std::fs::remove_file(&staged).ok();
    cx.key = Some(key.public_key());
    if cx.args.json {
        cx.print_json(&json!({
            "peer_id": rotated.peer_id,
            "public_key": key.public_key(),
            "expires_at": rotated.expires_at,
        }))?;
    } else {
        out!(
            "rotated: {} now proves key {}",
            rotated.peer_id,
            key.public_key()
        )?;
    }
    Ok(())
}
