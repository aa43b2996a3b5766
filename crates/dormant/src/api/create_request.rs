//! Reading a create request: the JSON body, checked field by field, becomes
//! a `NewContainers` for lifecycle. Every rejection names its field.

use std::path::{Component, Path};
use std::time::Duration;

use serde_json::Value;

use super::error::ApiError;
use super::model::CreateContainers;
use crate::domain::Access;
use crate::lifecycle::{names, NewContainers};
use crate::runtime::capabilities::{self, AllowedCapabilities};
use crate::units::parse_memory;

/// Most containers one request may create.
pub const MAX_COUNT: u32 = 100;
/// The longest duration a setting takes: long enough for "never" in
/// practice, short enough that adding it to any timestamp cannot overflow.
const LONGEST_DURATION: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Docker refuses memory limits under 6 MiB.
const MIN_MEMORY: u64 = 6 << 20;
const MAX_VOLUMES: usize = 16;

/// Fields a container engine offers that would let a container reach the
/// host. They are refused by name, with the reason, rather than as merely
/// "unknown".
const FORBIDDEN_FIELDS: &[&str] = &[
    "privileged",
    "capabilities",
    "devices",
    "device_requests",
    "network_mode",
    "network",
    "host_network",
    "pid_mode",
    "ipc_mode",
    "userns_mode",
    "binds",
    "mounts",
    "security_opt",
    "volumes_from",
    "sysctls",
    "host_config",
    "hostconfig",
    "HostConfig",
    "Privileged",
];

/// Defaults for fields a request leaves out.
#[derive(Debug, Clone)]
pub struct CreateDefaults {
    pub memory_bytes: u64,
    pub idle_timeout: Duration,
    pub max_cpus: f64,
    /// `--allowed-capabilities`: all `cap_add` may name.
    pub allowed_capabilities: AllowedCapabilities,
    /// `--default-access`: who may reach a container's URL unless it says.
    pub default_access: Access,
}

/// Parses and checks a create body.
pub fn parse(
    body: &[u8],
    defaults: &CreateDefaults,
    owner: &str,
) -> Result<NewContainers, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("the body is not valid JSON: {e}"),
        )
    })?;
    let Value::Object(fields) = &value else {
        return Err(ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "invalid_json",
            "the body must be a JSON object",
        ));
    };
    if let Some(field) = fields
        .keys()
        .find(|k| FORBIDDEN_FIELDS.contains(&k.as_str()))
    {
        return Err(ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "forbidden_field",
            format!("field `{field}` is not allowed: dormant never gives a container privileged mode, host mounts, the host network or devices (capabilities the admin allows are added with `cap_add`)"),
        ));
    }
    let request: CreateContainers = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            // A top-level problem: an unknown or missing field. serde names it.
            ApiError::new(
                axum::http::StatusCode::BAD_REQUEST,
                "invalid_field",
                inner.to_string(),
            )
        } else {
            ApiError::invalid(&path, inner)
        }
    })?;
    check(request, defaults, owner)
}

