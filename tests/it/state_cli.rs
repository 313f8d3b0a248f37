//! `flowbridge state get|list|purge` run as a process against a redb file.

use std::path::Path;
use std::process::{Command, Output};

use flowbridge::state::{InstanceKey, InstanceState, RedbStore, StateStore, Status, now_ms};

fn flowbridge(args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_flowbridge"));
    for var in [
        "FLOWBRIDGE_STATE_STORE",
        "FLOWBRIDGE_STATE_PATH",
        "FLOWBRIDGE_STATE_DATABASE_URL",
        "FLOWBRIDGE_STATE_SCHEMA",
    ] {
        cmd.env_remove(var);
    }
    cmd.args(args).output().expect("run flowbridge")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Writes the instances and closes the file (redb locks it while open).
async fn seed(path: &Path) -> Vec<InstanceState> {
    let store = RedbStore::open(path).await.unwrap();
    let mut a = InstanceState::new("leave-approval", "NUM0001");
    a.positions.insert("dean".into(), 1);
    a.latest_todo = Some("fb-1".into());
    a.remember("e-1");
    let b = InstanceState::new("leave-approval", "NUM0002");
    let mut c = InstanceState::new("leave-approval", "NUM0003");
    c.status = Status::Completed;
    let d = InstanceState::new("case-flow", "C1");
    store.put_batch(&[a, b, c, d]).await.unwrap();
    store.list(&Default::default()).await.unwrap()
}

#[tokio::test]
async fn state_get_list_purge_against_a_redb_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    let seeded = seed(&path).await;
    let p = path.to_str().unwrap();

    // get: pretty JSON of the stored state.
    let out = flowbridge(&["state", "--path", p, "get", "leave-approval", "NUM0001"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let got: InstanceState = serde_json::from_slice(&out.stdout).unwrap();
    let want = seeded.iter().find(|s| s.serial_number == "NUM0001").unwrap();
    assert_eq!(&got, want);
    assert!(
        text(&out.stdout).contains("\n  \"workflow\": \"leave-approval\""),
        "pretty JSON"
    );

    // get of an unknown instance: a message and exit 1; the path may also come from the env.
    let out = Command::new(env!("CARGO_BIN_EXE_flowbridge"))
        .args(["state", "get", "leave-approval", "NOPE"])
        .env("FLOWBRIDGE_STATE_PATH", p)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(
        text(&out.stderr).contains("no state for instance leave-approval/NOPE in redb"),
        "{}",
        text(&out.stderr)
    );

    // list with filters and limit.
    let out = flowbridge(&[
        "state",
        "list",
        "--workflow",
        "leave-approval",
        "--status",
        "active",
        "--path",
        p,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: Vec<String> = text(&out.stdout).lines().map(String::from).collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(lines[0].starts_with("WORKFLOW"));
    assert!(
        lines[1].starts_with("leave-approval  NUM0001  active") && lines[1].ends_with("dean"),
        "{lines:?}"
    );
    assert!(lines[2].contains("NUM0002"));
    let out = flowbridge(&["state", "--path", p, "list", "--limit", "2", "--json"]);
    let serials: Vec<String> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<InstanceState>(l).unwrap().serial_number)
        .collect();
    assert_eq!(serials, ["C1", "NUM0001"]);

    // purge: nothing is 30 days old; with 0s the completed one goes.
    let out = flowbridge(&["state", "--path", p, "purge", "--older-than", "30d"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("purged 0 "),
        "{}",
        text(&out.stdout)
    );
    let written = seeded.iter().map(|s| s.updated_at_ms).max().unwrap();
    while now_ms() <= written {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let out = flowbridge(&["state", "--path", p, "purge", "--older-than", "0s"]);
    assert!(
        text(&out.stdout).starts_with("purged 1 "),
        "{}",
        text(&out.stdout)
    );
    let store = RedbStore::open(&path).await.unwrap();
    assert_eq!(
        store
            .get(&InstanceKey::new("leave-approval", "NUM0003"))
            .await
            .unwrap(),
        None
    );
    assert_eq!(store.list(&Default::default()).await.unwrap().len(), 3);
}

#[test]
fn state_errors_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.redb");
    let out = flowbridge(&["state", "--path", missing.to_str().unwrap(), "get", "w", "s"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no state file at"),
        "{}",
        text(&out.stderr)
    );
    assert!(!missing.exists(), "a read must not create the file");

    let out = flowbridge(&["state", "purge", "--older-than", "30x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("unknown unit `x`"),
        "{}",
        text(&out.stderr)
    );

    let out = flowbridge(&["state", "list", "--status", "open"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("unknown status `open`"),
        "{}",
        text(&out.stderr)
    );

    let out = flowbridge(&["state", "--store", "postgres", "list"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("needs a `url`"),
        "{}",
        text(&out.stderr)
    );
}
