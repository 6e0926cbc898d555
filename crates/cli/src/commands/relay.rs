//! `relay list | register`.

use clap::{Args, Subcommand};
use lanrage_client::ControlPlane;
use lanrage_proto::{IpOrUnknown, Region, RelayId, RelayRegistration, RelaysResponse};

use super::{ClientArgs, Context, describe, party::print_table};

#[derive(Debug, Args)]
pub struct RelayArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(subcommand)]
    command: RelayCommand,
}

#[derive(Debug, Subcommand)]
enum RelayCommand {
    /// List relays, all or one region's.
    List {
        #[arg(long, value_parser = parse_region)]
        region: Option<Region>,
    },
    /// Register (or refresh) a relay: needs the operator's relay key.
    Register {
        #[arg(value_parser = parse_relay_id)]
        relay_id: RelayId,
        /// The relay's public address.
        #[arg(long)]
        public_ip: IpOrUnknown,
        /// The relay's port.
        #[arg(long)]
        port: u16,
        #[arg(long, value_parser = parse_region, default_value = "unknown")]
        region: Region,
        /// How many peers it takes.
        #[arg(long, default_value_t = 100)]
        capacity: u32,
        /// The operator's secret (the server's LANRAGE_RELAY_KEY).
        #[arg(long, env = "LANRAGE_RELAY_KEY", hide_env_values = true)]
        relay_key: String,
    },
}

fn parse_region(value: &str) -> Result<Region, String> {
    Region::parse(value).map_err(|e| e.to_string())
}

fn parse_relay_id(value: &str) -> Result<RelayId, String> {
    RelayId::parse(value).map_err(|e| e.to_string())
}

pub async fn run(args: RelayArgs) -> anyhow::Result<()> {
    let mut cx = Context::open(args.client)?;
    let result = match args.command {
        RelayCommand::List { region } => list(&cx, region).await,
        RelayCommand::Register {
            relay_id,
            public_ip,
            port,
            region,
            capacity,
            relay_key,
        } => {
            let relay = RelayRegistration {
                relay_id,
                public_ip,
                port,
                region,
                capacity,
            };
            register(&cx, &relay_key, &relay).await
        }
    };
    let saved = cx.save().await;
    result.and(saved)
}

async fn list(cx: &Context, region: Option<Region>) -> anyhow::Result<()> {
    let relays = match &region {
        Some(region) => cx.http.relays_by_region(region).await,
        None => cx.http.list_relays().await,
    }
    .map_err(describe)?;
    if cx.args.json {
        return cx.print_json(&RelaysResponse { relays });
    }
    if relays.is_empty() {
        out!("No relays registered.")?;
        return Ok(());
    }
    let mut rows = vec![[
        "RELAY".to_owned(),
        "REGION".to_owned(),
        "ADDRESS".to_owned(),
        "CAPACITY".to_owned(),
        "REGISTERED".to_owned(),
    ]];
    for relay in relays {
        rows.push([
            relay.relay_id.to_string(),
            relay.region.to_string(),
            format!("{}:{}", relay.public_ip, relay.port),
            relay.capacity.to_string(),
            relay.registered_at.to_string(),
        ]);
    }
    print_table(&rows)?;
    Ok(())
}

async fn register(cx: &Context, relay_key: &str, relay: &RelayRegistration) -> anyhow::Result<()> {
    let answer = cx
        .http
        .register_relay(relay_key, relay)
        .await
        .map_err(describe)?;
    if cx.args.json {
        return cx.print_json(&answer);
    }
    out!(
        "Relay {} registered in region {} at {}:{}.",
        answer.relay_id,
        relay.region,
        relay.public_ip,
        relay.port
    )?;
    Ok(())
}