/// Long but flat: one field after another, each refusal naming its field;
/// splitting it would scatter the create body's rules.
fn check(
    request: CreateContainers,
    defaults: &CreateDefaults,
    owner: &str,
) -> Result<NewContainers, ApiError> {
    let owner = owner_of(request.tenant.as_deref(), owner)?;
    let image = request.image.trim();
    super::image_ref::check(image).map_err(|why| {
        ApiError::invalid(
            "image",
            format!("must be an image reference such as `dormant-demo:latest`: {why}"),
        )
    })?;
    if request.port == Some(0) {
        return Err(ApiError::invalid("port", "must be between 1 and 65535"));
    }
    let count = request.count.unwrap_or(1);
    if !(1..=MAX_COUNT).contains(&count) {
        return Err(ApiError::invalid(
            "count",
            format!("is {count}; it must be between 1 and {MAX_COUNT}"),
        ));
    }
    let names = match &request.name {
        Some(name) => {
            names::check_name(name).map_err(|why| ApiError::invalid("name", why))?;
            if count == 1 && request.count.is_none() {
                vec![name.clone()]
            } else {
                let names: Vec<String> = (1..=count).map(|i| format!("{name}-{i}")).collect();
                names::check_name(names.last().expect("count >= 1")).map_err(|why| {
                    ApiError::invalid(
                        "name",
                        format!(
                            "with count {count} gives `{}` which {why}",
                            names.last().unwrap()
                        ),
                    )
                })?;
                names
            }
        }
        None => {
            let mut names: Vec<String> = Vec::with_capacity(count as usize);
            while names.len() < count as usize {
                let name = names::generate_name();
                if !names.contains(&name) {
                    names.push(name);
                }
            }
            names
        }
    };
    let env = request.env.unwrap_or_default();
    for key in env.keys() {
        if key.is_empty() || key.contains('=') || key.contains('\0') {
            return Err(ApiError::invalid(
                "env",
                format!("has the variable name `{key}`; names must be non-empty without `=`"),
            ));
        }
    }
    if env.values().any(|v| v.contains('\0')) {
        return Err(ApiError::invalid(
            "env",
            "values must not contain NUL characters",
        ));
    }
    if let Some(cmd) = &request.cmd {
        if cmd.is_empty() {
            return Err(ApiError::invalid(
                "cmd",
                "must not be empty; leave it out to use the image's command",
            ));
        }
    }
    let memory_bytes = match &request.memory {
        Some(text) => parse_memory(text).map_err(|why| ApiError::invalid("memory", why))?,
        None => defaults.memory_bytes,
    };
    if memory_bytes < MIN_MEMORY {
        return Err(ApiError::invalid(
            "memory",
            "must be at least 6m (Docker's minimum)",
        ));
    }
    let nano_cpus = match request.cpus {
        None => None,
        Some(cpus) if cpus.is_finite() && cpus >= 0.01 && cpus <= defaults.max_cpus => {
            Some((cpus * 1e9).round() as i64)
        }
        Some(cpus) => {
            return Err(ApiError::invalid(
                "cpus",
                format!(
                    "is {cpus}; it must be between 0.01 and this host's {} cores",
                    defaults.max_cpus
                ),
            ))
        }
    };
    let idle_timeout = match &request.idle_timeout {
        Some(text) => humantime::parse_duration(text).map_err(|e| {
            ApiError::invalid(
                "idle_timeout",
                format!("`{text}` is not a duration ({e}); write e.g. `10m` or `1h`"),
            )
        })?,
        None => defaults.idle_timeout,
    };
    if idle_timeout < Duration::from_secs(1) || idle_timeout > LONGEST_DURATION {
        return Err(ApiError::invalid(
            "idle_timeout",
            "must be between 1s and 100 years",
        ));
    }
    let volumes = request.volumes.unwrap_or_default();
    check_volumes(&volumes)?;
    let archive_after = match &request.archive_after {
        Some(text) => Some(humantime::parse_duration(text).map_err(|e| {
            ApiError::invalid(
                "archive_after",
                format!("`{text}` is not a duration ({e}); write e.g. `24h` or `7d`"),
            )
        })?),
        None => None,
    };
    if archive_after.is_some_and(|after| after > LONGEST_DURATION) {
        return Err(ApiError::invalid(
            "archive_after",
            "must be at most 100 years",
        ));
    }
    let nap_after = request
        .nap_after
        .as_deref()
        .map(parse_nap_after)
        .transpose()?;
    if let Some(path) = &request.ready_path {
        let valid =
            path.starts_with('/') && !path.chars().any(|c| c.is_whitespace() || c.is_control());
        if !valid {
            return Err(ApiError::invalid(
                "ready_path",
                format!("is `{path}`; it must be a URL path such as `/healthz`"),
            ));
        }
    }
    let cap_add = check_cap_add(
        request.cap_add.unwrap_or_default(),
        &defaults.allowed_capabilities,
    )?;
    Ok(NewContainers {
        names,
        image: image.to_owned(),
        port: request.port,
        env,
        cmd: request.cmd,
        memory_bytes,
        nano_cpus,
        idle_timeout,
        volumes,
        ready_path: request.ready_path,
        wake: request.wake,
        archive_after,
        nap_after,
        cap_add,
        access: request.access.unwrap_or(defaults.default_access),
        owner,
    })
}

