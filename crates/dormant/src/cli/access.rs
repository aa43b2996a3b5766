//! `dormant access`, `dormant token` and `dormant login-link`: private
//! container URLs from the command line.

use clap::{Args, Subcommand};
use http::Method;
use serde_json::{json, Map, Value};

use super::client_args::ClientArgs;
use super::output;
use crate::api::model::{ContainerTokenCreated, ContainerTokenList, ContainerView, LoginLink};
use crate::domain::Access;

/// `dormant token ...`: a container's access tokens.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make an access token for a container; it is printed once.
    Create {
        /// Container name.
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List a container's access tokens (ids only).
    Ls {
        /// Container name.
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Revoke an access token; it stops working at once.
    Rm {
        /// Container name.
        name: String,
        /// Token id (`tok_...`).
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// `dormant login-link NAME`.
#[derive(Debug, Args)]
pub struct LoginLinkArgs {
    /// Container name.
    pub name: String,
    /// How long the link may be used, e.g. `5m` (1s..10m; default 60s).
    #[arg(long, value_name = "DURATION")]
    pub ttl: Option<String>,
    /// Where the browser goes once signed in, e.g. `/dashboard` (default `/`).
    #[arg(long, value_name = "PATH")]
    pub path: Option<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

impl LoginLinkArgs {
    fn body(&self) -> Value {
        let mut body = Map::new();
        if let Some(ttl) = &self.ttl {
            body.insert("ttl".into(), ttl.clone().into());
        }
        if let Some(path) = &self.path {
            body.insert("path".into(), path.clone().into());
        }
        body.into()
    }
}

pub async fn set_access(name: &str, access: Access, client: &ClientArgs) -> anyhow::Result<()> {
    let api = client.connect()?;
    let path = format!("/v1/containers/{name}/access");
    let view: ContainerView = api
        .json(Method::POST, &path, Some(json!({ "access": access })))
        .await?;
    if client.json {
        println!("{}", serde_json::to_string_pretty(&view)?);
    } else {
        println!("{name}: {}", view.access.as_str());
    }
    Ok(())
}

pub async fn token(command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create { name, client } => {
            let api = client.connect()?;
            let path = format!("/v1/containers/{name}/tokens");
            let made: ContainerTokenCreated = api.json(Method::POST, &path, None).await?;
            if client.json {
                println!("{}", serde_json::to_string_pretty(&made)?);
            } else {
                eprintln!(
                    "{}: token {} (shown once; send it as `Authorization: Bearer <token>`)",
                    made.container, made.id
                );
                println!("{}", made.token);
            }
        }
        TokenCommand::Ls { name, client } => {
            let api = client.connect()?;
            let path = format!("/v1/containers/{name}/tokens");
            let list: ContainerTokenList = api.json(Method::GET, &path, None).await?;
            if client.json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                output::print_tokens(&list.tokens);
            }
        }
        TokenCommand::Rm { name, id, client } => {
            let api = client.connect()?;
            api.send(
                Method::DELETE,
                &format!("/v1/containers/{name}/tokens/{id}"),
                None,
            )
            .await?;
            if !client.json {
                println!("revoked {id}");
            }
        }
    }
    Ok(())
}

pub async fn login_link(args: LoginLinkArgs) -> anyhow::Result<()> {
    let api = args.client.connect()?;
    let path = format!("/v1/containers/{}/login-link", args.name);
    let link: LoginLink = api.json(Method::POST, &path, Some(args.body())).await?;
    if args.client.json {
        println!("{}", serde_json::to_string_pretty(&link)?);
    } else {
        eprintln!("works once, until {}", link.expires_at);
        println!("{}", link.url);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::model::LoginLinkRequest;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        link: LoginLinkArgs,
    }

    #[test]
    fn the_login_link_flags_are_the_api_fields() {
        let cli =
            Cli::try_parse_from(["login-link", "alice", "--ttl", "5m", "--path", "/x"]).unwrap();
        let body = cli.link.body();
        let request: LoginLinkRequest = serde_json::from_value(body).unwrap();
        assert_eq!(request.ttl.as_deref(), Some("5m"));
        assert_eq!(request.path.as_deref(), Some("/x"));
        let bare = Cli::try_parse_from(["login-link", "alice"]).unwrap();
        assert_eq!(bare.link.body(), json!({}));
    }
}
