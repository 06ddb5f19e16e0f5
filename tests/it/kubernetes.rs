//! `examples/kubernetes`, checked offline (no cluster, no Docker): every YAML file parses, the
//! Job, the config map, the secret template, the Dockerfile and the READMEs agree with each
//! other, and the config map's `run.toml` passes shopsim's own config parser.
//!
//! [`problems`] lists every broken rule. `manifests_are_consistent` wants none;
//! `each_check_catches_a_broken_manifest` breaks the real files one way at a time (in memory)
//! and wants the matching problem reported, so no check can quietly pass everything.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use yaml_rust2::{Yaml, YamlLoader};

const EXAMPLE: &str = "examples/kubernetes";
const JOB: &str = "examples/kubernetes/job.yaml";
const CONFIG_MAP: &str = "examples/kubernetes/configmap.yaml";
const SECRET: &str = "examples/kubernetes/secret.example.yaml";
const DOCKERFILE: &str = "examples/kubernetes/Dockerfile";
const README: &str = "examples/kubernetes/README.md";
const TOP_README: &str = "README.md";
const TOOLCHAIN: &str = "rust-toolchain.toml";

/// File texts by path relative to the repository root.
type Files = BTreeMap<String, String>;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every file of `examples/kubernetes`, the top-level README and `rust-toolchain.toml`.
fn read_files() -> Files {
    let mut files = Files::new();
    let dir = root().join(EXAMPLE);
    for entry in std::fs::read_dir(&dir).expect("examples/kubernetes is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_file() {
            let name = path
                .file_name()
                .expect("a file has a name")
                .to_string_lossy()
                .into_owned();
            let text = std::fs::read_to_string(&path).expect("the example's files are text");
            files.insert(format!("{EXAMPLE}/{name}"), text);
        }
    }
    for name in [TOP_README, TOOLCHAIN] {
        let text = std::fs::read_to_string(root().join(name)).expect("a top-level file");
        files.insert(name.to_string(), text);
    }
    files
}

/// A parsed YAML document and the file it came from.
struct Doc<'a> {
    file: &'a str,
    yaml: Yaml,
}

impl Doc<'_> {
    fn kind(&self) -> Option<&str> {
        self.yaml["kind"].as_str()
    }

    fn name(&self) -> Option<&str> {
        self.yaml["metadata"]["name"].as_str()
    }
}

/// The strings of a YAML sequence (non-strings are left out).
fn strings(y: &Yaml) -> Vec<&str> {
    y.as_vec()
        .map(|v| v.iter().filter_map(Yaml::as_str).collect())
        .unwrap_or_default()
}

/// The entries of a YAML sequence of mappings whose `name` is `name`.
fn named<'a>(list: &'a Yaml, name: &str) -> Option<&'a Yaml> {
    list.as_vec()?
        .iter()
        .find(|item| item["name"].as_str() == Some(name))
}

/// Every broken rule, one line each (empty when the example is consistent).
fn problems(files: &Files) -> Vec<String> {
    let mut p = Vec::new();
    let docs = parse_yaml_files(files, &mut p);
    let job = check_job(&docs, &mut p);
    check_config(&docs, job.as_ref(), &mut p);
    check_secret(files, &docs, job.as_ref(), &mut p);
    check_dockerfile(files, job.as_ref(), &mut p);
    check_readmes(files, &mut p);
    p
}

/// Every YAML file of the example parses, and each document names its apiVersion, kind and
/// name.
fn parse_yaml_files<'a>(files: &'a Files, p: &mut Vec<String>) -> Vec<Doc<'a>> {
    let mut docs = Vec::new();
    let yaml_files: Vec<_> = files
        .iter()
        .filter(|(name, _)| {
            name.starts_with(EXAMPLE) && (name.ends_with(".yaml") || name.ends_with(".yml"))
        })
        .collect();
    if yaml_files.is_empty() {
        p.push(format!("{EXAMPLE} holds no YAML file"));
    }
    for (file, text) in yaml_files {
        match YamlLoader::load_from_str(text) {
            Ok(parsed) => {
                for yaml in parsed.into_iter().filter(|y| !y.is_null()) {
                    let doc = Doc { file, yaml };
                    if doc.yaml["apiVersion"].as_str().is_none()
                        || doc.kind().is_none()
                        || doc.name().is_none()
                    {
                        p.push(format!(
                            "{file}: every document needs apiVersion, kind and metadata.name"
                        ));
                    }
                    docs.push(doc);
                }
            }
            Err(e) => p.push(format!("{file}: does not parse as YAML: {e}")),
        }
    }
    docs
}

