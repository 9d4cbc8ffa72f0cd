//! [`ServiceInstance`] in Curator's JSON form (curator-x-discovery's `JsonInstanceSerializer`),
//! so Java services and Rust services read each other's registrations.
//!
//! The payload is kept as raw JSON: a Java payload class writes its fields (and, in Curator's
//! default compatible mode, an `"@class"` naming the Java type); a payload object without
//! `"@class"` is read by Java as a map. Fields this version does not know are ignored, as Curator
//! ignores ours.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// How an instance is registered (Curator's `ServiceType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum ServiceType {
    /// An ephemeral registration: gone when its session ends (the default).
    #[default]
    Dynamic,
    /// An ephemeral-sequential registration (registered by Curator; read here).
    DynamicSequential,
    /// A persistent registration that outlives its session.
    Static,
    /// A persistent registration that is never removed by the service itself.
    Permanent,
}

impl ServiceType {
    /// Whether the registration is an ephemeral node (gone with its session).
    pub fn is_dynamic(self) -> bool {
        matches!(self, ServiceType::Dynamic | ServiceType::DynamicSequential)
    }
}

/// One part of a [`UriSpec`]: literal text, or a `{variable}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct UriPart {
    /// The text, or the variable's name.
    pub value: String,
    /// Whether `value` names a variable.
    pub variable: bool,
}

/// A URI template such as `{scheme}://{address}:{port}/api` (Curator's `UriSpec`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[non_exhaustive]
pub struct UriSpec {
    /// The parts in order.
    pub parts: Vec<UriPart>,
}

impl UriSpec {
    /// Parses a template: `{name}` is a variable, everything else literal. An unclosed `{`
    /// is kept as literal text.
    ///
    /// ```
    /// use zkit_recipes::service::{ServiceInstance, UriSpec};
    /// let spec = UriSpec::parse("{scheme}://{address}:{port}/v1");
    /// let i = ServiceInstance::new("api", "a1").address("10.0.0.1").port(8080).uri_spec(spec);
    /// assert_eq!(i.build_uri().as_deref(), Some("http://10.0.0.1:8080/v1"));
    /// ```
    pub fn parse(template: &str) -> UriSpec {
        let mut parts = Vec::new();
        let mut rest = template;
        while !rest.is_empty() {
            match rest.find('{') {
                Some(open) => {
                    let Some(close) = rest[open..].find('}').map(|c| open + c) else {
                        parts.push(literal(rest));
                        break;
                    };
                    if open > 0 {
                        parts.push(literal(&rest[..open]));
                    }
                    parts.push(UriPart {
                        value: rest[open + 1..close].to_owned(),
                        variable: true,
                    });
                    rest = &rest[close + 1..];
                }
                None => {
                    parts.push(literal(rest));
                    break;
                }
            }
        }
        UriSpec { parts }
    }
}

fn literal(s: &str) -> UriPart {
    UriPart {
        value: s.to_owned(),
        variable: false,
    }
}

fn yes() -> bool {
    true
}

/// One instance of a service, as Curator stores it. See the [module docs](super).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ServiceInstance {
    /// The service's name.
    pub name: String,
    /// The instance's id (unique within the service).
    pub id: String,
    /// Its host or address.
    pub address: Option<String>,
    /// Its port.
    pub port: Option<i32>,
    /// Its TLS port.
    pub ssl_port: Option<i32>,
    /// Application data, as JSON.
    pub payload: Option<serde_json::Value>,
    /// When it was registered, in milliseconds since the Unix epoch.
    #[serde(rename = "registrationTimeUTC")]
    pub registration_time_utc: i64,
    /// How it is registered.
    pub service_type: ServiceType,
    /// A URI template for reaching it.
    pub uri_spec: Option<UriSpec>,
    /// Whether clients should use it (providers skip disabled instances; missing in older
    /// Curator JSON, which means enabled).
    #[serde(default = "yes")]
    pub enabled: bool,
}

impl ServiceInstance {
    /// An instance `id` of service `name`, dynamic, registered now.
    pub fn new(name: &str, id: &str) -> ServiceInstance {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        ServiceInstance {
            name: name.to_owned(),
            id: id.to_owned(),
            address: None,
            port: None,
            ssl_port: None,
            payload: None,
            registration_time_utc: now,
            service_type: ServiceType::Dynamic,
            uri_spec: None,
            enabled: true,
        }
    }

