//! Wire types of `/v1/tenants`, and the one parser of quotas as the API
//! spells them (sizes like create's memory: `"512m"`, `"10g"`).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::ApiError;
use crate::domain::rfc3339;
use crate::lifecycle::TenantUsage;
use crate::store::tenants::{TenantRow, TokenRow};
use crate::tenant::Quotas;
use crate::units::{format_memory, parse_memory};

/// Largest count quota: past it, a quota means nothing on one host.
const MAX_COUNT_QUOTA: u64 = 1_000_000;

/// Body of `POST /v1/tenants`. Unknown fields are rejected.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateTenant {
    /// `[a-z0-9]([a-z0-9-]*[a-z0-9])?`, 1 to 32 characters; not `admin`.
    #[schema(example = "acme")]
    pub id: String,
    /// Absent quotas are unlimited.
    pub quotas: Option<QuotasBody>,
}

/// A tenant's quotas as sent. In `PATCH`, a field absent stays as it is
/// and `null` removes that quota (unlimited).
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct QuotasBody {
    /// Containers it may have, whatever their state.
    pub max_containers: Option<u64>,
    /// Containers it may have running at once.
    pub max_running: Option<u64>,
    /// Sum of its running containers' memory limits, e.g. `"2g"`.
    #[schema(example = "2g")]
    pub max_memory: Option<String>,
    /// Disk its snapshots may take, e.g. `"10g"`. Past it, its containers
    /// stay asleep instead of being archived.
    #[schema(example = "10g")]
    pub max_snapshot: Option<String>,
}

/// A tenant's quotas as shown; `null` is unlimited.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct QuotasView {
    pub max_containers: Option<u64>,
    pub max_running: Option<u64>,
    pub max_memory: Option<String>,
    pub max_snapshot: Option<String>,
}

/// What a tenant's containers use now.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UsageView {
    pub containers: u64,
    /// Running, starting or stopping.
    pub running: u64,
    /// Sum of the memory limits of those running, e.g. `512m`.
    pub memory: String,
    pub snapshot_bytes: u64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TenantView {
    pub id: String,
    /// RFC 3339.
    pub created_at: String,
    pub quotas: QuotasView,
    pub usage: UsageView,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TenantList {
    pub tenants: Vec<TenantView>,
}

/// A token without its secret.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenView {
    #[schema(example = "tok_1a2b3c4d")]
    pub id: String,
    /// RFC 3339.
    pub created_at: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenList {
    pub tokens: Vec<TokenView>,
}

/// A token just made. Its secret is shown this once; dormant keeps only
/// its SHA-256.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NewTokenView {
    #[schema(example = "tok_1a2b3c4d")]
    pub id: String,
    /// Send as `Authorization: Bearer <token>`.
    #[schema(example = "dmt_0f1e2d...")]
    pub token: String,
    pub created_at: String,
}

/// `POST /v1/tenants`: the tenant and its first token.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TenantCreated {
    pub tenant: TenantView,
    pub token: NewTokenView,
}

pub fn tenant_view(row: &TenantRow, usage: TenantUsage) -> TenantView {
    let q = &row.quotas;
    TenantView {
        id: row.id.clone(),
        created_at: rfc3339(row.created_at),
        quotas: QuotasView {
            max_containers: q.max_containers,
            max_running: q.max_running,
            max_memory: q.max_memory_bytes.map(format_memory),
            max_snapshot: q.max_snapshot_bytes.map(format_memory),
        },
        usage: UsageView {
            containers: usage.containers,
            running: usage.running,
            memory: format_memory(usage.memory_bytes),
            snapshot_bytes: usage.snapshot_bytes,
        },
    }
}

pub fn token_view(row: &TokenRow) -> TokenView {
    TokenView {
        id: row.id.clone(),
        created_at: rfc3339(row.created_at),
    }
}

/// A JSON object body, or 400.
pub fn object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(fields)) => Ok(fields),
        Ok(_) => Err(ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "invalid_json",
            "the body must be a JSON object",
        )),
        Err(e) => Err(ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("the body is not valid JSON: {e}"),
        )),
    }
}

/// `quotas` with the fields of `body` applied: a value sets that quota,
/// `null` removes it. `prefix` names where the fields sit, for errors.
pub fn merge_quotas(
    mut quotas: Quotas,
    body: &Map<String, Value>,
    prefix: &str,
) -> Result<Quotas, ApiError> {
    for (key, value) in body {
        let field = format!("{prefix}{key}");
        match key.as_str() {
            "max_containers" => quotas.max_containers = count(value, &field)?,
            "max_running" => quotas.max_running = count(value, &field)?,
            "max_memory" => quotas.max_memory_bytes = size(value, &field)?,
            "max_snapshot" => quotas.max_snapshot_bytes = size(value, &field)?,
            _ => {
                return Err(ApiError::invalid(
                    &field,
                    "is not a quota; the quotas are max_containers, max_running, max_memory and max_snapshot",
                ))
            }
        }
    }
    Ok(quotas)
}

fn count(value: &Value, field: &str) -> Result<Option<u64>, ApiError> {
    match value {
        Value::Null => Ok(None),
        Value::Number(n) => match n.as_u64() {
            Some(n) if n <= MAX_COUNT_QUOTA => Ok(Some(n)),
            _ => Err(ApiError::invalid(
                field,
                format!(
                    "must be a whole number from 0 to {MAX_COUNT_QUOTA}, or null for unlimited"
                ),
            )),
        },
        _ => Err(ApiError::invalid(
            field,
            "must be a whole number, or null for unlimited",
        )),
    }
}

fn size(value: &Value, field: &str) -> Result<Option<u64>, ApiError> {
    match value {
        Value::Null => Ok(None),
        Value::String(text) => parse_memory(text)
            .map(Some)
            .map_err(|why| ApiError::invalid(field, why)),
        _ => Err(ApiError::invalid(
            field,
            "must be a size such as \"512m\" or \"10g\", or null for unlimited",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(json: &str) -> Map<String, Value> {
        object(json.as_bytes()).unwrap()
    }

    #[test]
    fn quotas_are_set_and_removed_by_field() {
        let quotas = merge_quotas(
            Quotas::default(),
            &fields(
                r#"{"max_containers":5,"max_running":2,"max_memory":"1g","max_snapshot":"512m"}"#,
            ),
            "quotas.",
        )
        .unwrap();
        assert_eq!(
            quotas,
            Quotas {
                max_containers: Some(5),
                max_running: Some(2),
                max_memory_bytes: Some(1 << 30),
                max_snapshot_bytes: Some(512 << 20),
            }
        );
        let patched = merge_quotas(quotas, &fields(r#"{"max_running":null}"#), "").unwrap();
        assert_eq!(patched.max_running, None);
        assert_eq!(patched.max_containers, Some(5), "absent fields stay");
    }

    #[test]
    fn each_bad_quota_is_named() {
        for (json, field) in [
            (r#"{"max_running":-1}"#, "quotas.max_running"),
            (r#"{"max_containers":"5"}"#, "quotas.max_containers"),
            (r#"{"max_memory":"lots"}"#, "quotas.max_memory"),
            (r#"{"max_memory":512}"#, "quotas.max_memory"),
            (r#"{"max_cpus":1}"#, "quotas.max_cpus"),
        ] {
            let err = merge_quotas(Quotas::default(), &fields(json), "quotas.").unwrap_err();
            assert_eq!(err.status, 400, "{json}");
            assert!(
                err.message.contains(&format!("`{field}`")),
                "{json}: {}",
                err.message
            );
        }
    }
}