/// What the other checks need from the Job.
struct JobFacts {
    file: String,
    /// `secretKeyRef` of DATABASE_URL: (secret name, key).
    secret_ref: Option<(String, String)>,
    /// SHOPSIM_CONFIG.
    config_path: Option<String>,
    /// The pod's `volumeMounts` and `volumes` (the shopsim container's).
    mounts: Yaml,
    volumes: Yaml,
    /// `runAsUser` of the pod or container.
    run_as_user: Option<i64>,
}

fn check_job(docs: &[Doc], p: &mut Vec<String>) -> Option<JobFacts> {
    let jobs: Vec<&Doc> = docs.iter().filter(|d| d.kind() == Some("Job")).collect();
    let [doc] = jobs.as_slice() else {
        p.push(format!(
            "{EXAMPLE}: expected exactly one kind: Job, found {}",
            jobs.len()
        ));
        return None;
    };
    let file = doc.file;
    let job = &doc.yaml;
    if job["apiVersion"].as_str() != Some("batch/v1") {
        p.push(format!("{file}: the Job's apiVersion must be batch/v1"));
    }
    let spec = &job["spec"];
    if spec["completionMode"].as_str() != Some("Indexed") {
        p.push(format!(
            "{file}: completionMode must be Indexed (each pod gets its shard in JOB_COMPLETION_INDEX)"
        ));
    }
    let pod = &spec["template"]["spec"];
    let containers = pod["containers"].as_vec().map(Vec::as_slice).unwrap_or(&[]);
    let container = match containers {
        [only] => only,
        _ => match named(&pod["containers"], "shopsim") {
            Some(c) => c,
            None => {
                p.push(format!(
                    "{file}: the pod needs one container (or one named shopsim)"
                ));
                return None;
            }
        },
    };
    let env = &container["env"];
    for var in env.as_vec().map(Vec::as_slice).unwrap_or(&[]) {
        let name = var["name"].as_str().unwrap_or("?");
        let value = &var["value"];
        if !value.is_badvalue() && value.as_str().is_none() {
            p.push(format!(
                "{file}: env {name}: the value must be a (quoted) string"
            ));
        }
        if value
            .as_str()
            .is_some_and(|v| v.starts_with("postgres") && v.contains("://"))
        {
            p.push(format!(
                "{file}: env {name} holds a literal database URL; use a secretKeyRef"
            ));
        }
    }
    let env_value = |name: &str| named(env, name).and_then(|v| v["value"].as_str());
    // Each pod's shard is its index: a fixed one would give every pod the same shard.
    if named(env, "JOB_COMPLETION_INDEX").is_some() {
        p.push(format!(
            "{file}: env JOB_COMPLETION_INDEX is set by Kubernetes per pod; a fixed value gives every pod the same shard"
        ));
    }
    if strings(&container["args"])
        .iter()
        .any(|a| a.starts_with("--shard=") || *a == "--shard")
    {
        p.push(format!(
            "{file}: no --shard in args: every pod would run the same shard (SHOPSIM_SHARDS + JOB_COMPLETION_INDEX pick it)"
        ));
    }

    // Shards: one pod per index, all at once, as many as shopsim is told.
    let completions = spec["completions"].as_i64();
    let parallelism = spec["parallelism"].as_i64();
    let shards = env_value("SHOPSIM_SHARDS").and_then(|v| v.parse::<i64>().ok());
    match (completions, parallelism, shards) {
        (Some(c), Some(par), Some(s)) if c == par && par == s && c >= 1 => {}
        _ => p.push(format!(
            "{file}: completions ({completions:?}), parallelism ({parallelism:?}) and env SHOPSIM_SHARDS ({shards:?}) must be the same number"
        )),
    }

    // Retries: per index, which needs restartPolicy Never; a global cap that leaves them room.
    let per_index = spec["backoffLimitPerIndex"].as_i64();
    if per_index.is_none_or(|n| n < 1) {
        p.push(format!(
            "{file}: backoffLimitPerIndex must be at least 1 (a shard's pod is retried on its own index)"
        ));
    }
    if pod["restartPolicy"].as_str() != Some("Never") {
        p.push(format!(
            "{file}: restartPolicy must be Never (backoffLimitPerIndex and podFailurePolicy require it)"
        ));
    }
    match spec["backoffLimit"].as_i64() {
        Some(b) if b >= per_index.unwrap_or(0) => {}
        other => p.push(format!(
            "{file}: backoffLimit ({other:?}) must be set, and at least backoffLimitPerIndex ({per_index:?})"
        )),
    }

    // The command: shopsim's ENTRYPOINT with `run --no-tui`.
    if !container["command"].is_badvalue() {
        p.push(format!(
            "{file}: no command: the image's ENTRYPOINT is shopsim, the Job gives args"
        ));
    }
    let args = strings(&container["args"]);
    if args.first() != Some(&"run") {
        p.push(format!(
            "{file}: the container's args must start with `run`"
        ));
    }
    if !args.contains(&"--no-tui") {
        p.push(format!(
            "{file}: the container's args must include --no-tui"
        ));
    }

    // A graceful stop (in-flight steps end, HTTP requests time out after 30 s) needs time.
    match pod["terminationGracePeriodSeconds"].as_i64() {
        Some(s) if s >= 60 => {}
        other => p.push(format!(
            "{file}: terminationGracePeriodSeconds ({other:?}) must be at least 60 so shopsim stops gracefully at SIGTERM"
        )),
    }
    for kind in ["requests", "limits"] {
        for resource in ["cpu", "memory"] {
            if container["resources"][kind][resource].is_badvalue() {
                p.push(format!("{file}: resources.{kind}.{resource} must be set"));
            }
        }
    }

    // The database URL comes from a secret, never a literal.
    let secret_ref = match named(env, "DATABASE_URL") {
        None => {
            p.push(format!("{file}: env DATABASE_URL is missing"));
            None
        }
        Some(var) => {
            if !var["value"].is_badvalue() {
                p.push(format!(
                    "{file}: env DATABASE_URL must never be a literal value; use valueFrom.secretKeyRef"
                ));
            }
            let r = &var["valueFrom"]["secretKeyRef"];
            match (r["name"].as_str(), r["key"].as_str()) {
                (Some(name), Some(key)) => Some((name.to_string(), key.to_string())),
                _ => {
                    p.push(format!(
                        "{file}: env DATABASE_URL needs valueFrom.secretKeyRef with name and key"
                    ));
                    None
                }
            }
        }
    };

    // Prometheus: the metrics port is declared.
    if let Some(addr) = env_value("SHOPSIM_METRICS_ADDR") {
        let port = addr.rsplit(':').next().and_then(|p| p.parse::<i64>().ok());
        let declared = container["ports"]
            .as_vec()
            .is_some_and(|ports| ports.iter().any(|x| x["containerPort"].as_i64() == port));
        if !declared {
            p.push(format!(
                "{file}: SHOPSIM_METRICS_ADDR's port ({port:?}) is not a containerPort"
            ));
        }
    }

    let non_root = |ctx: &Yaml| ctx["runAsNonRoot"].as_bool() == Some(true);
    if !non_root(&pod["securityContext"]) && !non_root(&container["securityContext"]) {
        p.push(format!("{file}: securityContext.runAsNonRoot must be true"));
    }
    let run_as_user = container["securityContext"]["runAsUser"]
        .as_i64()
        .or(pod["securityContext"]["runAsUser"].as_i64());

    let config_path = env_value("SHOPSIM_CONFIG").map(str::to_string);
    if config_path.is_none() {
        p.push(format!("{file}: env SHOPSIM_CONFIG is missing"));
    }
    Some(JobFacts {
        file: file.to_string(),
        secret_ref,
        config_path,
        mounts: container["volumeMounts"].clone(),
        volumes: pod["volumes"].clone(),
        run_as_user,
    })
}

