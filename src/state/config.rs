//! Which state store to use and how: [`StoreConfig`] (the `state` section of
//! the bridge config) and [`open`], which turns it into a store.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::memory::MemoryStore;
use super::postgres::{self, PostgresStore};
use super::redb::{self, RedbStore};
use super::store::{StateStore, StoreError};

/// The kinds of store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// In process, lost on exit (tests, replay).
    #[value(skip)]
    Memory,
    /// One embedded redb file: the default, for a single replica.
    #[default]
    Redb,
    /// PostgreSQL: for several replicas sharing a consumer group's work.
    Postgres,
}

/// The `state` section of the config.
///
/// ```yaml
/// state:
///   kind: postgres                  # memory | redb (default) | postgres
///   # path: ./data/flowbridge.redb  # redb: the file
///   # cache_mb: 64                  # redb: page cache, MiB
///   url: postgres://flowbridge@db/flowbridge
///   pool_size: 8
///   schema: flowbridge
///   retention_ms: 604800000         # closed instances kept 7 days
///   sweep_interval_ms: 3600000
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// Which store.
    #[serde(default)]
    pub kind: StoreKind,
    /// redb: the file (its directory is created).
    #[serde(default = "default_path")]
    pub path: PathBuf,
    /// redb: page cache in MiB — the memory the store uses however many
    /// instances it holds (default 64).
    #[serde(default = "default_cache_mb")]
    pub cache_mb: u64,
    /// postgres: the connection URL (a secret: it may hold a password).
    #[serde(default)]
    pub url: Option<SecretString>,
    /// postgres: most connections the pool opens.
    #[serde(default = "default_pool_size")]
    pub pool_size: u32,
    /// postgres: the schema holding the tables (created if missing).
    #[serde(default = "default_schema")]
    pub schema: String,
    /// postgres: how long to wait for a connection before failing.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// How long completed and cancelled instances are kept after their last
    /// write, so late duplicates are still recognized; then purged.
    #[serde(default = "default_retention_ms")]
    pub retention_ms: u64,
    /// How often the retention sweep runs.
    #[serde(default = "default_sweep_interval_ms")]
    pub sweep_interval_ms: u64,
}

fn default_path() -> PathBuf {
    PathBuf::from(redb::DEFAULT_PATH)
}
fn default_cache_mb() -> u64 {
    (redb::DEFAULT_CACHE_BYTES >> 20) as u64
}
fn default_pool_size() -> u32 {
    8
}
fn default_schema() -> String {
    postgres::DEFAULT_SCHEMA.to_owned()
}
fn default_connect_timeout_ms() -> u64 {
    10_000
}
fn default_retention_ms() -> u64 {
    7 * 24 * 3600 * 1000
}
fn default_sweep_interval_ms() -> u64 {
    3600 * 1000
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            kind: StoreKind::default(),
            path: default_path(),
            cache_mb: default_cache_mb(),
            url: None,
            pool_size: default_pool_size(),
            schema: default_schema(),
            connect_timeout_ms: default_connect_timeout_ms(),
            retention_ms: default_retention_ms(),
            sweep_interval_ms: default_sweep_interval_ms(),
        }
    }
}

impl StoreConfig {
    /// [`retention_ms`](Self::retention_ms) as a duration.
    pub fn retention(&self) -> Duration {
        Duration::from_millis(self.retention_ms)
    }

    /// [`cache_mb`](Self::cache_mb) in bytes.
    pub fn cache_bytes(&self) -> usize {
        usize::try_from(self.cache_mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX)
    }

    /// [`sweep_interval_ms`](Self::sweep_interval_ms) as a duration.
    pub fn sweep_interval(&self) -> Duration {
        Duration::from_millis(self.sweep_interval_ms)
    }
}

/// Opens the store `config` describes: creates the redb file, or connects to
/// PostgreSQL and applies the migrations.
pub async fn open(config: &StoreConfig) -> Result<Arc<dyn StateStore>, StoreError> {
    Ok(match config.kind {
        StoreKind::Memory => Arc::new(MemoryStore::new()),
        StoreKind::Redb => {
            Arc::new(RedbStore::open_with_cache(config.path.clone(), config.cache_bytes()).await?)
        }
        StoreKind::Postgres => {
            let url = config.url.as_ref().ok_or_else(|| {
                StoreError::Backend("state store `postgres` needs a `url` (database URL)".into())
            })?;
            Arc::new(
                PostgresStore::connect(
                    url.expose_secret(),
                    &config.schema,
                    config.pool_size,
                    Duration::from_millis(config.connect_timeout_ms),
                )
                .await?,
            )
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_unknown_fields() {
        let c: StoreConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(c.kind, StoreKind::Redb);
        assert_eq!(c.path, PathBuf::from("./data/flowbridge.redb"));
        assert_eq!(c.retention(), Duration::from_secs(7 * 24 * 3600));
        let c: StoreConfig =
            serde_json::from_str(r#"{"kind":"postgres","url":"postgres://u:pw@h/db","schema":"s"}"#).unwrap();
        assert_eq!(c.kind, StoreKind::Postgres);
        assert!(!format!("{c:?}").contains("pw"), "the URL must not show in Debug");
        let err = serde_json::from_str::<StoreConfig>(r#"{"kind":"redb","paht":"x"}"#).unwrap_err();
        assert!(err.to_string().contains("paht"), "{err}");
    }

    #[tokio::test]
    async fn postgres_without_url_is_a_clear_error() {
        let c = StoreConfig {
            kind: StoreKind::Postgres,
            ..StoreConfig::default()
        };
        let err = open(&c).await.err().unwrap();
        assert!(err.to_string().contains("needs a `url`"), "{err}");
    }
}
