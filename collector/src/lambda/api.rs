//! Clients for the Lambda Extensions API (`/2020-01-01/extension/...`) and the Telemetry API
//! subscription (`/2022-07-01/telemetry`), both served at `AWS_LAMBDA_RUNTIME_API`.

use anyhow::{Context, Result, anyhow, bail};
use serde::Deserialize;
use std::time::Duration;
use ureq::Agent;

/// Where the Lambda APIs are: `http://host:port[/prefix]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiBase(String);

impl ApiBase {
    /// From `AWS_LAMBDA_RUNTIME_API` (`host:port`, possibly followed by a path prefix).
    pub fn from_env_value(v: &str) -> Result<ApiBase> {
        let v = v.trim().trim_end_matches('/');
        let (hostport, _) = v.split_once('/').unwrap_or((v, ""));
        let Some((host, port)) = hostport.rsplit_once(':') else {
            bail!("AWS_LAMBDA_RUNTIME_API must be host:port[/prefix], got {v:?}");
        };
        if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
            bail!("AWS_LAMBDA_RUNTIME_API must be host:port[/prefix], got {v:?}");
        }
        Ok(ApiBase(format!("http://{v}")))
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.0)
    }
}

/// An event from `GET /extension/event/next`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(tag = "eventType")]
pub enum NextEvent {
    #[serde(rename = "INVOKE", rename_all = "camelCase")]
    Invoke {
        request_id: String,
        deadline_ms: u64,
        #[serde(default)]
        invoked_function_arn: String,
        #[serde(default)]
        tracing: Option<Tracing>,
    },
    #[serde(rename = "SHUTDOWN", rename_all = "camelCase")]
    Shutdown {
        #[serde(default)]
        shutdown_reason: String,
        deadline_ms: u64,
    },
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Tracing {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub value: String,
}

/// What `register` returns.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Registration {
    #[serde(default)]
    pub function_name: String,
    #[serde(default)]
    pub function_version: String,
    #[serde(default)]
    pub handler: String,
    #[serde(default)]
    pub account_id: Option<String>,
}

/// A registered extension.
pub struct Extension {
    base: ApiBase,
    agent: Agent,
    /// For `next`, which blocks until the next event (the environment may be frozen meanwhile).
    waiting_agent: Agent,
    pub id: String,
    pub registration: Registration,
}

fn agent(timeout: Option<Duration>) -> Agent {
    Agent::config_builder()
        .timeout_global(timeout)
        .http_status_as_error(false)
        .build()
        .into()
}

fn status_ok(status: u16, what: &str, body: &str) -> Result<()> {
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(anyhow!("{what}: HTTP {status}: {}", body.trim()))
    }
}

impl Extension {
    /// `POST /2020-01-01/extension/register` for INVOKE and SHUTDOWN.
    pub fn register(base: &ApiBase, name: &str, events: &[&str]) -> Result<Extension> {
        let agent = agent(Some(Duration::from_secs(10)));
        let mut resp = agent
            .post(&base.url("/2020-01-01/extension/register"))
            .header("Lambda-Extension-Name", name)
            .header("Lambda-Extension-Accept-Feature", "accountId")
            .send_json(serde_json::json!({ "events": events }))
            .context("extension register request failed")?;
        let status = resp.status().as_u16();
        let id = resp
            .headers()
            .get("Lambda-Extension-Identifier")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = resp.body_mut().read_to_string().unwrap_or_default();
        status_ok(status, "extension register", &body)?;
        let id =
            id.ok_or_else(|| anyhow!("register response has no Lambda-Extension-Identifier"))?;
        let registration = serde_json::from_str(&body).unwrap_or_default();
        Ok(Extension {
            base: base.clone(),
            agent,
            waiting_agent: self::agent(None),
            id,
            registration,
        })
    }

    /// `GET /2020-01-01/extension/event/next`: blocks until the next event.
    pub fn next(&self) -> Result<NextEvent> {
        let mut resp = self
            .waiting_agent
            .get(&self.base.url("/2020-01-01/extension/event/next"))
            .header("Lambda-Extension-Identifier", &self.id)
            .call()
            .context("extension next request failed")?;
        let status = resp.status().as_u16();
        let body = resp.body_mut().read_to_string().unwrap_or_default();
        status_ok(status, "extension next", &body)?;
        serde_json::from_str(&body).with_context(|| format!("unexpected event: {}", body.trim()))
    }