/// SHOPSIM_CONFIG is a file of a config map mounted at its directory, and that file is a
/// configuration shopsim accepts.
fn check_config(docs: &[Doc], job: Option<&JobFacts>, p: &mut Vec<String>) {
    let Some(job) = job else { return };
    let Some(config_path) = &job.config_path else {
        return;
    };
    let file = &job.file;
    let path = Path::new(config_path);
    let (Some(dir), Some(file_name)) = (
        path.parent().and_then(Path::to_str),
        path.file_name().and_then(|n| n.to_str()),
    ) else {
        p.push(format!(
            "{file}: SHOPSIM_CONFIG ({config_path}) must be a file path"
        ));
        return;
    };
    let Some(mount) = job
        .mounts
        .as_vec()
        .and_then(|m| m.iter().find(|m| m["mountPath"].as_str() == Some(dir)))
    else {
        p.push(format!(
            "{file}: no volume is mounted at {dir}, the directory of SHOPSIM_CONFIG"
        ));
        return;
    };
    let volume_name = mount["name"].as_str().unwrap_or("?");
    let Some(volume) = named(&job.volumes, volume_name) else {
        p.push(format!("{file}: the pod has no volume {volume_name}"));
        return;
    };
    let Some(map_name) = volume["configMap"]["name"].as_str() else {
        p.push(format!(
            "{file}: volume {volume_name} (mounted at {dir}) must be a configMap"
        ));
        return;
    };
    // With `items`, the file is the item whose path is the file name; without, the key itself.
    let key = match volume["configMap"]["items"].as_vec() {
        Some(items) => match items.iter().find(|i| i["path"].as_str() == Some(file_name)) {
            Some(item) => item["key"].as_str().unwrap_or("?").to_string(),
            None => {
                p.push(format!(
                    "{file}: volume {volume_name} lists items but none with path {file_name} (SHOPSIM_CONFIG)"
                ));
                return;
            }
        },
        None => file_name.to_string(),
    };
    let Some(map) = docs
        .iter()
        .find(|d| d.kind() == Some("ConfigMap") && d.name() == Some(map_name))
    else {
        p.push(format!("{EXAMPLE}: no ConfigMap named {map_name}"));
        return;
    };
    let Some(text) = map.yaml["data"][key.as_str()].as_str() else {
        p.push(format!(
            "{}: config map {map_name} has no data key {key}",
            map.file
        ));
        return;
    };
    let map_file = map.file;
    if let Err(e) = shopsim::cli::check_config_text(text) {
        p.push(format!(
            "{map_file}: {key} is refused by shopsim's config parser: {e:#}"
        ));
    }
    let table: toml::Table = match toml::from_str(text) {
        Ok(t) => t,
        Err(e) => {
            p.push(format!("{map_file}: {key} is not TOML: {e}"));
            return;
        }
    };
    // Every shard must resolve the same run: an explicit id and first day.
    for required in ["run-id", "start"] {
        if !table.contains_key(required) {
            p.push(format!(
                "{map_file}: {key} must set {required} (every shard must resolve the same run)"
            ));
        }
    }
    if table.contains_key("database-url") {
        p.push(format!(
            "{map_file}: {key} must not hold database-url: it comes from the secret"
        ));
    }
    // The image copies behaviors/: the persona set must be one of its folders.
    let set = table
        .get("persona-set")
        .and_then(toml::Value::as_str)
        .unwrap_or("grocery");
    if !root()
        .join("behaviors")
        .join(set)
        .join("main.rhai")
        .is_file()
    {
        p.push(format!(
            "{map_file}: persona-set {set} is not a folder of behaviors/ (the image holds those)"
        ));
    }
}

