//! `docker-compose.yml`, the `Dockerfile` and `deploy/` checked without
//! Docker (no engine runs here): every file they reference exists, ports
//! are well-formed and agree with the flowbridge config, every variable the
//! config references is set for the container, the producer replays exactly
//! the sample streams, and Prometheus and Grafana point at what compose runs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use flowbridge::runtime::BridgeConfig;
use flowbridge::workflow::Registry;
use serde_json::Value;

use crate::support;

fn read(rel: &str) -> String {
    std::fs::read_to_string(support::path(rel)).unwrap_or_else(|e| panic!("cannot read {rel}: {e}"))
}

fn yaml(rel: &str) -> Value {
    serde_saphyr::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel} is not YAML: {e}"))
}

fn compose() -> Value {
    yaml("docker-compose.yml")
}

fn services(c: &Value) -> &serde_json::Map<String, Value> {
    c["services"]
        .as_object()
        .expect("docker-compose.yml has services")
}

fn service<'a>(c: &'a Value, name: &str) -> &'a Value {
    services(c)
        .get(name)
        .unwrap_or_else(|| panic!("docker-compose.yml has no service `{name}`"))
}

/// A compose string after compose's own interpolation, with the variables
/// unset (so every `${VAR}` needs a `:-default`: `docker compose up` works
/// without a `.env`).
fn interpolated(text: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body
                .find('}')
                .ok_or_else(|| format!("unclosed ${{ in `{text}`"))?;
            let (name, default) = match body[..end].split_once(":-") {
                Some((n, d)) => (n, d),
                None => return Err(format!("`${{{}}}` in `{text}` has no default", &body[..end])),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("bad variable `{name}` in `{text}`"));
            }
            out.push_str(default);
            rest = &body[end + 1..];
        } else {
            return Err(format!("bare `$` in `{text}` (write `$$`)"));
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// A service's `environment` (map or `KEY=value` list), interpolated.
fn environment(svc: &Value) -> BTreeMap<String, String> {
    let raw: Vec<(String, String)> = match &svc["environment"] {
        Value::Null => Vec::new(),
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    Value::String(s) => s.clone(),
                    other => panic!("environment {k} must be a string (quote it), got {other}"),
                };
                (k.clone(), v)
            })
            .collect(),
        Value::Array(a) => a
            .iter()
            .map(|e| {
                let s = e.as_str().expect("environment entries are strings");
                let (k, v) = s.split_once('=').unwrap_or((s, ""));
                (k.to_owned(), v.to_owned())
            })
            .collect(),
        other => panic!("environment is a map or a list, got {other}"),
    };
    raw.into_iter()
        .map(|(k, v)| {
            let v = interpolated(&v).unwrap_or_else(|e| panic!("environment {k}: {e}"));
            (k, v)
        })
        .collect()
}

/// A bind mount or named volume: `source:target[:mode]`.
#[derive(Debug)]
struct Mount {
    source: String,
    target: String,
}

