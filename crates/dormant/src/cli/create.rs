//! `dormant create`: every field of the API's create request as a flag.

use clap::Args;
use http::Method;
use serde_json::{Map, Value};

use super::client_args::ClientArgs;
use super::output;
use crate::api::model::ContainerList;
use crate::domain::{Access, WakeStrategy};

/// The flags of `dormant create`, one per field of `POST /v1/containers`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Image to run (must be present locally; dormant never pulls).
    #[arg(long, value_name = "IMAGE")]
    pub image: String,
    /// Port the app listens on inside the container (default: the one the image exposes).
    #[arg(long, value_name = "PORT")]
    pub port: Option<u16>,
    /// Name; the container is reached at `<name>.<base-domain>`. Generated when absent.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// How many to create (1..100), all or none; with --name they are `name-1` .. `name-N`.
    #[arg(long, value_name = "N")]
    pub count: Option<u32>,
    /// Environment variable `KEY=VALUE`; repeat for more.
    #[arg(long = "env", short = 'e', value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Memory limit, e.g. `256m` (default: the server's --default-memory).
    #[arg(long, value_name = "SIZE")]
    pub memory: Option<String>,
    /// CPU limit in cores, e.g. `0.5`.
    #[arg(long, value_name = "CORES")]
    pub cpus: Option<f64>,
    /// Idle time before the container sleeps, e.g. `10m` (default: the server's --idle-timeout).
    #[arg(long, value_name = "DURATION")]
    pub idle_timeout: Option<String>,
    /// Path inside the container to keep in a named volume, e.g. `/data`; repeat for more.
    #[arg(long = "volume", short = 'v', value_name = "PATH")]
    pub volumes: Vec<String>,
    /// Path that must answer below 500 before the container counts as ready, e.g. `/healthz`
    /// (default: any HTTP answer on `/`).
    #[arg(long, value_name = "PATH")]
    pub ready_path: Option<String>,
    /// How requests are served while it wakes: `hold` them until it answers, `redirect` (307
    /// once it answers) or `page` (a "waking up" page for browsers). Default: the server's
    /// --wake-strategy.
    #[arg(long, value_enum, value_name = "STRATEGY")]
    pub wake: Option<WakeStrategy>,
    /// Time asleep before it is archived, e.g. `7d` (default: the server's --archive-after).
    #[arg(long, value_name = "DURATION")]
    pub archive_after: Option<String>,
    /// Time idle before it is paused (napping: no CPU, memory kept; woken in
    /// milliseconds), e.g. `60s`; `0` never (default: the server's --nap-after).
    #[arg(long, value_name = "DURATION")]
    pub nap_after: Option<String>,
    /// A capability to add back, e.g. `NET_RAW`; only those the server's
    /// --allowed-capabilities lists. Repeat for more.
    #[arg(long = "cap-add", value_name = "CAPABILITY")]
    pub cap_add: Vec<String>,
    /// Who may reach its URL: `public` or `private` (a container access token,
    /// an API token or a login link's cookie). Default: the server's --default-access.
    #[arg(long, value_enum, value_name = "ACCESS")]
    pub access: Option<Access>,
    /// Admin only: create them for this tenant (they count against its quotas).
    #[arg(long, value_name = "TENANT")]
    pub tenant: Option<String>,
    #[command(flatten)]
    pub client: ClientArgs,
    /// Command to run instead of the image's, after `--` (e.g. `-- --startup-delay 2s`).
    #[arg(last = true, value_name = "CMD")]
    pub cmd: Vec<String>,
}

