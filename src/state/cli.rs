//! `flowbridge state …`: the operator's view of the instance-state store —
//! `get` one instance, `list` instances, `purge` old closed ones.
//!
//! `main.rs` only parses [`StateArgs`] and calls [`run`].

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use secrecy::SecretString;

use super::config::{StoreConfig, StoreKind};
use super::store::{InstanceKey, ListFilter, StateStore, now_ms};
use super::{InstanceState, Status, postgres, redb};

/// `flowbridge state`: arguments.
#[derive(Debug, clap::Args)]
pub struct StateArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(subcommand)]
    pub command: StateCommand,
}

/// Which store the `state` commands open.
#[derive(Debug, Clone, clap::Args)]
pub struct StoreArgs {
    /// The kind of store.
    #[arg(
        long = "store",
        env = "FLOWBRIDGE_STATE_STORE",
        value_enum,
        default_value = "redb",
        global = true
    )]
    pub kind: StoreKind,
    /// redb: the state file.
    #[arg(long, env = "FLOWBRIDGE_STATE_PATH", default_value = redb::DEFAULT_PATH, global = true)]
    pub path: PathBuf,
    /// postgres: the database URL.
    #[arg(
        long,
        env = "FLOWBRIDGE_STATE_DATABASE_URL",
        hide_env_values = true,
        global = true
    )]
    pub database_url: Option<String>,
    /// postgres: the schema holding the state tables.
    #[arg(long, env = "FLOWBRIDGE_STATE_SCHEMA", default_value = postgres::DEFAULT_SCHEMA, global = true)]
    pub schema: String,
}

/// The `state` subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum StateCommand {
    /// Print one instance's state as pretty JSON (`applied`: fingerprints of
    /// the recent eventIds, 16 hex digits each); exits 1 if there is none.
    Get {
        /// Workflow id.
        workflow: String,
        /// The instance's serialNumber.
        serial_number: String,
    },
    /// List instances in key order: workflow, serialNumber, status, version,
    /// last write (UTC), positions.
    List {
        /// Only this workflow.
        #[arg(long)]
        workflow: Option<String>,
        /// Only this status: active, completed or cancelled.
        #[arg(long, value_parser = parse_status)]
        status: Option<Status>,
        /// At most N instances.
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
        /// Print each state as one JSON line instead.
        #[arg(long)]
        json: bool,
    },
    /// Delete completed and cancelled instances last written longer ago than
    /// AGE (e.g. 30d, 12h, 15m, 45s); active instances are never purged.
    Purge {
        /// Age such as 30d, 12h, 15m, 45s, 500ms.
        #[arg(long, value_name = "AGE", value_parser = parse_age)]
        older_than: Duration,
    },
}

/// Parses `active`, `completed` or `cancelled`.
pub fn parse_status(s: &str) -> Result<Status, String> {
    match s {
        "active" => Ok(Status::Active),
        "completed" => Ok(Status::Completed),
        "cancelled" => Ok(Status::Cancelled),
        other => Err(format!(
            "unknown status `{other}`: use active, completed or cancelled"
        )),
    }
}

/// Parses an age: a whole number and a unit — `ms`, `s`, `m`, `h`, `d`, `w`.
pub fn parse_age(s: &str) -> Result<Duration, String> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    if digits.is_empty() {
        return Err(format!(
            "invalid age `{s}`: expected a number and a unit, e.g. 30d"
        ));
    }
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("invalid age `{s}`: the number is too large"))?;
    let unit_ms: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 7 * 86_400_000,
        "" => return Err(format!("invalid age `{s}`: missing unit (ms, s, m, h, d, w)")),
        other => {
            return Err(format!(
                "invalid age `{s}`: unknown unit `{other}` (ms, s, m, h, d, w)"
            ));
        }
    };
    n.checked_mul(unit_ms)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("invalid age `{s}`: too large"))
}

/// `ms` since the Unix epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn utc(ms: i64) -> String {
    let (days, rem) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (year, month, day) = super::store::civil_date(days);
    let (h, m, s, milli) = (rem / 3_600_000, rem / 60_000 % 60, rem / 1000 % 60, rem % 1000);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{milli:03}Z")
}

impl StoreArgs {
    /// The store config these flags describe.
    pub fn config(&self) -> StoreConfig {
        StoreConfig {
            kind: self.kind,
            path: self.path.clone(),
            url: self.database_url.clone().map(SecretString::from),
            schema: self.schema.clone(),
            pool_size: 2,
            ..StoreConfig::default()
        }
    }

