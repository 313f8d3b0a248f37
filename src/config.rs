//! The bridge's configuration: a YAML file, `${VAR}` references to the
//! environment (for credentials), and `FLOWBRIDGE_*` overrides of any value.
//!
//! Precedence: `FLOWBRIDGE_*` environment variables over the file over the
//! defaults. A variable names a key path with `__` between levels:
//! `FLOWBRIDGE_KAFKA__GROUP_ID=bridge-2` sets `kafka.group_id`;
//! `FLOWBRIDGE_KAFKA__PROPERTIES__SECURITY_PROTOCOL=SASL_SSL` sets the
//! librdkafka property `security.protocol` (under `kafka.properties`,
//! `_` stands for `.`). Values are read as YAML scalars (`8`, `true`, text).
//! Every error names the key and the problem; a bad config stops the start.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// A configuration problem, naming the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("config: {0}")]
pub struct ConfigError(pub String);

/// Prefix of the override variables.
pub const ENV_PREFIX: &str = "FLOWBRIDGE_";

/// Replaces `${NAME}` with the environment variable `NAME`; an unset
/// variable is an error naming it and its line. Whole-line comments are left
/// as they are.
pub fn interpolate(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(text.len());
    for (n, line) in text.split_inclusive('\n').enumerate() {
        if line.trim_start().starts_with('#') {
            out.push_str(line);
            continue;
        }
        let mut rest = line;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                return Err(ConfigError(format!(
                    "line {}: `${{` without a closing `}}`",
                    n + 1
                )));
            };
            let name = &after[..end];
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(ConfigError(format!(
                    "line {}: `${{{name}}}` is not a variable name",
                    n + 1
                )));
            }
            match env(name) {
                Some(v) => out.push_str(&v),
                None => {
                    return Err(ConfigError(format!(
                        "line {}: environment variable {name} is referenced but not set",
                        n + 1
                    )));
                }
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
    }
    Ok(out)
}

/// Applies `FLOWBRIDGE_A__B=v` overrides to a value tree.
pub fn apply_overrides(
    root: &mut Value,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    let mut vars: Vec<(String, String)> = vars
        .into_iter()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX) && k.contains("__") || is_top_level_override(k))
        .collect();
    vars.sort();
    for (name, raw) in vars {
        let path: Vec<String> = name[ENV_PREFIX.len()..]
            .split("__")
            .map(str::to_ascii_lowercase)
            .collect();
        let value: Value = serde_saphyr::from_str(&raw).unwrap_or(Value::String(raw.clone()));
        let mut node = &mut *root;
        for (i, seg) in path.iter().enumerate() {
            let key = if i > 0 && path[i - 1] == "properties" {
                seg.replace('_', ".")
            } else {
                seg.clone()
            };
            if !node.is_object() {
                if node.is_null() {
                    *node = Value::Object(Default::default());
                } else {
                    return Err(ConfigError(format!(
                        "{name}: `{}` is not a section",
                        path[..i].join(".")
                    )));
                }
            }
            let map = node.as_object_mut().expect("made an object above");
            if i + 1 == path.len() {
                map.insert(key, value.clone());
                break;
            }
            node = map.entry(key).or_insert(Value::Null);
        }
    }
    Ok(())
}

/// Top-level keys that may be overridden without `__` (e.g.
/// `FLOWBRIDGE_WORKFLOWS`).
fn is_top_level_override(name: &str) -> bool {
    matches!(
        name,
        "FLOWBRIDGE_WORKFLOWS" | "FLOWBRIDGE_METRICS_ADDR" | "FLOWBRIDGE_SHUTDOWN_GRACE_MS"
    )
}

/// Parses YAML text (after interpolation) plus overrides into `T`, naming
/// the key of any error.
pub fn parse<T: DeserializeOwned>(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
    overrides: impl IntoIterator<Item = (String, String)>,
) -> Result<T, ConfigError> {
    let text = interpolate(text, env)?;
    let mut tree: Value = if text.trim().is_empty() {
        Value::Object(Default::default())
    } else {
        serde_saphyr::from_str(&text).map_err(|e| {
            let at = e
                .location()
                .map(|l| format!("line {} column {}: ", l.line(), l.column()))
                .unwrap_or_default();
            ConfigError(format!("{at}{}", e.without_snippet()))
        })?
    };
    apply_overrides(&mut tree, overrides)?;
    serde_path_to_error::deserialize(tree).map_err(|e| {
        let path = e.path().to_string();
        ConfigError(if path == "." {
            e.into_inner().to_string()
        } else {
            format!("key `{path}`: {}", e.into_inner())
        })
    })
}

/// Reads and parses a config file with the process environment.
pub fn load<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))?;
    parse(&text, &|k| std::env::var(k).ok(), std::env::vars())
        .map_err(|ConfigError(m)| ConfigError(format!("{}: {m}", path.display())))
}