/// DATABASE_URL's secret is the one secret.example.yaml and the README describe, and the
/// template holds a placeholder rather than a URL.
fn check_secret(files: &Files, docs: &[Doc], job: Option<&JobFacts>, p: &mut Vec<String>) {
    let Some((name, key)) = job.and_then(|j| j.secret_ref.clone()) else {
        return;
    };
    let mut described = false;
    if let Some(secret) = docs
        .iter()
        .find(|d| d.kind() == Some("Secret") && d.file == SECRET)
    {
        described = true;
        if secret.name() != Some(name.as_str()) {
            p.push(format!(
                "{SECRET}: the secret is named {:?}, the Job's DATABASE_URL reads {name}",
                secret.name()
            ));
        }
        let value = secret.yaml["stringData"][key.as_str()]
            .as_str()
            .or(secret.yaml["data"][key.as_str()].as_str());
        match value {
            None => p.push(format!(
                "{SECRET}: no key {key} (the Job's DATABASE_URL reads it)"
            )),
            Some(v) if !(v.contains('<') && v.contains('>')) => p.push(format!(
                "{SECRET}: {key} must be a <placeholder>, not a real URL"
            )),
            Some(_) => {}
        }
    }
    // Every `kubectl create secret generic NAME --from-literal=KEY=…` shown must match.
    for file in [README, SECRET] {
        let Some(text) = files.get(file) else {
            continue;
        };
        let text = text.replace("\\\n", " ").replace("\n#", " ");
        for (i, _) in text.match_indices("kubectl create secret generic") {
            described = true;
            let words: Vec<&str> = text[i..].split_whitespace().take(8).collect();
            let secret_name = words.get(4).copied().unwrap_or("");
            if secret_name != name {
                p.push(format!(
                    "{file}: `kubectl create secret generic {secret_name}`, but the Job reads the secret {name}"
                ));
            }
            let literal = words
                .iter()
                .find_map(|w| w.strip_prefix("--from-literal="))
                .and_then(|w| w.split('=').next())
                .unwrap_or("");
            if literal != key {
                p.push(format!(
                    "{file}: `kubectl create secret` sets key {literal:?}, but the Job reads {key}"
                ));
            }
        }
    }
    if !described {
        p.push(format!(
            "{EXAMPLE}: the secret {name} is described neither by {SECRET} nor by `kubectl create secret generic` in {README}"
        ));
    }
}

