//! Parsers for setting values clap cannot check by itself.

use picloud_manager_core::secret_box::MasterKey;
use picloud_shared::Scope;

pub(super) fn parse_cidr_list(value: &str) -> Result<String, String> {
    picloud_manager_core::dispatcher::ssrf::parse_cidrs(value)
        .map(|_| value.to_owned())
        .map_err(|e| e.to_string())
}

/// The origins of `PICLOUD_CORS_ORIGINS`: empty, `*`, or a comma-separated list of
/// origins, each exactly as a browser sends it in `Origin` (`scheme://host[:port]`,
/// lower-case, no path, no trailing slash, no default port); anything else could never
/// match a request.
pub fn cors_origin_list(value: &str) -> Result<Vec<String>, String> {
    let value = value.trim();
    if value.is_empty() || value == "*" {
        return Ok(Vec::new());
    }
    value
        .split(',')
        .map(|origin| parse_origin(origin.trim()))
        .collect()
}

pub(super) fn parse_origin(origin: &str) -> Result<String, String> {
    let never = |why: &str| format!("'{origin}' is not an origin browsers send ({why})");
    if origin == "*" {
        return Err(never("`*` must stand alone"));
    }
    let url = url::Url::parse(origin).map_err(|e| never(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(never("the scheme must be http or https"));
    }
    let serialized = url.origin().ascii_serialization();
    if serialized != origin {
        return Err(if serialized == "null" {
            never("it has no host")
        } else {
            never(&format!("write it as '{serialized}'"))
        });
    }
    Ok(serialized)
}

pub(super) fn parse_cors_origins(value: &str) -> Result<String, String> {
    cors_origin_list(value).map(|_| value.to_owned())
}

pub(super) fn parse_scale(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(scale) if scale.is_finite() && (0.0..=1000.0).contains(&scale) => Ok(scale),
        _ => Err(format!("'{value}' is not a factor between 0 and 1000")),
    }
}

pub(super) fn parse_scope(value: &str) -> Result<Scope, String> {
    Scope::parse(value).ok_or_else(|| {
        let known: Vec<&str> = Scope::ALL.iter().map(|s| s.as_str()).collect();
        format!(
            "unknown scope '{value}'; known scopes: {}",
            known.join(", ")
        )
    })
}

pub(super) fn parse_master_key(value: &str) -> Result<MasterKey, String> {
    MasterKey::from_base64(value).map_err(|e| e.to_string())
}