    /// `POST /2020-01-01/extension/init/error`: makes Lambda fail the init with this error,
    /// which shows up in the function's logs.
    pub fn init_error(&self, error_type: &str, message: &str) -> Result<()> {
        self.report_error("/2020-01-01/extension/init/error", error_type, message)
    }

    /// `POST /2020-01-01/extension/exit/error`.
    pub fn exit_error(&self, error_type: &str, message: &str) -> Result<()> {
        self.report_error("/2020-01-01/extension/exit/error", error_type, message)
    }

    fn report_error(&self, path: &str, error_type: &str, message: &str) -> Result<()> {
        let mut resp = self
            .agent
            .post(&self.base.url(path))
            .header("Lambda-Extension-Identifier", &self.id)
            .header("Lambda-Extension-Function-Error-Type", error_type)
            .send_json(serde_json::json!({
                "errorMessage": message,
                "errorType": error_type,
                "stackTrace": [],
            }))
            .context("extension error report failed")?;
        let status = resp.status().as_u16();
        let body = resp.body_mut().read_to_string().unwrap_or_default();
        status_ok(status, "extension error report", &body)
    }

    /// `PUT /2022-07-01/telemetry`: asks for platform events at `destination`, buffered at most
    /// `timeout_ms` (the API's minimum is 25 ms).
    pub fn subscribe_telemetry(&self, destination: &str, timeout_ms: u32) -> Result<()> {
        let mut resp = self
            .agent
            .put(&self.base.url("/2022-07-01/telemetry"))
            .header("Lambda-Extension-Identifier", &self.id)
            .send_json(serde_json::json!({
                "schemaVersion": "2022-12-13",
                "types": ["platform"],
                "buffering": { "maxItems": 1000, "maxBytes": 262144, "timeoutMs": timeout_ms.max(25) },
                "destination": { "protocol": "HTTP", "URI": destination },
            }))
            .context("telemetry subscription request failed")?;
        let status = resp.status().as_u16();
        let body = resp.body_mut().read_to_string().unwrap_or_default();
        // Lambda answers 200. Emulators answer 202 with an error document
        // (`Telemetry.NotSupported`): that is a refusal.
        if status == 200 {
            Ok(())
        } else {
            Err(anyhow!(
                "telemetry subscription: HTTP {status}: {}",
                body.trim()
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_base_accepts_prefixes_and_rejects_garbage() {
        assert_eq!(
            ApiBase::from_env_value("127.0.0.1:9001").unwrap().url("/x"),
            "http://127.0.0.1:9001/x"
        );
        assert_eq!(
            ApiBase::from_env_value("127.0.0.1:9001/pre/fix/")
                .unwrap()
                .url("/x"),
            "http://127.0.0.1:9001/pre/fix/x"
        );
        for bad in ["", "127.0.0.1", ":9001", "h:0", "h:port", "h:70000"] {
            assert!(ApiBase::from_env_value(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_events() {
        let e: NextEvent = serde_json::from_str(
            r#"{"eventType":"INVOKE","deadlineMs":1700000003000,"requestId":"r1",
                "invokedFunctionArn":"arn:aws:lambda:us-east-1:1:function:f",
                "tracing":{"type":"X-Amzn-Trace-Id","value":"Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1"}}"#,
        )
        .unwrap();
        assert!(matches!(e, NextEvent::Invoke { ref request_id, .. } if request_id == "r1"));
        let s: NextEvent = serde_json::from_str(
            r#"{"eventType":"SHUTDOWN","shutdownReason":"spindown","deadlineMs":1700000005000}"#,
        )
        .unwrap();
        assert_eq!(
            s,
            NextEvent::Shutdown {
                shutdown_reason: "spindown".into(),
                deadline_ms: 1_700_000_005_000
            }
        );
        assert!(serde_json::from_str::<NextEvent>(r#"{"eventType":"BOGUS"}"#).is_err());
    }
}