/// The `kafka:` section.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// `bootstrap.servers`.
    pub brokers: String,
    #[serde(default = "default_group")]
    pub group_id: String,
    /// Topics of node-transition events.
    pub topics: Vec<String>,
    /// Dead-letter topic; default `<source topic>.dlq`.
    #[serde(default)]
    pub dlq_topic: Option<String>,
    /// Any librdkafka property, passed through (`security.protocol`,
    /// `sasl.*`, `ssl.*`, `fetch.max.bytes`, …).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// Worker lanes; instances are spread over them by key.
    #[serde(default = "default_workers")]
    pub workers: usize,
    /// Events queued per lane before polling pauses (backpressure).
    #[serde(default = "default_lane_capacity")]
    pub lane_capacity: usize,
    /// Most events in one micro-batch (one state transaction).
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    #[serde(default = "default_commit_interval")]
    pub commit_interval_ms: u64,
    /// How long a revoke waits for in-flight events of its partitions.
    #[serde(default = "default_drain_timeout")]
    pub drain_timeout_ms: u64,
}

fn default_group() -> String {
    "flowbridge".into()
}
fn default_workers() -> usize {
    8
}
fn default_lane_capacity() -> usize {
    512
}
fn default_max_batch() -> usize {
    256
}
fn default_commit_interval() -> u64 {
    500
}
fn default_drain_timeout() -> u64 {
    10_000
}

impl KafkaConfig {
    /// The librdkafka client config: brokers plus the pass-through
    /// properties.
    pub fn client_config(&self) -> rdkafka::ClientConfig {
        let mut c = rdkafka::ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c
    }

    pub fn consumer_settings(&self) -> crate::kafka::consumer::ConsumerSettings {
        crate::kafka::consumer::ConsumerSettings {
            group_id: self.group_id.clone(),
            topics: self.topics.clone(),
            workers: self.workers,
            lane_capacity: self.lane_capacity,
            max_batch: self.max_batch,
            commit_interval: std::time::Duration::from_millis(self.commit_interval_ms),
            drain_timeout: std::time::Duration::from_millis(self.drain_timeout_ms),
            ..Default::default()
        }
    }

    /// Checks what serde cannot.
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.brokers.trim().is_empty() {
            return Err(ConfigError("key `kafka.brokers`: is empty".into()));
        }
        if self.topics.is_empty() {
            return Err(ConfigError("key `kafka.topics`: needs at least one topic".into()));
        }
        for (key, v) in [
            ("workers", self.workers),
            ("lane_capacity", self.lane_capacity),
            ("max_batch", self.max_batch),
        ] {
            if v == 0 {
                return Err(ConfigError(format!("key `kafka.{key}`: must be at least 1")));
            }
        }
        for k in ["group.id", "enable.auto.commit", "enable.auto.offset.store"] {
            if self.properties.contains_key(k) {
                return Err(ConfigError(format!(
                    "key `kafka.properties.{k}`: set by flowbridge (offsets are committed only after processing); use `kafka.group_id` for the group"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(k: &str) -> Option<String> {
        (k == "SECRET").then(|| "s3cr3t".to_owned())
    }

    #[test]
    fn interpolation_and_overrides() {
        let text = "kafka:\n  brokers: a:9092\n  topics: [t]\n  properties:\n    sasl.password: ${SECRET}\n";
        let cfg: BTreeMap<String, KafkaConfig> = parse(
            text,
            &env,
            [
                ("FLOWBRIDGE_KAFKA__GROUP_ID".to_owned(), "g2".to_owned()),
                ("FLOWBRIDGE_KAFKA__WORKERS".to_owned(), "3".to_owned()),
                (
                    "FLOWBRIDGE_KAFKA__PROPERTIES__SECURITY_PROTOCOL".to_owned(),
                    "SASL_SSL".to_owned(),
                ),
                ("UNRELATED".to_owned(), "x".to_owned()),
            ],
        )
        .unwrap();
        let k = &cfg["kafka"];
        assert_eq!(k.group_id, "g2");
        assert_eq!(k.workers, 3);
        assert_eq!(k.properties["sasl.password"], "s3cr3t");
        assert_eq!(k.properties["security.protocol"], "SASL_SSL");
    }

    #[test]
    fn errors_name_the_key() {
        let err = parse::<BTreeMap<String, KafkaConfig>>(
            "kafka:\n  brokers: a\n  topics: [t]\n  workers: many\n",
            &env,
            [],
        )
        .unwrap_err();
        assert!(err.0.contains("key `kafka.workers`"), "{err}");
        let err = parse::<BTreeMap<String, KafkaConfig>>(
            "kafka:\n  brokers: a\n  topics: [t]\n  linger: 1\n",
            &env,
            [],
        )
        .unwrap_err();
        assert!(err.0.contains("unknown field `linger`"), "{err}");
        let err = parse::<BTreeMap<String, KafkaConfig>>("x: ${NOPE}\n", &env, []).unwrap_err();
        assert!(err.0.contains("NOPE is referenced but not set"), "{err}");
    }
}