    /// Sets the address.
    pub fn address(mut self, address: &str) -> Self {
        self.address = Some(address.to_owned());
        self
    }
    /// Sets the port.
    pub fn port(mut self, port: i32) -> Self {
        self.port = Some(port);
        self
    }
    /// Sets the TLS port.
    pub fn ssl_port(mut self, port: i32) -> Self {
        self.ssl_port = Some(port);
        self
    }
    /// Sets the payload.
    pub fn payload(mut self, payload: serde_json::Value) -> Self {
        self.payload = Some(payload);
        self
    }
    /// Sets the registration type.
    pub fn service_type(mut self, t: ServiceType) -> Self {
        self.service_type = t;
        self
    }
    /// Sets the URI template.
    pub fn uri_spec(mut self, spec: UriSpec) -> Self {
        self.uri_spec = Some(spec);
        self
    }

    /// The URI from the template, with Curator's variables filled in (`scheme` is `https` when
    /// there is a TLS port, `http` otherwise; `name`, `id`, `address`, `port`, `ssl-port`,
    /// `registration-time-utc`, `service-type`). Unknown variables are left as `{name}`.
    pub fn build_uri(&self) -> Option<String> {
        let spec = self.uri_spec.as_ref()?;
        let opt = |v: Option<i32>| v.map(|p| p.to_string()).unwrap_or_default();
        let mut out = String::new();
        for part in &spec.parts {
            if !part.variable {
                out.push_str(&part.value);
                continue;
            }
            let v = match part.value.as_str() {
                "scheme" if self.ssl_port.is_some() => "https".to_owned(),
                "scheme" => "http".to_owned(),
                "name" => self.name.clone(),
                "id" => self.id.clone(),
                "address" => self.address.clone().unwrap_or_default(),
                "port" => opt(self.port),
                "ssl-port" => opt(self.ssl_port),
                "registration-time-utc" => self.registration_time_utc.to_string(),
                "service-type" => serde_json::to_value(self.service_type)
                    .ok()
                    .and_then(|v| v.as_str().map(|s| s.to_lowercase()))
                    .unwrap_or_default(),
                other => format!("{{{other}}}"),
            };
            out.push_str(&v);
        }
        Some(out)
    }

    /// The JSON bytes stored in the instance's node.
    pub fn to_json(&self) -> Vec<u8> {
        // Serializing plain data (strings, numbers, a JSON value) cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads an instance from its node's bytes (`path` is only for the error).
    pub fn from_json(path: &str, bytes: &[u8]) -> Result<ServiceInstance> {
        serde_json::from_slice(bytes).map_err(|e| Error::BadData {
            path: path.to_owned(),
            reason: format!("not a Curator service instance: {e}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_curators_compatible_json() {
        // The shape curator-x-discovery 5.x writes by default (no `enabled`, `@class` payload).
        let java = br#"{"name":"search","id":"s1","address":"10.0.0.1","port":8080,
            "sslPort":null,"payload":{"@class":"java.util.HashMap","zone":"a"},
            "registrationTimeUTC":1700000000000,"serviceType":"DYNAMIC",
            "uriSpec":{"parts":[{"value":"scheme","variable":true},{"value":"://","variable":false}]}}"#;
        let i = ServiceInstance::from_json("/s/search/s1", java).unwrap();
        assert_eq!(i.port, Some(8080));
        assert_eq!(i.ssl_port, None);
        assert!(i.enabled);
        assert_eq!(i.payload.as_ref().unwrap()["zone"], "a");
        assert_eq!(i.service_type, ServiceType::Dynamic);
        assert_eq!(i.build_uri().as_deref(), Some("http://"));
    }

    #[test]
    fn writes_the_field_names_curator_reads() {
        let i = ServiceInstance::new("a", "b").port(1).ssl_port(2);
        let v: serde_json::Value = serde_json::from_slice(&i.to_json()).unwrap();
        for k in ["name", "id", "address", "port", "sslPort", "payload"] {
            assert!(v.get(k).is_some(), "{k}");
        }
        assert!(v.get("registrationTimeUTC").unwrap().is_i64());
        assert_eq!(v["serviceType"], "DYNAMIC");
        let back = ServiceInstance::from_json("/x", &i.to_json()).unwrap();
        assert_eq!(back, i);
    }

    #[test]
    fn bad_json_is_an_error_not_a_panic() {
        assert!(ServiceInstance::from_json("/x", b"{").is_err());
        assert!(ServiceInstance::from_json("/x", b"").is_err());
        assert!(ServiceInstance::from_json("/x", br#"{"name":1}"#).is_err());
    }

    #[test]
    fn uri_templates_keep_unclosed_braces_literal() {
        let s = UriSpec::parse("a{b");
        assert_eq!(s.parts.len(), 1);
        assert!(!s.parts[0].variable);
        let i = ServiceInstance::new("n", "i").uri_spec(UriSpec::parse("{x}/{id}"));
        assert_eq!(i.build_uri().as_deref(), Some("{x}/i"));
    }
}
