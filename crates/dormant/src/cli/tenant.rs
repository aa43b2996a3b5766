//! `dormant tenant create|ls|rotate|revoke|rm`: tenants and their API tokens.

use clap::{Args, Subcommand};
use http::Method;
use serde_json::{Map, Value};

use super::client_args::ClientArgs;
use super::output::print_table;
use crate::api::tenant_model::{NewTokenView, TenantCreated, TenantList, TokenList};

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant (admin) and print its API token, shown only this once.
    Create {
        /// Tenant id: lowercase letters, digits and inner hyphens, at most 32.
        id: String,
        #[command(flatten)]
        quotas: QuotaArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List tenants with their quotas and usage (admin).
    Ls(ClientArgs),
    /// Replace a tenant's token by a new one, printed once; the old one stops
    /// working at once. Without TOKEN_ID, the tenant's only live token (or a
    /// new first one if it has none).
    Rotate {
        id: String,
        /// Public id of the token to replace, e.g. `tok_1a2b3c4d`.
        token_id: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Revoke a tenant's token; it stops working at once.
    Revoke {
        id: String,
        token_id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete tenants (admin); refused while one still has containers.
    Rm {
        #[arg(required = true)]
        ids: Vec<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// Quotas of a new tenant; each absent one is unlimited.
#[derive(Debug, Args)]
pub struct QuotaArgs {
    /// Containers it may have, whatever their state.
    #[arg(long, value_name = "N")]
    pub max_containers: Option<u64>,
    /// Containers it may have running at once.
    #[arg(long, value_name = "N")]
    pub max_running: Option<u64>,
    /// Sum of its running containers' memory limits, e.g. `2g`.
    #[arg(long, value_name = "SIZE")]
    pub max_memory: Option<String>,
    /// Disk its snapshots may take, e.g. `10g`.
    #[arg(long, value_name = "SIZE")]
    pub max_snapshot: Option<String>,
}

impl QuotaArgs {
    fn body(&self) -> Value {
        let mut quotas = Map::new();
        let mut put = |key: &str, value: Option<Value>| {
            if let Some(value) = value {
                quotas.insert(key.into(), value);
            }
        };
        put("max_containers", self.max_containers.map(Into::into));
        put("max_running", self.max_running.map(Into::into));
        put("max_memory", self.max_memory.clone().map(Into::into));
        put("max_snapshot", self.max_snapshot.clone().map(Into::into));
        Value::Object(quotas)
    }
}

pub async fn run(command: TenantCommand) -> anyhow::Result<()> {
    match command {
        TenantCommand::Create { id, quotas, client } => {
            let api = client.connect()?;
            let body = serde_json::json!({ "id": id, "quotas": quotas.body() });
            let created: TenantCreated = api.json(Method::POST, "/v1/tenants", Some(body)).await?;
            if client.json {
                println!("{}", serde_json::to_string_pretty(&created)?);
            } else {
                println!("created tenant {}", created.tenant.id);
                print_token(&created.token);
            }
            Ok(())
        }
        TenantCommand::Ls(client) => {
            let api = client.connect()?;
            let list: TenantList = api.json(Method::GET, "/v1/tenants", None).await?;
            if client.json {
                println!("{}", serde_json::to_string_pretty(&list)?);
                return Ok(());
            }
            let limit = |value: Option<String>| value.unwrap_or_else(|| "-".into());
            let rows: Vec<Vec<String>> = list
                .tenants
                .iter()
                .map(|t| {
                    let q = &t.quotas;
                    vec![
                        t.id.clone(),
                        format!(
                            "{}/{}",
                            t.usage.containers,
                            limit(q.max_containers.map(|n| n.to_string()))
                        ),
                        format!(
                            "{}/{}",
                            t.usage.running,
                            limit(q.max_running.map(|n| n.to_string()))
                        ),
                        format!("{}/{}", t.usage.memory, limit(q.max_memory.clone())),
                        limit(q.max_snapshot.clone()),
                    ]
                })
                .collect();
            print_table(
                &["TENANT", "CONTAINERS", "RUNNING", "MEMORY", "MAX SNAPSHOT"],
                &rows,
            );
            Ok(())
        }
        TenantCommand::Rotate {
            id,
            token_id,
            client,
        } => {
            let api = client.connect()?;
            let token_id = match token_id {
                Some(token_id) => Some(token_id),
                None => only_token(&api, &id).await?,
            };
            let path = match &token_id {
                Some(token_id) => format!("/v1/tenants/{id}/tokens/{token_id}/rotate"),
                None => format!("/v1/tenants/{id}/tokens"),
            };
            let token: NewTokenView = api.json(Method::POST, &path, None).await?;
            if client.json {
                println!("{}", serde_json::to_string_pretty(&token)?);
            } else {
                if let Some(old) = token_id {
                    println!("revoked {old}");
                }
                print_token(&token);
            }
            Ok(())
        }
        TenantCommand::Revoke {
            id,
            token_id,
            client,
        } => {
            let api = client.connect()?;
            api.send(
                Method::DELETE,
                &format!("/v1/tenants/{id}/tokens/{token_id}"),
                None,
            )
            .await?;
            if !client.json {
                println!("revoked {token_id}");
            }
            Ok(())
        }
        TenantCommand::Rm { ids, client } => {
            let api = client.connect()?;
            for id in ids {
                api.send(Method::DELETE, &format!("/v1/tenants/{id}"), None)
                    .await?;
                if !client.json {
                    println!("deleted tenant {id}");
                }
            }
            Ok(())
        }
    }
}

/// The tenant's one live token, `None` if it has none; an error naming
/// them when it has several.
async fn only_token(api: &super::client::ApiClient, id: &str) -> anyhow::Result<Option<String>> {
    let list: TokenList = api
        .json(Method::GET, &format!("/v1/tenants/{id}/tokens"), None)
        .await?;
    match list.tokens.as_slice() {
        [] => Ok(None),
        [only] => Ok(Some(only.id.clone())),
        many => {
            let ids: Vec<&str> = many.iter().map(|t| t.id.as_str()).collect();
            anyhow::bail!(
                "tenant `{id}` has {} live tokens ({}); name the one to rotate",
                ids.len(),
                ids.join(", ")
            )
        }
    }
}

fn print_token(token: &NewTokenView) {
    println!("token id: {}", token.id);
    println!("token:    {}", token.token);
    println!("(shown only now: dormant keeps only its hash; pass it as --token or DORMANT_TOKEN)");
}
