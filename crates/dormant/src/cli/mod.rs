//! The command line: `dormant serve` and the client commands that call its API.

mod access;
mod client;
mod client_args;
mod create;
mod events;
mod node;
mod output;
mod tenant;

use clap::{Parser, Subcommand};
use http::Method;

use crate::api::model::{ContainerList, ContainerView};
use crate::config::ServeConfig;
use client::ApiClient;
pub use client_args::ClientArgs;
pub use create::CreateArgs;

/// dormant: users' containers at their own hostnames, asleep when idle,
/// awake on the next request.
#[derive(Debug, Parser)]
#[command(name = "dormant", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run dormant: the API, the proxy and the lifecycle, on this Docker host.
    Serve(Box<ServeConfig>),
    /// Create one or more containers.
    Create(Box<CreateArgs>),
    /// List containers.
    Ls {
        /// Redraw the table whenever a container changes (until Ctrl-C).
        #[arg(long)]
        watch: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Follow container events as they happen, one line each (until Ctrl-C);
    /// `--json` prints each event as JSON.
    Events {
        /// Only this container's events.
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show one container.
    Get {
        /// Container name.
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete containers and their volumes.
    Rm {
        /// Container names.
        #[arg(required = true)]
        names: Vec<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Put containers to sleep now (stopped; their next request wakes them).
    Sleep {
        /// Container names.
        #[arg(required = true)]
        names: Vec<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Pause running containers now (napping: no CPU, memory kept); their
    /// next request unpauses them in milliseconds.
    Nap {
        /// Container names.
        #[arg(required = true)]
        names: Vec<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Wake containers and return once they answer.
    Wake {
        /// Container names.
        #[arg(required = true)]
        names: Vec<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Archive containers now: their changes become one compressed snapshot
    /// and their Docker containers are removed; the next request restores them.
    Archive {
        /// Container names.
        #[arg(required = true)]
        names: Vec<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show counts by state, memory against the budget, snapshot disk use and dormant's memory.
    Stats(ClientArgs),
    /// Make a container's URL `public` or `private` (reached only with an
    /// access token, an API token or a login link's cookie).
    Access {
        /// Container name.
        name: String,
        #[arg(value_enum)]
        access: crate::domain::Access,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// A private container's access tokens: `token create|ls|rm`.
    #[command(subcommand)]
    Token(access::TokenCommand),
    /// Print a one-time login link for a private container.
    LoginLink(Box<access::LoginLinkArgs>),
    /// Manage tenants and their API tokens.
    #[command(subcommand)]
    Tenant(tenant::TenantCommand),
    /// The nodes sharing this dormant's store: `node ls`.
    #[command(subcommand)]
    Node(node::NodeCommand),
    /// Build the demo workload into a local image `FROM scratch` (no registry needed): this
    /// `dormant` executable and the shared objects it loads, running `dormant demo-serve`.
    DemoImage {
        /// Image name to build.
        #[arg(long, default_value = crate::demo_image::DEFAULT_DEMO_TAG, value_name = "NAME")]
        tag: String,
        /// Docker daemon to use; default: `DOCKER_HOST`, else the local socket.
        #[arg(long, env = "DORMANT_DOCKER_HOST", value_name = "URL")]
        docker_host: Option<String>,
    },
    /// Run the demo workload (what the demo image runs); `demo-serve --help` lists its flags.
    #[command(hide = true, disable_help_flag = true)]
    DemoServe {
        /// The demo's own flags, passed through untouched.
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "ARGS"
        )]
        args: Vec<String>,
    },
}

/// Runs a client command (every command but `serve`).
pub async fn run_client(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(_) | Command::DemoServe { .. } => {
            anyhow::bail!("serve and demo-serve are not client commands")
        }
        Command::DemoImage { tag, docker_host } => {
            let runtime =
                crate::runtime::docker::DockerRuntime::connect(docker_host.as_deref()).await?;
            crate::demo_image::build_demo_image(runtime.client(), &tag).await?;
            println!("built image {tag}");
            Ok(())
        }
        Command::Create(args) => create::create(*args).await,
        Command::Tenant(command) => tenant::run(command).await,
        Command::Node(command) => node::run(command).await,
        Command::Ls {
            watch: true,
            client,
        } => events::watch_list(client).await,
        Command::Events { name, client } => events::follow(client, name).await,
        Command::Ls { client, .. } => {
            let api = client.connect()?;
            let list: ContainerList = api.json(Method::GET, "/v1/containers", None).await?;
            if client.json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                output::print_containers(&list.containers);
            }
            Ok(())
        }
        Command::Get { name, client } => {
            let api = client.connect()?;
            let container: ContainerView = api
                .json(Method::GET, &format!("/v1/containers/{name}"), None)
                .await?;
            if client.json {
                println!("{}", serde_json::to_string_pretty(&container)?);
            } else {
                output::print_container(&container);
            }
            Ok(())
        }
        Command::Rm { names, client } => {
            let api = client.connect()?;
            for name in names {
                api.send(Method::DELETE, &format!("/v1/containers/{name}"), None)
                    .await?;
                if !client.json {
                    println!("deleted {name}");
                }
            }
            Ok(())
        }
        Command::Sleep { names, client } => transition(&client, "sleep", names).await,
        Command::Nap { names, client } => transition(&client, "nap", names).await,
        Command::Wake { names, client } => transition(&client, "wake", names).await,
        Command::Archive { names, client } => transition(&client, "archive", names).await,
        Command::Access {
            name,
            access,
            client,
        } => access::set_access(&name, access, &client).await,
        Command::Token(command) => access::token(command).await,
        Command::LoginLink(args) => access::login_link(*args).await,
        Command::Stats(client) => {
            let api = client.connect()?;
            let stats: crate::api::model::Stats = api.json(Method::GET, "/v1/stats", None).await?;
            if client.json {
                println!("{}", serde_json::to_string_pretty(&stats)?);
            } else {
                output::print_stats(&stats);
            }
            Ok(())
        }
    }
}

/// `POST /v1/containers/{name}/{verb}` for each name; prints the outcome.
async fn transition(client: &ClientArgs, verb: &str, names: Vec<String>) -> anyhow::Result<()> {
    let api = client.connect()?;
    let mut done = Vec::with_capacity(names.len());
    for name in names {
        let started = std::time::Instant::now();
        let path = format!("/v1/containers/{name}/{verb}");
        let call = api.json::<ContainerView>(Method::POST, &path, None);
        let container = if client.json {
            call.await?
        } else {
            with_progress(&api, &name, call).await?
        };
        if !client.json {
            println!(
                "{name}: {} ({} ms)",
                container.state,
                started.elapsed().as_millis()
            );
        }
        done.push(container);
    }
    if client.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&ContainerList { containers: done })?
        );
    }
    Ok(())
}

/// Awaits `call`, printing an archive's or restore's progress for `name` to
/// stderr every half second while it lasts (large snapshots take a while).
async fn with_progress<T>(
    api: &ApiClient,
    name: &str,
    call: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tokio::pin!(call);
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
    tick.tick().await;
    let mut shown = false;
    loop {
        tokio::select! {
            outcome = &mut call => {
                if shown {
                    eprintln!();
                }
                return outcome;
            }
            _ = tick.tick() => {
                let path = format!("/v1/containers/{name}");
                if let Ok(view) = api.json::<ContainerView>(Method::GET, &path, None).await {
                    if let Some(bytes) = view.progress_bytes {
                        eprint!("\r{name}: {} {:.1} MB ", view.state, bytes as f64 / 1e6);
                        shown = true;
                    }
                }
            }
        }
    }
}