/// The longest `nap_after` a container takes: past its idle timeout it
/// never naps anyway.
const LONGEST_NAP_AFTER: Duration = LONGEST_DURATION;

/// A container's `nap_after`: `0` (never nap) or between 1s and 100 years
/// (the sweep looks twice a second: a shorter one would mean nothing).
pub fn parse_nap_after(text: &str) -> Result<Duration, ApiError> {
    let after = humantime::parse_duration(text).map_err(|e| {
        ApiError::invalid(
            "nap_after",
            format!("`{text}` is not a duration ({e}); write e.g. `60s`, or `0` never to nap"),
        )
    })?;
    if !after.is_zero() && !(Duration::from_secs(1)..=LONGEST_NAP_AFTER).contains(&after) {
        return Err(ApiError::invalid(
            "nap_after",
            "must be 0 (never nap) or between 1s and 100 years",
        ));
    }
    Ok(after)
}

/// Whose the new containers are: the caller's, or (for the admin only) the
/// tenant the body names. Whether that tenant exists is the handler's check.
fn owner_of(tenant: Option<&str>, caller: &str) -> Result<String, ApiError> {
    match tenant {
        None => Ok(caller.to_owned()),
        Some(own) if own == caller => Ok(own.to_owned()),
        Some(tenant) if caller == crate::tenant::ADMIN => {
            crate::tenant::check_id(tenant).map_err(|why| ApiError::invalid("tenant", why))?;
            Ok(tenant.to_owned())
        }
        Some(_) => Err(ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            "forbidden",
            "field `tenant`: only the admin may create containers for another tenant",
        )),
    }
}

/// Each capability must be a Linux capability the admin allows; returns
/// their canonical names, each once.
fn check_cap_add(
    requested: Vec<String>,
    allowed: &AllowedCapabilities,
) -> Result<Vec<String>, ApiError> {
    let mut cap_add: Vec<String> = Vec::new();
    for (i, name) in requested.iter().enumerate() {
        let field = format!("cap_add[{i}]");
        let name = capabilities::canonical(name).map_err(|why| ApiError::invalid(&field, why))?;
        if !allowed.allows(&name) {
            let allowed = if allowed.is_empty() {
                "this server allows none to be added".to_owned()
            } else {
                format!("this server allows only {allowed}")
            };
            return Err(ApiError::invalid(
                &field,
                format!("asks for `{name}`, which is not allowed: {allowed} (the admin's --allowed-capabilities)"),
            ));
        }
        if !cap_add.contains(&name) {
            cap_add.push(name);
        }
    }
    Ok(cap_add)
}