/// One Dockerfile instruction (continuation lines joined, comments left out).
struct Instruction {
    keyword: String,
    rest: String,
}

fn dockerfile_instructions(text: &str) -> Vec<Instruction> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                let full = std::mem::take(&mut current);
                let (keyword, rest) = full.split_once(char::is_whitespace).unwrap_or((&full, ""));
                out.push(Instruction {
                    keyword: keyword.to_ascii_uppercase(),
                    rest: rest.trim().to_string(),
                });
            }
        }
    }
    out
}

/// A stage: its FROM image, its name, its instructions.
struct Stage {
    image: String,
    name: Option<String>,
    body: Vec<Instruction>,
}

fn check_dockerfile(files: &Files, job: Option<&JobFacts>, p: &mut Vec<String>) {
    let Some(text) = files.get(DOCKERFILE) else {
        p.push(format!("{DOCKERFILE} is missing"));
        return;
    };
    let mut stages: Vec<Stage> = Vec::new();
    for ins in dockerfile_instructions(text) {
        if ins.keyword == "FROM" {
            let words: Vec<&str> = ins
                .rest
                .split_whitespace()
                .filter(|w| !w.starts_with("--"))
                .collect();
            let name = match words.as_slice() {
                [_, as_, name] if as_.eq_ignore_ascii_case("as") => Some(name.to_string()),
                _ => None,
            };
            stages.push(Stage {
                image: words.first().copied().unwrap_or("").to_string(),
                name,
                body: Vec::new(),
            });
        } else if let Some(stage) = stages.last_mut() {
            stage.body.push(ins);
        }
    }
    // The builder: a rust image of the pinned toolchain that runs the locked release build.
    let builds = |s: &Stage| {
        s.body.iter().any(|i| {
            i.keyword == "RUN"
                && i.rest.contains("cargo build")
                && i.rest.contains("--release")
                && i.rest.contains("--locked")
        })
    };
    let Some(builder) = stages
        .iter()
        .find(|s| s.image.starts_with("rust:") && s.name.is_some())
    else {
        p.push(format!(
            "{DOCKERFILE}: needs a named builder stage `FROM rust:… AS builder`"
        ));
        return;
    };
    if !builds(builder) {
        p.push(format!(
            "{DOCKERFILE}: the builder stage must run `cargo build --release --locked`"
        ));
    }
    let builder_name = builder.name.clone().unwrap_or_default();
    let channel = files
        .get(TOOLCHAIN)
        .and_then(|t| toml::from_str::<toml::Table>(t).ok())
        .and_then(|t| {
            t.get("toolchain")
                .and_then(|v| v.get("channel"))
                .and_then(toml::Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_default();
    let tag = builder.image.trim_start_matches("rust:");
    if channel.is_empty() || !tag.starts_with(&channel) {
        p.push(format!(
            "{DOCKERFILE}: the builder image {} must be the toolchain of {TOOLCHAIN} ({channel})",
            builder.image
        ));
    }
    // The runtime: the last stage, slim Debian of the builder's release (the same glibc).
    let Some(runtime) = stages.last().filter(|s| s.name != builder.name) else {
        p.push(format!(
            "{DOCKERFILE}: the last stage must be a runtime stage, not the builder"
        ));
        return;
    };
    let codename = runtime
        .image
        .strip_prefix("debian:")
        .and_then(|t| t.strip_suffix("-slim"));
    match codename {
        Some(c) if tag.ends_with(&format!("-{c}")) => {}
        _ => p.push(format!(
            "{DOCKERFILE}: the runtime image {} must be debian:<release>-slim of the builder's release ({})",
            runtime.image, builder.image
        )),
    }
    let copies = |what: &str| {
        runtime
            .body
            .iter()
            .any(|i| i.keyword == "COPY" && i.rest.contains(what))
    };
    if !copies(&format!("--from={builder_name}")) {
        p.push(format!(
            "{DOCKERFILE}: the runtime stage must COPY --from={builder_name} the binary"
        ));
    }
    if !copies("behaviors") {
        p.push(format!(
            "{DOCKERFILE}: the runtime stage must copy behaviors/ (persona sets are read at run time)"
        ));
    }
    if !runtime
        .body
        .iter()
        .any(|i| i.keyword == "RUN" && i.rest.contains("ca-certificates"))
    {
        p.push(format!(
            "{DOCKERFILE}: the runtime stage must install ca-certificates"
        ));
    }
    let user = runtime
        .body
        .iter()
        .rev()
        .find(|i| i.keyword == "USER")
        .map(|i| i.rest.clone());
    let uid = user.as_deref().map(|u| u.split(':').next().unwrap_or(""));
    match uid {
        None | Some("root") | Some("0") => p.push(format!(
            "{DOCKERFILE}: the runtime stage must switch to a non-root USER"
        )),
        Some(u) => {
            if let (Ok(uid), Some(job_uid)) = (u.parse::<i64>(), job.and_then(|j| j.run_as_user))
                && uid != job_uid
            {
                p.push(format!(
                    "{DOCKERFILE}: USER {uid} differs from the Job's runAsUser {job_uid}"
                ));
            }
        }
    }
    if !runtime
        .body
        .iter()
        .any(|i| i.keyword == "ENTRYPOINT" && i.rest.contains("shopsim"))
    {
        p.push(format!(
            "{DOCKERFILE}: the runtime stage needs ENTRYPOINT [\"shopsim\"]"
        ));
    }
}

fn check_readmes(files: &Files, p: &mut Vec<String>) {
    if !files
        .get(TOP_README)
        .is_some_and(|t| t.contains("examples/kubernetes"))
    {
        p.push(format!("{TOP_README} must point at examples/kubernetes"));
    }
    let Some(readme) = files.get(README) else {
        p.push(format!("{README} is missing"));
        return;
    };
    for needed in [
        "shopsim status",
        "shopsim report",
        "SHOPSIM_SHARDS",
        "SHOPSIM_LEASE_TTL",
        "6543",
    ] {
        if !readme.contains(needed) {
            p.push(format!("{README} must explain {needed}"));
        }
    }
}

#[test]
fn manifests_are_consistent() {
    let found = problems(&read_files());
    assert!(
        found.is_empty(),
        "examples/kubernetes:\n  {}",
        found.join("\n  ")
    );
}

/// Each rule, broken once in the real files: the problem it names must be reported.
#[test]
fn each_check_catches_a_broken_manifest() {
    let files = read_files();
    #[rustfmt::skip]
    let breaks: &[(&str, &str, &str, &str)] = &[
        // (file, text, replaced by, expected in a problem)
        (JOB, "spec:\n", "spec: [\n", "does not parse as YAML"),
        (JOB, "kind: Job", "kind: CronJob", "exactly one kind: Job"),
        (JOB, "apiVersion: batch/v1", "apiVersion: batch/v2", "apiVersion must be batch/v1"),
        (JOB, "completionMode: Indexed", "completionMode: NonIndexed", "completionMode must be Indexed"),
        (JOB, "completions: 3", "completions: 4", "must be the same number"),
        (JOB, "parallelism: 3", "parallelism: 2", "must be the same number"),
        (JOB, "- name: SHOPSIM_SHARDS\n              value: \"3\"", "- name: SHOPSIM_SHARDS\n              value: \"2\"", "must be the same number"),
        (JOB, "- name: SHOPSIM_SHARDS\n              value: \"3\"", "- name: SHOPSIM_SHARDS\n              value: 3", "must be a (quoted) string"),
        (JOB, "backoffLimitPerIndex: 3", "maxFailedIndexes: 3", "backoffLimitPerIndex must be at least 1"),
        (JOB, "restartPolicy: Never", "restartPolicy: OnFailure", "restartPolicy must be Never"),
        (JOB, "backoffLimit: 6", "backoffLimit: 1", "backoffLimit (Some(1))"),
        (JOB, "args: [\"run\", \"--no-tui\"", "args: [\"serve\", \"--no-tui\"", "must start with `run`"),
        (JOB, "args: [\"run\", \"--no-tui\", ", "args: [\"run\", ", "must include --no-tui"),
        (JOB, "- name: SHOPSIM_SHARDS", "- name: JOB_COMPLETION_INDEX\n              value: \"0\"\n            - name: SHOPSIM_SHARDS", "same shard"),
        (JOB, "\"--no-report\"]", "\"--no-report\", \"--shard\", \"0/3\"]", "no --shard in args"),
        (JOB, "          args:", "          command: [\"/bin/sh\"]\n          args:", "no command"),
        (JOB, "terminationGracePeriodSeconds: 120", "terminationGracePeriodSeconds: 10", "terminationGracePeriodSeconds"),
        (JOB, "              memory: 1Gi", "              ephemeral-storage: 1Gi", "resources.limits.memory"),
        (JOB, "                  name: shopsim-database", "                  name: shopsim-db", "the Job reads the secret shopsim-db"),
        (JOB, "key: database-url", "key: url", "but the Job reads url"),
        (JOB, "valueFrom:\n                secretKeyRef:\n                  name: shopsim-database\n                  key: database-url",
              "value: \"postgres://shopsim:pw@db:5432/shop\"", "literal database URL"),
        (JOB, "value: /etc/shopsim/run.toml", "value: /etc/shopsim/conf/run.toml", "the directory of SHOPSIM_CONFIG"),
        (JOB, "- key: run.toml\n                path: run.toml", "- key: run.toml\n                path: shopsim.toml", "none with path run.toml"),
        (JOB, "configMap:\n            name: shopsim-run", "configMap:\n            name: shopsim-config", "no ConfigMap named shopsim-config"),
        (JOB, "containerPort: 9464", "containerPort: 9465", "not a containerPort"),
        (JOB, "runAsNonRoot: true", "runAsNonRoot: false", "runAsNonRoot"),
        (JOB, "runAsUser: 10001", "runAsUser: 1000", "differs from the Job's runAsUser"),
        (CONFIG_MAP, "  run.toml: |", "  config.toml: |", "has no data key run.toml"),
        (CONFIG_MAP, "agents = 30000", "agent = 30000", "refused by shopsim's config parser"),
        (CONFIG_MAP, "time-scale = \"max\"", "time-scale = \"fast\"", "time-scale"),
        (CONFIG_MAP, "max-outage = \"30m\"", "max-outage = \"half an hour\"", "max-outage"),
        (CONFIG_MAP, "\"errors.rate<1%\"", "\"errors.rate<<1%\"", "refused by shopsim's config parser"),
        (CONFIG_MAP, "days = 28", "days = 0", "days"),
        (CONFIG_MAP, "timezone = \"UTC\"", "timezone = \"Mars/Olympus\"", "not an IANA time zone"),
        (CONFIG_MAP, "persona-set = \"grocery\"", "persona-set = \"groceries\"", "persona-set groceries"),
        (CONFIG_MAP, "    start = \"2024-01-01\"", "    # start = \"2024-01-01\"", "must set start"),
        (CONFIG_MAP, "    run-id = ", "    # run-id = ", "must set run-id"),
        (CONFIG_MAP, "    seed = 42", "    seed = 42\n    database-url = \"postgres://u:p@h/db\"", "must not hold database-url"),
        (SECRET, "name: shopsim-database", "name: shopsim-db", "the secret is named"),
        (SECRET, "  database-url: ", "  url: ", "no key database-url"),
        (SECRET, "\"postgres://<user>:<password>@<host>:5432/<database>?sslmode=require\"",
                 "\"postgres://shop:hunter2@db.internal:5432/shop?sslmode=require\"", "placeholder"),
        (README, "kubectl create secret generic shopsim-database", "kubectl create secret generic shopsim-db", "secret generic shopsim-db"),
        (README, "--from-literal=database-url=", "--from-literal=url=", "sets key \"url\""),
        (README, "shopsim status", "shopsim runs show", "must explain shopsim status"),
        (DOCKERFILE, "cargo build --release --locked", "cargo build --release", "cargo build --release --locked"),
        (DOCKERFILE, "AS builder", "", "named builder stage"),
        (DOCKERFILE, "--from=builder", "--from=build", "COPY --from=builder"),
        (DOCKERFILE, "FROM rust:1.95.0-trixie", "FROM rust:1.94.0-trixie", "toolchain of rust-toolchain.toml"),
        (DOCKERFILE, "FROM debian:trixie-slim", "FROM debian:bookworm-slim", "of the builder's release"),
        (DOCKERFILE, "USER 10001:10001", "USER root", "non-root USER"),
        (DOCKERFILE, "USER 10001:10001", "USER 10002:10002", "differs from the Job's runAsUser"),
        (DOCKERFILE, "ENTRYPOINT [\"shopsim\"]", "ENTRYPOINT [\"/bin/sh\"]", "ENTRYPOINT"),
        (DOCKERFILE, "COPY behaviors", "# COPY behaviors", "copy behaviors/"),
        (DOCKERFILE, "ca-certificates \\", "curl \\", "ca-certificates"),
        (TOP_README, "examples/kubernetes", "examples/k8s", "must point at examples/kubernetes"),
    ];
    let mut missed = Vec::new();
    for (file, from, to, expected) in breaks {
        let mut broken = files.clone();
        let text = broken.get_mut(*file).expect("a file the checks read");
        assert!(
            text.contains(from),
            "{file} no longer contains {from:?}: update this test's breakage"
        );
        *text = text.replace(from, to);
        let found = problems(&broken);
        if !found.iter().any(|p| p.contains(expected)) {
            missed.push(format!(
                "{file}: {from:?} -> {to:?} should report {expected:?}, got {found:#?}"
            ));
        }
    }
    assert!(missed.is_empty(), "{}", missed.join("\n"));
}