impl CreateArgs {
    /// The create request's JSON body: the fields given, nothing else.
    fn body(&self) -> anyhow::Result<Value> {
        let mut body = Map::new();
        body.insert("image".into(), self.image.clone().into());
        let mut put = |key: &str, value: Option<Value>| {
            if let Some(value) = value {
                body.insert(key.into(), value);
            }
        };
        put("port", self.port.map(Into::into));
        put("name", self.name.clone().map(Into::into));
        put("count", self.count.map(Into::into));
        put("memory", self.memory.clone().map(Into::into));
        put("cpus", self.cpus.map(Into::into));
        put("idle_timeout", self.idle_timeout.clone().map(Into::into));
        put(
            "volumes",
            (!self.volumes.is_empty()).then(|| self.volumes.clone().into()),
        );
        put("ready_path", self.ready_path.clone().map(Into::into));
        put("wake", self.wake.map(|w| w.as_str().into()));
        put("archive_after", self.archive_after.clone().map(Into::into));
        put("nap_after", self.nap_after.clone().map(Into::into));
        put("access", self.access.map(|a| a.as_str().into()));
        put("tenant", self.tenant.clone().map(Into::into));
        put(
            "cap_add",
            (!self.cap_add.is_empty()).then(|| self.cap_add.clone().into()),
        );
        put(
            "cmd",
            (!self.cmd.is_empty()).then(|| self.cmd.clone().into()),
        );
        if !self.env.is_empty() {
            let mut env = Map::new();
            for pair in &self.env {
                let (key, value) = pair
                    .split_once('=')
                    .ok_or_else(|| anyhow::anyhow!("--env `{pair}` must be KEY=VALUE"))?;
                env.insert(key.into(), value.into());
            }
            body.insert("env".into(), env.into());
        }
        Ok(body.into())
    }
}

pub async fn create(args: CreateArgs) -> anyhow::Result<()> {
    let body = args.body()?;
    let api = args.client.connect()?;
    let list: ContainerList = api.json(Method::POST, "/v1/containers", Some(body)).await?;
    if args.client.json {
        println!("{}", serde_json::to_string_pretty(&list)?);
    } else {
        output::print_containers(&list.containers);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::create_request::{parse, CreateDefaults};
    use crate::api::model::CreateContainers;
    use clap::Parser;
    use utoipa::openapi::{RefOr, Schema};
    use utoipa::PartialSchema;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        create: CreateArgs,
    }

    /// Every field of the API's create request, each set by its own flag.
    #[test]
    fn every_create_field_has_a_flag_the_api_accepts() {
        let cli = Cli::try_parse_from([
            "create",
            "--image",
            "demo",
            "--port",
            "8080",
            "--name",
            "lab",
            "--count",
            "2",
            "-e",
            "A=1",
            "--env",
            "B=x=y",
            "--memory",
            "64m",
            "--cpus",
            "0.5",
            "--idle-timeout",
            "30s",
            "-v",
            "/data",
            "--volume",
            "/home",
            "--ready-path",
            "/healthz",
            "--wake",
            "page",
            "--archive-after",
            "7d",
            "--nap-after",
            "30s",
            "--cap-add",
            "NET_RAW",
            "--access",
            "private",
            "--tenant",
            "acme",
            "--",
            "--startup-delay",
            "2s",
        ])
        .unwrap();
        let body = cli.create.body().unwrap();
        let fields: Vec<&String> = body.as_object().unwrap().keys().collect();
        let RefOr::T(Schema::Object(schema)) = CreateContainers::schema() else {
            panic!("the create request's schema is not an object");
        };
        let api: Vec<&String> = schema.properties.keys().collect();
        assert_eq!(
            fields, api,
            "the flags give these fields, the API has those"
        );
        assert_eq!(body["env"]["B"], "x=y");
        assert_eq!(body["cmd"], serde_json::json!(["--startup-delay", "2s"]));

        let defaults = CreateDefaults {
            memory_bytes: 512 << 20,
            idle_timeout: std::time::Duration::from_secs(900),
            max_cpus: 2.0,
            allowed_capabilities: "NET_RAW".parse().unwrap(),
            default_access: Access::Public,
        };
        let request = parse(body.to_string().as_bytes(), &defaults, "admin").unwrap();
        assert_eq!(request.names, ["lab-1", "lab-2"]);
        assert_eq!(request.wake, Some(WakeStrategy::Page));
        assert_eq!(request.ready_path.as_deref(), Some("/healthz"));
        assert_eq!(
            request.archive_after,
            Some(std::time::Duration::from_secs(7 * 86400))
        );
        assert_eq!(request.nap_after, Some(std::time::Duration::from_secs(30)));
        assert_eq!(request.volumes, ["/data", "/home"]);
        assert_eq!(request.port, Some(8080));
        assert_eq!(request.cap_add, ["NET_RAW"]);
        assert_eq!(request.access, Access::Private);
        assert_eq!(request.owner, "acme");
    }

    #[test]
    fn an_env_without_equals_is_refused_before_any_call() {
        let cli = Cli::try_parse_from(["create", "--image", "demo", "-e", "NOPE"]).unwrap();
        let err = cli.create.body().unwrap_err().to_string();
        assert!(err.contains("NOPE") && err.contains("KEY=VALUE"), "{err}");
    }
}
