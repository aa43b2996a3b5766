//! The command line: `dormant serve` and the client commands that call its API.

mod client;
mod output;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use http::Method;

use crate::api::model::{ContainerList, ContainerView};
use crate::config::ServeConfig;
use client::ApiClient;

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
    Create(CreateArgs),
    /// List containers.
    Ls(ClientArgs),
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
    /// Build the demo workload into a local image `FROM scratch` (no registry needed).
    DemoImage {
        /// Image name to build.
        #[arg(long, default_value = crate::demo_image::DEFAULT_DEMO_TAG)]
        tag: String,
        /// Use this static demo binary instead of building it with cargo.
        #[arg(long, value_name = "PATH")]
        binary: Option<PathBuf>,
        /// Docker daemon to use; default: `DOCKER_HOST`, else the local socket.
        #[arg(long, env = "DORMANT_DOCKER_HOST", value_name = "URL")]
        docker_host: Option<String>,
    },
}

/// Where the API is and how to prove who we are.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// dormant's API URL.
    #[arg(
        long,
        env = "DORMANT_URL",
        default_value = "http://127.0.0.1:7070",
        value_name = "URL"
    )]
    pub url: String,
    /// API token. Default: the admin token in `./dormant-data/admin-token`.
    #[arg(
        long,
        env = "DORMANT_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Image to run (must be present locally; dormant never pulls).
    #[arg(long)]
    pub image: String,
    /// Port the app listens on inside the container (default: the one the image exposes).
    #[arg(long)]
    pub port: Option<u16>,
    /// Name; the container is reached at `<name>.<base-domain>`. Generated when absent.
    #[arg(long)]
    pub name: Option<String>,
    /// How many to create; with --name they are `name-1` .. `name-N`.
    #[arg(long)]
    pub count: Option<u32>,
    /// Environment variable `KEY=VALUE`; repeat for more.
    #[arg(long = "env", short = 'e', value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Memory limit, e.g. `256m`.
    #[arg(long)]
    pub memory: Option<String>,
    /// CPU limit in cores, e.g. `0.5`.
    #[arg(long)]
    pub cpus: Option<f64>,
    /// Idle time before the container sleeps, e.g. `10m`.
    #[arg(long)]
    pub idle_timeout: Option<String>,
    /// Path inside the container to keep in a named volume; repeat for more.
    #[arg(long = "volume", short = 'v', value_name = "PATH")]
    pub volumes: Vec<String>,
    #[command(flatten)]
    pub client: ClientArgs,
    /// Command to run instead of the image's (after `--`).
    #[arg(last = true, value_name = "CMD")]
    pub cmd: Vec<String>,
}

/// Runs a client command (every command but `serve`).
pub async fn run_client(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(_) => unreachable!("serve is handled by main"),
        Command::DemoImage {
            tag,
            binary,
            docker_host,
        } => {
            let runtime =
                crate::runtime::docker::DockerRuntime::connect(docker_host.as_deref()).await?;
            crate::demo_image::build_demo_image(runtime.client(), &tag, binary.as_deref()).await?;
            println!("built image {tag}");
            Ok(())
        }
        Command::Create(args) => create(args).await,
        Command::Ls(client) => {
            let api = connect(&client)?;
            let list: ContainerList = api.json(Method::GET, "/v1/containers", None).await?;
            if client.json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                output::print_containers(&list.containers);
            }
            Ok(())
        }
        Command::Get { name, client } => {
            let api = connect(&client)?;
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
            let api = connect(&client)?;
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
        Command::Wake { names, client } => transition(&client, "wake", names).await,
        Command::Archive { names, client } => transition(&client, "archive", names).await,
        Command::Stats(client) => {
            let api = connect(&client)?;
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
    let api = connect(client)?;
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

async fn create(args: CreateArgs) -> anyhow::Result<()> {
    let api = connect(&args.client)?;
    let mut body = serde_json::Map::new();
    body.insert("image".into(), args.image.into());
    let mut put = |key: &str, value: Option<serde_json::Value>| {
        if let Some(value) = value {
            body.insert(key.into(), value);
        }
    };
    put("port", args.port.map(Into::into));
    put("name", args.name.map(Into::into));
    put("count", args.count.map(Into::into));
    put("memory", args.memory.map(Into::into));
    put("cpus", args.cpus.map(Into::into));
    put("idle_timeout", args.idle_timeout.map(Into::into));
    put(
        "volumes",
        (!args.volumes.is_empty()).then(|| args.volumes.into()),
    );
    put("cmd", (!args.cmd.is_empty()).then(|| args.cmd.into()));
    if !args.env.is_empty() {
        let mut env = serde_json::Map::new();
        for pair in &args.env {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("--env `{pair}` must be KEY=VALUE"))?;
            env.insert(key.into(), value.into());
        }
        body.insert("env".into(), env.into());
    }
    let list: ContainerList = api
        .json(Method::POST, "/v1/containers", Some(body.into()))
        .await?;
    if args.client.json {
        println!("{}", serde_json::to_string_pretty(&list)?);
    } else {
        output::print_containers(&list.containers);
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

fn connect(args: &ClientArgs) -> anyhow::Result<ApiClient> {
    let token = match &args.token {
        Some(token) => token.clone(),
        None => {
            let path =
                PathBuf::from(ServeConfig::DEFAULT_DATA_DIR).join(crate::token::ADMIN_TOKEN_FILE);
            std::fs::read_to_string(&path)
                .map(|t| t.trim().to_owned())
                .map_err(|e| {
                    anyhow::anyhow!(
                        "no token: pass --token or DORMANT_TOKEN (cannot read {}: {e})",
                        path.display()
                    )
                })?
        }
    };
    ApiClient::new(&args.url, token)
}
