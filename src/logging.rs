//! Logging: human-readable lines on stderr for commands without a dashboard, and for
//! `shopsim run` JSON lines in a size-rotated log file (one object per event with timestamp,
//! level, target, run id, simulated time, message and fields).
//!
//! The file writer blocks rather than drops: warnings and errors are never lost, even under
//! load (per-request detail is only logged at debug level, so a long run at the default level
//! writes little). While the terminal dashboard is up nothing is written to stderr.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};

use parking_lot::{Mutex, RwLock};
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

/// What every JSON log line carries besides the event: the run and its simulated time.
#[derive(Debug, Default, Clone)]
pub struct LogContext {
    /// The run id, once known.
    pub run_id: Option<String>,
    /// The simulated time reached (RFC 3339), once the run has one.
    pub sim_time: Option<String>,
    /// The shard (`I/N`) of a sharded run.
    pub shard: Option<String>,
}

static CONTEXT: LazyLock<RwLock<LogContext>> = LazyLock::new(|| RwLock::new(LogContext::default()));

/// Sets the run id of later log lines.
pub fn set_run_id(run_id: &str) {
    CONTEXT.write().run_id = Some(run_id.to_string());
}

/// Sets the shard (`I/N`) of later log lines (sharded runs only).
pub fn set_shard(shard: &str) {
    CONTEXT.write().shard = Some(shard.to_string());
}

/// Sets the simulated time of later log lines.
pub fn set_sim_time(t: chrono::DateTime<chrono::Utc>) {
    CONTEXT.write().sim_time = Some(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
}

/// Where logs go.
#[derive(Debug, Clone)]
pub struct LogTargets {
    /// Human-readable lines on stderr.
    pub stderr: bool,
    /// JSON lines in this file, rotated when it exceeds `max_bytes` (keeping `keep` old files:
    /// `FILE.1` newest … `FILE.<keep>` oldest).
    pub file: Option<LogFile>,
}

/// A rotated JSON log file.
#[derive(Debug, Clone)]
pub struct LogFile {
    /// The file.
    pub path: PathBuf,
    /// Size at which it is rotated.
    pub max_bytes: u64,
    /// Rotated files kept.
    pub keep: u32,
}

fn filter(level: &str) -> EnvFilter {
    if level.contains('=') || level.contains(',') {
        EnvFilter::try_new(level)
    } else {
        EnvFilter::try_new(format!(
            "{level},sqlx=warn,sea_orm=warn,sea_orm_migration=warn"
        ))
    }
    .unwrap_or_else(|_| EnvFilter::new("info"))
}

/// Installs the process-wide subscriber. A log file that cannot be opened is an error (the
/// caller reports it); the subscriber is installed once per process.
pub fn init(level: &str, targets: &LogTargets) -> std::io::Result<()> {
    let file_layer = match &targets.file {
        Some(f) => Some(JsonFileLayer {
            out: Arc::new(Mutex::new(RotatingFile::open(f)?)),
        }),
        None => None,
    };
    let stderr_layer = targets
        .stderr
        .then(|| tracing_subscriber::fmt::layer().with_writer(std::io::stderr));
    let _ = tracing_subscriber::registry()
        .with(filter(level))
        .with(stderr_layer)
        .with(file_layer)
        .try_init();
    Ok(())
}

/// A file that is renamed aside when it grows past its limit.
struct RotatingFile {
    spec: LogFile,
    file: File,
    size: u64,
}

impl RotatingFile {
    fn open(spec: &LogFile) -> std::io::Result<RotatingFile> {
        if let Some(dir) = spec.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&spec.path)
            .map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("cannot open log file {}: {e}", spec.path.display()),
                )
            })?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(RotatingFile {
            spec: spec.clone(),
            file,
            size,
        })
    }

    fn write_line(&mut self, line: &[u8]) {
        if self.size > 0 && self.size + line.len() as u64 > self.spec.max_bytes {
            self.rotate();
        }
        // A full disk must not take the run down; the line is lost, the run goes on.
        if self.file.write_all(line).is_ok() {
            self.size += line.len() as u64;
        }
    }

    fn rotate(&mut self) {
        let name = |n: u32| rotated(&self.spec.path, n);
        for n in (1..self.spec.keep).rev() {
            let _ = std::fs::rename(name(n), name(n + 1));
        }
        if self.spec.keep > 0 {
            let _ = std::fs::rename(&self.spec.path, name(1));
        }
        if let Ok(f) = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&self.spec.path)
        {
            self.file = f;
            self.size = 0;
        }
    }
}

fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// Writes each event as one JSON object per line.
struct JsonFileLayer {
    out: Arc<Mutex<RotatingFile>>,
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for JsonFileLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        let mut fields = FieldMap(Map::new());
        event.record(&mut fields);
        let mut obj = Map::new();
        obj.insert(
            "timestamp".into(),
            Value::String(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
        );
        obj.insert("level".into(), Value::String(meta.level().to_string()));
        obj.insert("target".into(), Value::String(meta.target().to_string()));
        let cx = CONTEXT.read().clone();
        obj.insert(
            "run_id".into(),
            cx.run_id.map_or(Value::Null, Value::String),
        );
        obj.insert(
            "sim_time".into(),
            cx.sim_time.map_or(Value::Null, Value::String),
        );
        if let Some(shard) = cx.shard {
            obj.insert("shard".into(), Value::String(shard));
        }
        let message = fields.0.remove("message").unwrap_or(Value::Null);
        obj.insert("message".into(), message);
        obj.insert("fields".into(), Value::Object(fields.0));
        let mut line = Value::Object(obj).to_string().into_bytes();
        line.push(b'\n');
        self.out.lock().write_line(&line);
    }
}

struct FieldMap(Map<String, Value>);

impl Visit for FieldMap {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(
            field.name().to_string(),
            Value::String(format!("{value:?}")),
        );
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0
            .insert(field.name().to_string(), Value::String(value.to_string()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_by_size_and_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let spec = LogFile {
            path: dir.path().join("x.log"),
            max_bytes: 100,
            keep: 2,
        };
        let mut f = RotatingFile::open(&spec).unwrap();
        for i in 0..10 {
            f.write_line(format!("{{\"line\":{i:040}}}\n").as_bytes());
        }
        let current = std::fs::read_to_string(&spec.path).unwrap();
        assert!(current.contains(&format!("{:040}", 9)));
        assert!(rotated(&spec.path, 1).exists() && rotated(&spec.path, 2).exists());
        assert!(!rotated(&spec.path, 3).exists(), "only `keep` old files");
        for p in [spec.path.clone(), rotated(&spec.path, 1)] {
            assert!(std::fs::metadata(p).unwrap().len() <= 100);
        }
    }
}
