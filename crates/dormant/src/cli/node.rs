//! `dormant node ls`: the nodes sharing this dormant's store.

use clap::Subcommand;
use http::Method;

use super::client_args::ClientArgs;
use super::output::print_table;
use crate::api::nodes::NodeList;

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// List the nodes sharing the store: address, live or not (by their
    /// heartbeats), and their containers by state (admin).
    Ls(ClientArgs),
}

pub async fn run(command: NodeCommand) -> anyhow::Result<()> {
    match command {
        NodeCommand::Ls(client) => {
            let api = client.connect()?;
            let list: NodeList = api.json(Method::GET, "/v1/nodes", None).await?;
            if client.json {
                println!("{}", serde_json::to_string_pretty(&list)?);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = list
                .nodes
                .iter()
                .map(|node| {
                    let name = if node.this_node {
                        format!("{} (this)", node.name)
                    } else {
                        node.name.clone()
                    };
                    let heartbeat = node
                        .seconds_since_heartbeat
                        .map_or_else(|| "never".to_owned(), |s| format!("{s:.1}s ago"));
                    let containers: Vec<String> = node
                        .containers
                        .iter()
                        .map(|(state, count)| format!("{count} {state}"))
                        .collect();
                    vec![
                        name,
                        node.advertise_addr.clone().unwrap_or_else(|| "-".into()),
                        if node.live { "live" } else { "dead" }.to_owned(),
                        heartbeat,
                        if containers.is_empty() {
                            "none".to_owned()
                        } else {
                            containers.join(", ")
                        },
                    ]
                })
                .collect();
            print_table(
                &["NODE", "ADDRESS", "STATUS", "HEARTBEAT", "CONTAINERS"],
                &rows,
            );
            if !list.unassigned.is_empty() {
                let unassigned: Vec<String> = list
                    .unassigned
                    .iter()
                    .map(|(state, count)| format!("{count} {state}"))
                    .collect();
                println!("on no node: {}", unassigned.join(", "));
            }
            Ok(())
        }
    }
}
