//! `flowbridge bench --quick --json` completes and prints one JSON object
//! with the documented keys. Nothing about speed is asserted: figures from
//! a debug build on a shared machine mean nothing.

use std::process::Command;

#[test]
fn quick_bench_completes_and_prints_one_json_object() {
    let out = Command::new(env!("CARGO_BIN_EXE_flowbridge"))
        .args([
            "bench",
            "--quick",
            "--json",
            // Smaller than --quick itself, so a debug build stays fast.
            "--events",
            "600",
            "--instances",
            "60",
            "--naive-events",
            "30",
            "--paced-secs",
            "0.5",
        ])
        // The embedded broker, whatever the environment says.
        .env_remove("FLOWBRIDGE_TEST_BOOTSTRAP")
        .output()
        .expect("the flowbridge binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench failed: {stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON object ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    for key in [
        "bare_events_per_s",
        "flowbridge_events_per_s",
        "naive_events_per_s",
        "ratio_b_over_a",
        "ratio_b_over_c",
        "p50_ms",
        "p99_ms",
        "peak_rss_bytes",
        "cpu_s_per_m_events",
    ] {
        assert!(
            report[key].is_number(),
            "`{key}` missing or not a number: {report}"
        );
    }
    let runs: Vec<&str> = report["runs"]
        .as_array()
        .expect("runs is an array")
        .iter()
        .map(|r| r["name"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(runs, ["bare", "flowbridge", "flowbridge_5ms", "naive", "paced"]);
    assert_eq!(report["events"], 600);
}
