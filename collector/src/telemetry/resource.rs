//! The OpenTelemetry resource: who the telemetry is about (DESIGN §6). `service.name` is the
//! Lambda function's name there, else the monitored command's executable name;
//! `OTEL_RESOURCE_ATTRIBUTES` and then `OTEL_SERVICE_NAME` override what netmon derives.

use super::config::{ConfigError, Env};
use super::schema;
use opentelemetry::KeyValue;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::resource::TelemetryResourceDetector;

/// What netmon knows about the monitored workload.
#[derive(Clone, Debug, Default)]
pub struct Workload {
    /// Executable name of the monitored command (`python3`).
    pub executable: String,
    /// Pid of the monitored command.
    pub pid: Option<u32>,
}

/// Parses `OTEL_RESOURCE_ATTRIBUTES` (`k1=v1,k2=v2`, values percent-encoded). Per the
/// specification an invalid value discards the whole variable; the error says why.
pub fn parse_resource_attributes(value: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let mut out = Vec::new();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let Some((k, v)) = item.split_once('=') else {
            return Err(ConfigError(format!(
                "OTEL_RESOURCE_ATTRIBUTES: {item:?} is not key=value; the variable is ignored"
            )));
        };
        let k = k.trim();
        if k.is_empty() {
            return Err(ConfigError(format!(
                "OTEL_RESOURCE_ATTRIBUTES: {item:?} has an empty key; the variable is ignored"
            )));
        }
        let v = super::config::percent_decode(v.trim()).ok_or_else(|| {
            ConfigError(format!(
                "OTEL_RESOURCE_ATTRIBUTES: bad percent-encoding in {item:?}; the variable is ignored"
            ))
        })?;
        out.push((k.to_string(), v));
    }
    Ok(out)
}

/// The resource attributes, in increasing precedence: derived, `OTEL_RESOURCE_ATTRIBUTES`,
/// `OTEL_SERVICE_NAME`. Returns the attributes and a warning for an ignored variable.
pub fn attributes(
    workload: &Workload,
    host_name: Option<&str>,
    env: &dyn Env,
) -> (Vec<KeyValue>, Option<String>) {
    let var = |k: &str| env.var(k).ok().flatten();
    let mut attrs: Vec<(String, opentelemetry::Value)> = Vec::new();
    let mut set = |k: &str, v: opentelemetry::Value| {
        attrs.retain(|(key, _)| key != k);
        attrs.push((k.to_string(), v));
    };
    let function = var("AWS_LAMBDA_FUNCTION_NAME");
    let service = function
        .clone()
        .unwrap_or_else(|| workload.executable.clone());
    set(schema::SERVICE_NAME, service.into());
    if let Some(pid) = workload.pid {
        set(schema::PROCESS_PID, i64::from(pid).into());
    }
    if !workload.executable.is_empty() {
        set(
            schema::PROCESS_EXECUTABLE_NAME,
            workload.executable.clone().into(),
        );
    }
    if let Some(h) = host_name {
        set(schema::HOST_NAME, h.to_string().into());
    }
    if let Some(f) = function {
        set(schema::FAAS_NAME, f.into());
        set(schema::CLOUD_PROVIDER, "aws".into());
        set(schema::CLOUD_PLATFORM, "aws_lambda".into());
        if let Some(v) = var("AWS_LAMBDA_FUNCTION_VERSION") {
            set(schema::FAAS_VERSION, v.into());
        }
        if let Some(v) = var("AWS_LAMBDA_LOG_STREAM_NAME") {
            set(schema::FAAS_INSTANCE, v.into());
        }
        if let Some(mb) = var("AWS_LAMBDA_FUNCTION_MEMORY_SIZE").and_then(|v| v.parse::<i64>().ok())
        {
            set(schema::FAAS_MAX_MEMORY, (mb * 1024 * 1024).into());
        }
        if let Some(r) = var("AWS_REGION").or_else(|| var("AWS_DEFAULT_REGION")) {
            set(schema::CLOUD_REGION, r.into());
        }
    }
    let mut warning = None;
    if let Some(v) = var("OTEL_RESOURCE_ATTRIBUTES") {
        match parse_resource_attributes(&v) {
            Ok(kvs) => {
                for (k, v) in kvs {
                    set(&k, v.into());
                }
            }
            Err(e) => warning = Some(e.0),
        }
    }
    if let Some(name) = var("OTEL_SERVICE_NAME") {
        set(schema::SERVICE_NAME, name.trim().to_string().into());
    }
    (
        attrs
            .into_iter()
            .map(|(k, v)| KeyValue::new(k, v))
            .collect(),
        warning,
    )
}