fn mounts(svc: &Value) -> Vec<Mount> {
    svc["volumes"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|v| {
                    let s = v.as_str().expect("volumes use the short `src:dst[:mode]` syntax");
                    let parts: Vec<&str> = s.split(':').collect();
                    assert!(
                        (2..=3).contains(&parts.len()),
                        "volume `{s}` is not src:dst[:mode]"
                    );
                    if let Some(mode) = parts.get(2) {
                        assert!(["ro", "rw"].contains(mode), "volume `{s}`: mode {mode}");
                    }
                    assert!(parts[1].starts_with('/'), "volume `{s}`: target must be absolute");
                    Mount {
                        source: parts[0].to_owned(),
                        target: parts[1].to_owned(),
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

fn is_bind(source: &str) -> bool {
    source.starts_with('.') || source.starts_with('/')
}

/// The host path of a bind mount (relative to the compose file).
fn host_path(source: &str) -> PathBuf {
    support::root().join(source.strip_prefix("./").unwrap_or(source))
}

/// The host file or directory mounted at `target` (or at a directory that
/// contains it) in `svc`.
fn host_path_of(svc: &Value, target: &str) -> Option<PathBuf> {
    mounts(svc)
        .into_iter()
        .filter(|m| is_bind(&m.source))
        .find_map(|m| {
            let rel = Path::new(target).strip_prefix(&m.target).ok()?;
            let host = host_path(&m.source);
            Some(if rel.as_os_str().is_empty() {
                host
            } else {
                host.join(rel)
            })
        })
}

/// `(host, container)` ports of a service.
fn ports(svc: &Value) -> Vec<(u16, u16)> {
    svc["ports"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| {
                    let s = p.as_str().unwrap_or_else(|| {
                        panic!("port {p} must be a quoted string (YAML 1.1 reads 1:30 as a number)")
                    });
                    let (host, container) = s
                        .split_once(':')
                        .unwrap_or_else(|| panic!("port `{s}` is not HOST:CONTAINER"));
                    let container = container.strip_suffix("/tcp").unwrap_or(container);
                    let port = |t: &str| -> u16 {
                        t.parse::<u16>()
                            .ok()
                            .filter(|p| *p > 0)
                            .unwrap_or_else(|| panic!("port `{s}`: `{t}` is not a port number"))
                    };
                    (port(host), port(container))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A service's `command` as words (a list; a single string is split on
/// whitespace).
fn command(svc: &Value) -> Vec<String> {
    match &svc["command"] {
        Value::Array(a) => a.iter().map(|v| v.as_str().unwrap().to_owned()).collect(),
        Value::String(s) => s.split_whitespace().map(str::to_owned).collect(),
        _ => Vec::new(),
    }
}

/// The value after `flag` in `words`.
fn arg<'a>(words: &'a [String], flag: &str) -> Option<&'a str> {
    words
        .iter()
        .position(|w| w == flag)
        .and_then(|i| words.get(i + 1))
        .map(String::as_str)
}

/// The flowbridge config the compose service runs with, its text and the
/// environment it sees.
fn flowbridge_config(c: &Value) -> (String, BridgeConfig, BTreeMap<String, String>) {
    let svc = service(c, "flowbridge");
    let cmd = command(svc);
    assert_eq!(
        cmd.first().map(String::as_str),
        Some("run"),
        "flowbridge runs `run`: {cmd:?}"
    );
    let target = arg(&cmd, "--config").expect("flowbridge runs with --config");
    let host = host_path_of(svc, target).unwrap_or_else(|| panic!("--config {target} is not mounted"));
    let text = std::fs::read_to_string(&host).unwrap_or_else(|e| panic!("{}: {e}", host.display()));
    let env = environment(svc);
    let cfg: BridgeConfig = flowbridge::config::parse(&text, &|k| env.get(k).cloned(), env.clone())
        .unwrap_or_else(|e| panic!("{}: {e}", host.display()));
    (text, cfg, env)
}

/// `${NAME}` references of a config text (whole-line comments skipped, as
/// the loader does).
fn config_vars(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
        let mut rest = line;
        while let Some(i) = rest.find("${") {
            let after = &rest[i + 2..];
            let end = after.find('}').expect("a closed ${…}");
            out.insert(after[..end].to_owned());
            rest = &after[end + 1..];
        }
    }
    out
}

/// `host:port` of a URL like `http://host:port/…`.
fn host_port(url: &str) -> (String, u16) {
    let u = reqwest::Url::parse(url).unwrap_or_else(|e| panic!("`{url}`: {e}"));
    (
        u.host_str().unwrap().to_owned(),
        u.port_or_known_default().unwrap(),
    )
}

/// The `--listen 0.0.0.0:PORT` port of a simulator service.
fn listen_port(c: &Value, name: &str) -> u16 {
    let cmd = command(service(c, name));
    let listen = arg(&cmd, "--listen").unwrap_or_else(|| panic!("{name} has no --listen"));
    let addr: std::net::SocketAddr = listen
        .parse()
        .unwrap_or_else(|e| panic!("{name} --listen {listen}: {e}"));
    assert!(
        addr.ip().is_unspecified(),
        "{name} must listen on 0.0.0.0 to be reachable, not {listen}"
    );
    addr.port()
}

// ---------- the tests ----------

#[test]
fn every_file_and_volume_compose_references_exists() {
    let c = compose();
    let declared: BTreeSet<&str> = c["volumes"]
        .as_object()
        .map(|m| m.keys().map(String::as_str).collect())
        .unwrap_or_default();
    let names: BTreeSet<&str> = services(&c).keys().map(String::as_str).collect();
    for (name, svc) in services(&c) {
        if let Some(build) = svc.get("build") {
            let context = build["context"]
                .as_str()
                .unwrap_or_else(|| panic!("{name}: build.context"));
            let dir = support::root().join(context);
            assert!(dir.is_dir(), "{name}: build context {} is missing", dir.display());
            let dockerfile = build["dockerfile"].as_str().unwrap_or("Dockerfile");
            assert!(dir.join(dockerfile).is_file(), "{name}: {dockerfile} is missing");
            assert!(
                svc["image"].is_string(),
                "{name}: name the built image, so the services built from it share it"
            );
        } else {
            let image = svc["image"]
                .as_str()
                .unwrap_or_else(|| panic!("{name}: no image and no build"));
            let tag = image.rsplit_once(':').map(|(_, t)| t);
            assert!(
                tag.is_some_and(|t| t != "latest" && !t.contains('/')),
                "{name}: pin the image version, not `{image}`"
            );
        }
        for m in mounts(svc) {
            if is_bind(&m.source) {
                assert!(
                    host_path(&m.source).exists(),
                    "{name}: mounted {} does not exist",
                    m.source
                );
            } else {
                assert!(
                    declared.contains(m.source.as_str()),
                    "{name}: volume `{}` is not declared",
                    m.source
                );
            }
        }
        let deps: Vec<&str> = match &svc["depends_on"] {
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            Value::Object(m) => m.keys().map(String::as_str).collect(),
            _ => Vec::new(),
        };
        for d in deps {
            assert!(names.contains(d), "{name} depends on unknown service `{d}`");
        }
        // Every variable compose interpolates has a default.
        environment(svc);
    }
}

#[test]
fn ports_are_well_formed_and_unique_and_the_metrics_port_agrees() {
    let c = compose();
    let mut seen = BTreeMap::new();
    for (name, svc) in services(&c) {
        for (host, _) in ports(svc) {
            if let Some(other) = seen.insert(host, name.clone()) {
                panic!("host port {host} is published by both {other} and {name}");
            }
        }
    }
    let (_, cfg, _) = flowbridge_config(&c);
    let metrics = cfg.metrics_addr.expect("the compose config serves metrics");
    assert!(
        metrics.ip().is_unspecified(),
        "metrics_addr must listen on 0.0.0.0 in a container"
    );
    let port = metrics.port();
    assert!(
        ports(service(&c, "flowbridge"))
            .iter()
            .any(|&(_, container)| container == port),
        "flowbridge publishes its metrics port {port}"
    );
    let dockerfile = read("Dockerfile");
    assert!(
        dockerfile.lines().any(|l| l.trim() == format!("EXPOSE {port}")),
        "the Dockerfile exposes {port}"
    );
    let prom = yaml("deploy/prometheus.yml");
    let targets: Vec<&str> = prom["scrape_configs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["job_name"] == "flowbridge")
        .flat_map(|s| s["static_configs"].as_array().unwrap())
        .flat_map(|s| s["targets"].as_array().unwrap())
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        targets,
        [format!("flowbridge:{port}")],
        "Prometheus scrapes the flowbridge service"
    );
    // The simulators listen where the config sends requests.
    for (svc, url) in [
        ("poa-sim", &cfg.poa.as_ref().expect("poa section").base_url),
        ("aicc-sim", &cfg.aicc.as_ref().expect("aicc section").base_url),
    ] {
        let (host, port) = host_port(url);
        assert_eq!(host, svc, "{url} names the {svc} service");
        assert_eq!(port, listen_port(&c, svc), "{url}: {svc} listens elsewhere");
    }
    // The brokers are the Kafka service's in-network listener.
    let (host, port) = cfg.kafka.brokers.split_once(':').expect("brokers is host:port");
    assert!(services(&c).contains_key(host), "brokers names service {host}");
    let advertised = environment(service(&c, host))["KAFKA_ADVERTISED_LISTENERS"].clone();
    assert!(
        advertised
            .split(',')
            .any(|l| l.ends_with(&format!("//{host}:{port}"))),
        "Kafka advertises {host}:{port}: {advertised}"
    );
}

#[test]
fn the_flowbridge_config_gets_every_variable_and_checks_against_the_mounted_workflows() {
    let c = compose();
    let (text, cfg, env) = flowbridge_config(&c);
    let vars = config_vars(&text);
    assert!(vars.len() >= 4, "credentials come from the environment: {vars:?}");
    for v in &vars {
        assert!(
            env.contains_key(v),
            "the config references ${{{v}}}, the flowbridge service does not set it"
        );
    }
    // Secrets stay out of the file.
    for section in [&cfg.poa.as_ref().unwrap().auth, &cfg.aicc.as_ref().unwrap().auth] {
        if let flowbridge::sink::AuthConfig::Oauth(_) = section {
        } else {
            panic!("the compose config uses OAuth against the simulators");
        }
    }
    assert!(
        text.contains("client_secret: ${"),
        "secrets are ${{VAR}} references"
    );
    // The simulators accept exactly the credentials flowbridge sends.
    let fb = environment(service(&c, "flowbridge"));
    for (sim, id, secret) in [
        ("poa-sim", "POA_CLIENT_ID", "POA_CLIENT_SECRET"),
        ("aicc-sim", "AICC_CLIENT_ID", "AICC_CLIENT_SECRET"),
    ] {
        let s = environment(service(&c, sim));
        assert_eq!(s.get("FLOWBRIDGE_SIM_CLIENT_ID"), fb.get(id), "{sim} client id");
        assert_eq!(
            s.get("FLOWBRIDGE_SIM_CLIENT_SECRET"),
            fb.get(secret),
            "{sim} client secret"
        );
    }
    // The workflows it names are mounted, load and fit the config.
    let svc = service(&c, "flowbridge");
    let dir = host_path_of(svc, cfg.workflows.to_str().unwrap())
        .unwrap_or_else(|| panic!("workflows {} are not mounted", cfg.workflows.display()));
    let registry = Registry::load_dir(&dir).unwrap_or_else(|p| panic!("{p}"));
    assert!(!registry.is_empty());
    cfg.check(&registry)
        .expect("the compose config checks against its workflows");
    // The state file is on a named volume, so it survives a restart.
    let state_dir = cfg.state.path.parent().unwrap().to_str().unwrap().to_owned();
    assert!(
        mounts(svc)
            .iter()
            .any(|m| !is_bind(&m.source) && m.target == state_dir),
        "the state directory {state_dir} is a named volume"
    );
    // The topics it consumes and dead-letters to are created.
    let init = command(service(&c, "kafka-init")).join(" ");
    let dlq = cfg
        .kafka
        .dlq_topic
        .clone()
        .unwrap_or(format!("{}.dlq", cfg.kafka.topics[0]));
    for topic in cfg.kafka.topics.iter().chain([&dlq]) {
        assert!(
            init.contains(&format!("--topic {topic} ")),
            "kafka-init creates {topic}"
        );
    }
    let partitions: u32 = arg(
        &init.split_whitespace().map(str::to_owned).collect::<Vec<_>>(),
        "--partitions",
    )
    .unwrap()
    .parse()
    .unwrap();
    assert!(
        partitions > 1,
        "several partitions, so lag per partition means something"
    );
}

#[test]
fn the_producer_replays_exactly_the_sample_streams_keyed_by_serial_number() {
    let c = compose();
    let svc = service(&c, "producer");
    let cmd = command(svc).join(" ");
    let (_, cfg, _) = flowbridge_config(&c);
    assert!(
        cmd.contains(&format!("--topic {} ", cfg.kafka.topics[0])),
        "{cmd}"
    );
    assert!(cmd.contains("parse.key=true"), "{cmd}");
    let input = cmd
        .split_once("< ")
        .map(|(_, rest)| rest.split_whitespace().next().unwrap())
        .expect("the producer reads a file on stdin");
    let host = host_path_of(svc, input).unwrap_or_else(|| panic!("{input} is not mounted"));
    let mut expected: Vec<(String, Value)> = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(support::path("workflows/events"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    for f in files {
        for line in std::fs::read_to_string(f)
            .unwrap()
            .lines()
            .filter(|l| !l.trim().is_empty())
        {
            let v: Value = serde_json::from_str(line).unwrap();
            expected.push((v["serialNumber"].as_str().unwrap().to_owned(), v));
        }
    }
    // kafka-console-producer splits key and value at the first tab.
    let actual: Vec<(String, Value)> = std::fs::read_to_string(&host)
        .unwrap()
        .lines()
        .map(|l| {
            let (key, value) = l.split_once('\t').unwrap_or_else(|| panic!("no tab in `{l}`"));
            let v = serde_json::from_str(value).unwrap_or_else(|e| panic!("`{value}`: {e}"));
            (key.to_owned(), v)
        })
        .collect();
    assert!(
        actual == expected,
        "{} is out of date; regenerate it from workflows/events/*.jsonl (README, \"Run with docker compose\")",
        host.display()
    );
}

#[test]
fn the_dockerfile_is_multi_stage_non_root_and_copies_files_that_exist() {
    let text = read("Dockerfile");
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    let stages: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].starts_with("FROM "))
        .collect();
    assert!(stages.len() >= 2, "a builder stage and a runtime stage");
    let runtime = &lines[*stages.last().unwrap()..];
    let user = runtime
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("the runtime stage sets USER");
    assert!(
        !["root", "0", "root:root", "0:0"].contains(&user.trim()),
        "runs as a non-root user, not {user}"
    );
    assert!(
        runtime.contains(&r#"ENTRYPOINT ["flowbridge"]"#),
        "ENTRYPOINT [\"flowbridge\"]"
    );
    for l in &lines {
        if let Some(rest) = l.strip_prefix("COPY ")
            && !rest.starts_with("--from")
        {
            let words: Vec<&str> = rest.split_whitespace().collect();
            for src in &words[..words.len() - 1] {
                if *src != "." {
                    assert!(support::path(src).exists(), "COPY {src}: missing");
                }
            }
        }
    }
    // The build context leaves out build output.
    let ignore = read(".dockerignore");
    assert!(ignore.lines().any(|l| l.trim().trim_end_matches('/') == "target"));
}

#[test]
fn prometheus_and_grafana_load_what_compose_mounts() {
    let c = compose();
    // Prometheus: the config and every rule file are mounted.
    let prom = service(&c, "prometheus");
    let prom_cmd = command(prom);
    let config_target = prom_cmd
        .iter()
        .find_map(|w| w.strip_prefix("--config.file="))
        .unwrap_or("/etc/prometheus/prometheus.yml");
    let config = host_path_of(prom, config_target).expect("the Prometheus config is mounted");
    assert_eq!(config, support::path("deploy/prometheus.yml"));
    let prom_cfg = yaml("deploy/prometheus.yml");
    for rule_file in prom_cfg["rule_files"].as_array().expect("rule_files") {
        let target = rule_file.as_str().unwrap();
        let host = host_path_of(prom, target).unwrap_or_else(|| panic!("rule file {target} is not mounted"));
        let rules: Value = serde_saphyr::from_str(&std::fs::read_to_string(&host).unwrap()).unwrap();
        assert!(!rules["groups"].as_array().unwrap().is_empty());
    }
    let prom_port = ports(prom).first().expect("Prometheus publishes its port").1;

    // Grafana: the provisioning directory and the dashboards.
    let grafana = service(&c, "grafana");
    let provisioning =
        host_path_of(grafana, "/etc/grafana/provisioning").expect("/etc/grafana/provisioning is mounted");
    let datasources: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(provisioning.join("datasources/prometheus.yml")).unwrap(),
    )
    .unwrap();
    let ds = &datasources["datasources"][0];
    assert_eq!(ds["type"], "prometheus");
    assert_eq!(
        host_port(ds["url"].as_str().unwrap()),
        ("prometheus".to_owned(), prom_port),
        "the datasource is the compose Prometheus"
    );
    let uid = ds["uid"].as_str().expect("the datasource has a fixed uid");
    let providers: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(provisioning.join("dashboards/flowbridge.yml")).unwrap(),
    )
    .unwrap();
    let path = providers["providers"][0]["options"]["path"]
        .as_str()
        .expect("a file provider path");
    let dashboards = host_path_of(grafana, path).unwrap_or_else(|| panic!("{path} is not mounted"));
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(dashboards.join("flowbridge.json")).unwrap()).unwrap();
    // Every panel and query uses the provisioned datasource.
    fn uids(v: &Value, out: &mut BTreeSet<String>) {
        match v {
            Value::Object(m) => {
                if let Some(u) = m
                    .get("datasource")
                    .and_then(|d| d.get("uid"))
                    .and_then(Value::as_str)
                {
                    out.insert(u.to_owned());
                }
                m.values().for_each(|c| uids(c, out));
            }
            Value::Array(a) => a.iter().for_each(|c| uids(c, out)),
            _ => {}
        }
    }
    let mut used = BTreeSet::new();
    uids(&dashboard, &mut used);
    assert_eq!(used, BTreeSet::from([uid.to_owned()]));
    let home = environment(grafana)
        .get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
        .cloned();
    if let Some(home) = home {
        assert!(
            host_path_of(grafana, &home).is_some_and(|p| p.is_file()),
            "home dashboard {home}"
        );
    }
}

#[test]
fn the_readme_explains_running_with_docker_compose() {
    let readme = read("README.md");
    assert!(readme.contains("## Run with docker compose"), "README section");
    assert!(readme.contains("docker compose up"));
}

#[test]
fn compose_interpolation_needs_defaults() {
    assert_eq!(interpolated("${A:-x}-$${B}").unwrap(), "x-${B}");
    assert!(interpolated("${A}").is_err());
    assert!(interpolated("a $b").is_err());
}