fn check_volumes(volumes: &[String]) -> Result<(), ApiError> {
    if volumes.len() > MAX_VOLUMES {
        return Err(ApiError::invalid(
            "volumes",
            format!(
                "has {} paths; at most {MAX_VOLUMES} are allowed",
                volumes.len()
            ),
        ));
    }
    for (i, path) in volumes.iter().enumerate() {
        let field = format!("volumes[{i}]");
        let p = Path::new(path);
        let normal = p.is_absolute()
            && p.components()
                .skip(1)
                .all(|c| matches!(c, Component::Normal(_)))
            && p.components().count() > 1
            && !path.ends_with('/')
            && !path.contains(['\0', ':', ',']);
        if !normal {
            return Err(ApiError::invalid(
                &field,
                format!("is `{path}`; it must be an absolute path inside the container such as `/data`, without `..`, `:` or `,`"),
            ));
        }
        if volumes[..i].contains(path) {
            return Err(ApiError::invalid(&field, format!("repeats `{path}`")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> CreateDefaults {
        CreateDefaults {
            memory_bytes: 512 << 20,
            idle_timeout: Duration::from_secs(900),
            max_cpus: 2.0,
            allowed_capabilities: "NET_RAW,SYS_PTRACE".parse().unwrap(),
            default_access: Access::Public,
        }
    }

    fn parse_json(json: &str) -> Result<NewContainers, ApiError> {
        parse(json.as_bytes(), &defaults(), "admin")
    }

    fn rejected(json: &str) -> String {
        let err = parse_json(json).expect_err(json);
        assert_eq!(err.status, 400, "{json}");
        err.message
    }

    #[test]
    fn a_minimal_request_gets_defaults() {
        let req = parse_json(r#"{"image":"demo","name":"alice"}"#).unwrap();
        assert_eq!(req.names, ["alice"]);
        assert_eq!(req.memory_bytes, 512 << 20);
        assert_eq!(req.idle_timeout, Duration::from_secs(900));
        assert_eq!(req.port, None);
        let req = parse_json(r#"{"image":"demo","wake":"page","ready_path":"/healthz"}"#).unwrap();
        assert_eq!(req.wake, Some(crate::domain::WakeStrategy::Page));
        assert_eq!(req.ready_path.as_deref(), Some("/healthz"));
    }

    #[test]
    fn access_follows_the_default_unless_asked() {
        assert_eq!(
            parse_json(r#"{"image":"demo"}"#).unwrap().access,
            Access::Public
        );
        let req = parse_json(r#"{"image":"demo","access":"private"}"#).unwrap();
        assert_eq!(req.access, Access::Private);
        let private = CreateDefaults {
            default_access: Access::Private,
            ..defaults()
        };
        let req = parse(br#"{"image":"demo"}"#, &private, "admin").unwrap();
        assert_eq!(req.access, Access::Private);
        let req = parse(br#"{"image":"demo","access":"public"}"#, &private, "admin").unwrap();
        assert_eq!(req.access, Access::Public);
        assert!(rejected(r#"{"image":"demo","access":"secret"}"#).contains("`access`"));
    }

    #[test]
    fn durations_too_long_to_add_to_a_timestamp_are_refused() {
        assert!(rejected(r#"{"image":"demo","idle_timeout":"200years"}"#).contains("idle_timeout"));
        assert!(
            rejected(r#"{"image":"demo","archive_after":"9000000000years"}"#)
                .contains("archive_after")
        );
        assert!(parse_json(r#"{"image":"demo","archive_after":"50years"}"#).is_ok());
    }

    #[test]
    fn count_numbers_the_names() {
        let req = parse_json(r#"{"image":"demo","name":"lab","count":3}"#).unwrap();
        assert_eq!(req.names, ["lab-1", "lab-2", "lab-3"]);
        let req = parse_json(r#"{"image":"demo","count":5}"#).unwrap();
        assert_eq!(req.names.len(), 5);
    }

    #[test]
    fn each_bad_field_is_named() {
        assert!(rejected(r#"{"image":"demo","name":"Bad_Name"}"#).contains("`name`"));
        assert!(rejected(r#"{"image":"demo","count":0}"#).contains("`count`"));
        assert!(rejected(r#"{"image":"demo","count":101}"#).contains("`count`"));
        assert!(rejected(r#"{"image":"demo","colour":"red"}"#).contains("unknown field `colour`"));
        assert!(rejected(r#"{"name":"a"}"#).contains("missing field `image`"));
        assert!(rejected(r#"{"image":"demo","memory":"lots"}"#).contains("`memory`"));
        assert!(rejected(r#"{"image":"demo","memory":"1m"}"#).contains("`memory`"));
        assert!(rejected(r#"{"image":"demo","cpus":99}"#).contains("`cpus`"));
        assert!(rejected(r#"{"image":"demo","idle_timeout":"soon"}"#).contains("`idle_timeout`"));
        assert!(rejected(r#"{"image":"demo","volumes":["data"]}"#).contains("`volumes[0]`"));
        assert!(rejected(r#"{"image":"demo","volumes":["/a/../b"]}"#).contains("`volumes[0]`"));
        assert!(rejected(r#"{"image":"demo","port":"eighty"}"#).contains("`port`"));
        assert!(rejected(r#"{"image":"Demo"}"#).contains("`image`"));
        assert!(rejected(r#"{"image":"demo","ready_path":"healthz"}"#).contains("`ready_path`"));
        assert!(rejected(r#"{"image":"demo","wake":"shout"}"#).contains("`wake`"));
        assert!(rejected(r#"{"image":"demo","archive_after":"later"}"#).contains("`archive_after`"));
        assert!(rejected(r#"{"image":"demo","env":{"A=B":"c"}}"#).contains("`env`"));
        assert!(rejected(
            r#"{"image":"demo","name":"abcdefghijabcdefghijabcdefghijabcdefghij","count":2}"#
        )
        .contains("`name`"));
    }

    #[test]
    fn only_allowed_capabilities_may_be_added() {
        let req = parse_json(r#"{"image":"demo","cap_add":["net_raw","CAP_NET_RAW"]}"#).unwrap();
        assert_eq!(req.cap_add, ["NET_RAW"]);
        assert!(parse_json(r#"{"image":"demo"}"#)
            .unwrap()
            .cap_add
            .is_empty());
        let message = rejected(r#"{"image":"demo","cap_add":["NET_RAW","SYS_ADMIN"]}"#);
        assert!(
            message.contains("`cap_add[1]`")
                && message.contains("SYS_ADMIN")
                && message.contains("NET_RAW,SYS_PTRACE"),
            "{message}"
        );
        assert!(rejected(r#"{"image":"demo","cap_add":["ALL"]}"#).contains("`cap_add[0]`"));
        assert!(rejected(r#"{"image":"demo","cap_add":"NET_RAW"}"#).contains("cap_add"));
        let none = CreateDefaults {
            allowed_capabilities: AllowedCapabilities::default(),
            ..defaults()
        };
        let err = parse(br#"{"image":"demo","cap_add":["NET_RAW"]}"#, &none, "admin").unwrap_err();
        assert!(err.message.contains("allows none"), "{}", err.message);
    }

    #[test]
    fn host_access_is_refused_by_name() {
        for field in [
            "privileged",
            "capabilities",
            "devices",
            "network_mode",
            "binds",
        ] {
            let message = rejected(&format!(r#"{{"image":"demo","{field}":true}}"#));
            assert!(
                message.contains(field) && message.contains("not allowed"),
                "{message}"
            );
        }
    }
}

#[cfg(test)]
mod tenant_tests {
    use super::*;

    fn defaults() -> CreateDefaults {
        CreateDefaults {
            memory_bytes: 256 << 20,
            idle_timeout: std::time::Duration::from_secs(900),
            max_cpus: 4.0,
            allowed_capabilities: AllowedCapabilities::default(),
            default_access: Access::Public,
        }
    }

    #[test]
    fn only_the_admin_creates_for_another_tenant() {
        let body = br#"{"image":"demo","tenant":"acme"}"#;
        assert_eq!(parse(body, &defaults(), "admin").unwrap().owner, "acme");
        assert_eq!(parse(body, &defaults(), "acme").unwrap().owner, "acme");
        let err = parse(body, &defaults(), "beta").unwrap_err();
        assert_eq!((err.status.as_u16(), err.code), (403, "forbidden"));
        let plain = br#"{"image":"demo"}"#;
        assert_eq!(parse(plain, &defaults(), "beta").unwrap().owner, "beta");
        let err = parse(
            br#"{"image":"demo","tenant":"Bad_Id"}"#,
            &defaults(),
            "admin",
        )
        .unwrap_err();
        assert!(err.message.contains("`tenant`"), "{}", err.message);
    }
}