/// The SDK resource: [`attributes`] plus `telemetry.sdk.*`.
pub fn build(attrs: Vec<KeyValue>) -> Resource {
    Resource::builder_empty()
        .with_detector(Box::new(TelemetryResourceDetector))
        .with_attributes(attrs)
        .build()
}

/// This machine's host name.
pub fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k: &str| m.get(k).cloned()
    }

    fn get(attrs: &[KeyValue], key: &str) -> Option<String> {
        attrs
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.to_string())
    }

    fn workload() -> Workload {
        Workload {
            executable: "python3".into(),
            pid: Some(42),
        }
    }

    #[test]
    fn service_name_defaults_to_the_executable() {
        let (a, w) = attributes(&workload(), Some("box"), &env(&[]));
        assert!(w.is_none());
        assert_eq!(get(&a, "service.name").as_deref(), Some("python3"));
        assert_eq!(get(&a, "process.pid").as_deref(), Some("42"));
        assert_eq!(get(&a, "host.name").as_deref(), Some("box"));
        assert_eq!(get(&a, "cloud.provider"), None);
    }

    #[test]
    fn env_overrides_in_order() {
        let (a, _) = attributes(
            &workload(),
            None,
            &env(&[
                (
                    "OTEL_RESOURCE_ATTRIBUTES",
                    "service.name=from-attrs,deployment.environment=prod%20eu,team=net",
                ),
                ("OTEL_SERVICE_NAME", "checkout"),
            ]),
        );
        assert_eq!(get(&a, "service.name").as_deref(), Some("checkout"));
        assert_eq!(
            get(&a, "deployment.environment").as_deref(),
            Some("prod eu")
        );
        assert_eq!(get(&a, "team").as_deref(), Some("net"));
        assert_eq!(
            a.iter()
                .filter(|kv| kv.key.as_str() == "service.name")
                .count(),
            1
        );
    }

    #[test]
    fn invalid_resource_attributes_are_ignored_with_a_warning() {
        let (a, w) = attributes(
            &workload(),
            None,
            &env(&[("OTEL_RESOURCE_ATTRIBUTES", "team=net,broken")]),
        );
        assert!(w.unwrap().contains("broken"));
        assert_eq!(get(&a, "team"), None);
    }

    #[test]
    fn lambda_environment() {
        let (a, _) = attributes(
            &workload(),
            None,
            &env(&[
                ("AWS_LAMBDA_FUNCTION_NAME", "orders"),
                ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
                ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"),
                ("AWS_LAMBDA_LOG_STREAM_NAME", "2024/01/01/[$LATEST]abc"),
                ("AWS_REGION", "eu-west-1"),
            ]),
        );
        assert_eq!(get(&a, "service.name").as_deref(), Some("orders"));
        assert_eq!(get(&a, "faas.name").as_deref(), Some("orders"));
        assert_eq!(get(&a, "faas.max_memory").as_deref(), Some("134217728"));
        assert_eq!(get(&a, "cloud.platform").as_deref(), Some("aws_lambda"));
        assert_eq!(get(&a, "cloud.region").as_deref(), Some("eu-west-1"));
    }

    /// Without `OTEL_RESOURCE_ATTRIBUTES`, every key is in the list dashboards use.
    #[test]
    fn every_resource_attribute_is_in_the_schema() {
        let (a, _) = attributes(
            &workload(),
            Some("box"),
            &env(&[
                ("AWS_LAMBDA_FUNCTION_NAME", "orders"),
                ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
                ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"),
                ("AWS_LAMBDA_LOG_STREAM_NAME", "2024/01/01/[$LATEST]abc"),
                ("AWS_REGION", "eu-west-1"),
            ]),
        );
        let r = build(a);
        assert!(r.len() >= schema::RESOURCE_ATTRIBUTES.len());
        for (k, _) in r.iter() {
            assert!(
                schema::RESOURCE_ATTRIBUTES.contains(&k.as_str()),
                "{k} is not in schema::RESOURCE_ATTRIBUTES"
            );
        }
    }

    #[test]
    fn sdk_resource_has_telemetry_sdk() {
        let (a, _) = attributes(&workload(), None, &env(&[]));
        let r = build(a);
        assert!(r.get(&"telemetry.sdk.name".into()).is_some());
        assert_eq!(
            r.get(&"service.name".into())
                .map(|v| v.to_string())
                .as_deref(),
            Some("python3")
        );
    }
}
