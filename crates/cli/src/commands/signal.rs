//! `signal send | poll`: hole-punching messages between party members.

use clap::{Args, Subcommand};
use lanrage_client::ControlPlane;
use lanrage_proto::{PartyId, PeerId, SignalData, SignalsResponse, StatusResponse};

use super::{ClientArgs, Context, describe, parse_party_id, parse_peer_id};

#[derive(Debug, Args)]
pub struct SignalArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(subcommand)]
    command: SignalCommand,
}

#[derive(Debug, Subcommand)]
enum SignalCommand {
    /// Send a signal (a JSON object) to another member of the party.
    Send {
        /// The member to send it to.
        #[arg(value_parser = parse_peer_id)]
        to: PeerId,
        /// The signal: a JSON object of at most 16 KiB, e.g. '{"type":"offer"}'.
        #[arg(value_parser = parse_signal)]
        data: SignalData,
        /// The party (default: your current party).
        #[arg(long, value_parser = parse_party_id)]
        party: Option<PartyId>,
    },
    /// Print (and take) the signals waiting for you.
    Poll {
        /// The party (default: your current party).
        #[arg(long, value_parser = parse_party_id)]
        party: Option<PartyId>,
    },
}

fn parse_signal(value: &str) -> Result<SignalData, String> {
    let json: serde_json::Value =
        serde_json::from_str(value).map_err(|e| format!("not JSON: {e}"))?;
    SignalData::parse(json).map_err(|e| e.to_string())
}

pub async fn run(args: SignalArgs) -> anyhow::Result<()> {
    let mut cx = Context::open(args.client)?;
    let result = match args.command {
        SignalCommand::Send { to, data, party } => send(&cx, to, data, party).await,
        SignalCommand::Poll { party } => poll(&cx, party).await,
    };
    let saved = cx.save().await;
    result.and(saved)
}

async fn send(
    cx: &Context,
    to: PeerId,
    data: SignalData,
    party: Option<PartyId>,
) -> anyhow::Result<()> {
    let party_id = cx.party(party)?;
    cx.http
        .send_signal(&party_id, &to, data)
        .await
        .map_err(describe)?;
    if cx.args.json {
        return cx.print_json(&StatusResponse::new("queued"));
    }
    out!("Signal sent to {to}.")?;
    Ok(())
}

async fn poll(cx: &Context, party: Option<PartyId>) -> anyhow::Result<()> {
    let party_id = cx.party(party)?;
    let signals = cx.http.poll_signals(&party_id).await.map_err(describe)?;
    if cx.args.json {
        return cx.print_json(&SignalsResponse { signals });
    }
    if signals.is_empty() {
        out!("No signals waiting.")?;
    }
    for signal in signals {
        out!(
            "{} from {}: {}",
            signal.sent_at,
            signal.from_peer_id,
            serde_json::to_string(&signal.signal_data)?
        )?;
    }
    Ok(())
}