    fn describe(&self) -> String {
        match self.kind {
            StoreKind::Memory => "the in-memory store".to_owned(),
            StoreKind::Redb => format!("redb {}", self.path.display()),
            StoreKind::Postgres => format!("PostgreSQL schema {}", self.schema),
        }
    }

    async fn open(&self) -> anyhow::Result<Arc<dyn StateStore>> {
        if self.kind == StoreKind::Redb && !self.path.exists() {
            // Reading commands must not create an empty store at a mistyped
            // path.
            anyhow::bail!(
                "no state file at {} (set --path or FLOWBRIDGE_STATE_PATH)",
                self.path.display()
            );
        }
        super::open(&self.config())
            .await
            .with_context(|| format!("cannot open {}", self.describe()))
    }
}

/// Runs a `state` command on a runtime of its own; writes results to `out`
/// and "not found" to `err`. Exit 0, or 1 when `get` finds nothing.
pub fn run(args: StateArgs, out: &mut impl Write, err: &mut impl Write) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(run_async(args, out, err))
}

/// [`run`] inside a runtime.
pub async fn run_async(
    args: StateArgs,
    out: &mut impl Write,
    err: &mut impl Write,
) -> anyhow::Result<ExitCode> {
    let store = args.store.open().await?;
    match args.command {
        StateCommand::Get {
            workflow,
            serial_number,
        } => {
            let key = InstanceKey::new(workflow, serial_number);
            match store.get(&key).await? {
                Some(state) => {
                    serde_json::to_writer_pretty(&mut *out, &state)?;
                    writeln!(out)?;
                }
                None => {
                    writeln!(err, "no state for instance {key} in {}", args.store.describe())?;
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
        StateCommand::List {
            workflow,
            status,
            limit,
            json,
        } => {
            let filter = ListFilter {
                workflow,
                status,
                limit,
            };
            let states = store.list(&filter).await?;
            if json {
                for s in &states {
                    serde_json::to_writer(&mut *out, s)?;
                    writeln!(out)?;
                }
            } else {
                write_table(&states, out)?;
            }
        }
        StateCommand::Purge { older_than } => {
            let age_ms = i64::try_from(older_than.as_millis()).unwrap_or(i64::MAX);
            let before = now_ms().saturating_sub(age_ms);
            let n = store.purge(before).await?;
            writeln!(
                out,
                "purged {n} completed/cancelled instance(s) last written before {}",
                utc(before)
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn write_table(states: &[InstanceState], out: &mut impl Write) -> std::io::Result<()> {
    let ww = states
        .iter()
        .map(|s| s.workflow.len())
        .chain([8])
        .max()
        .unwrap_or(8);
    let sw = states
        .iter()
        .map(|s| s.serial_number.len())
        .chain([6])
        .max()
        .unwrap_or(6);
    writeln!(
        out,
        "{:<ww$}  {:<sw$}  {:<9}  {:>7}  {:<24}  POSITIONS",
        "WORKFLOW", "SERIAL", "STATUS", "VERSION", "UPDATED"
    )?;
    for s in states {
        let positions: Vec<&str> = s.positions.keys().map(String::as_str).collect();
        writeln!(
            out,
            "{:<ww$}  {:<sw$}  {:<9}  {:>7}  {:<24}  {}",
            s.workflow,
            s.serial_number,
            s.status.as_str(),
            s.version,
            utc(s.updated_at_ms),
            positions.join(",")
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages() {
        assert_eq!(parse_age("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse_age("12h"), Ok(Duration::from_secs(12 * 3600)));
        assert_eq!(parse_age("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_age("45s"), Ok(Duration::from_secs(45)));
        assert_eq!(parse_age("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_age("2w"), Ok(Duration::from_secs(14 * 86_400)));
        assert_eq!(parse_age("0s"), Ok(Duration::ZERO));
        for (bad, says) in [
            ("30", "missing unit"),
            ("d", "a number and a unit"),
            ("30y", "unknown unit `y`"),
            ("-1d", "a number"),
            ("99999999999999999999d", "too large"),
            ("9999999999999999d", "too large"),
        ] {
            let e = parse_age(bad).unwrap_err();
            assert!(e.contains(says) && e.contains(bad), "{bad}: {e}");
        }
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(utc(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(utc(1_795_248_000_123), "2026-11-21T08:00:00.123Z");
        assert_eq!(utc(-1), "1969-12-31T23:59:59.999Z");
    }
}
