//! Logs: readable lines on stderr, JSON lines in a rotated file.
//!
//! The file is written by a background thread so a slow disk never stalls a
//! request; when its buffer fills, lines are dropped rather than blocking, and
//! the drops are counted in `switchboard_log_dropped_lines_total`.
//!
//! Per-request lines (the target [`ACCESS_TARGET`]) go to the file only, never
//! to stderr, and only while `access` is on: formatting and writing a line is
//! a large share of a proxy's CPU per request (see BENCHMARKS.md).

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use tracing_appender::non_blocking::{ErrorCounter, WorkerGuard};
use tracing_appender::rolling::{RollingFileAppender, Rotation};
use tracing_subscriber::filter::{Directive, filter_fn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// The target of the one-line-per-request access logs of every component.
pub const ACCESS_TARGET: &str = "switchboard::access";

/// Lines the file writer may hold before dropping. The channel is allocated
/// and touched whole at start: the crate's default (128,000 lines) cost about
/// 4.4 MiB of resident memory in every idle component; 8,192 lines cost about
/// 0.3 MiB and still hold a fraction of a second of access lines at full load.
const BUFFERED_LINES: usize = 8_192;

/// Where and how much to log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// Level filter in `RUST_LOG` syntax; `RUST_LOG` itself wins when set.
    pub level: String,
    /// Folder of the JSON log files.
    pub dir: PathBuf,
    /// Stem of the file name: `app` writes `app.YYYY-MM-DD.log`, with
    /// `app.log` linking to the newest.
    pub file: String,
    /// Rotated files kept.
    pub max_files: usize,
    /// Whether to write the JSON file at all.
    pub to_file: bool,
    /// Whether to write one JSON line per request (target
    /// `switchboard::access`) to the file. The line costs about a third of
    /// the balancer's CPU per request (BENCHMARKS.md); `false` for throughput.
    /// A level filter that names the target itself wins over this switch.
    pub access: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            dir: PathBuf::from("logs"),
            file: "app".into(),
            max_files: 7,
            to_file: true,
            access: true,
        }
    }
}

/// Why logging could not start.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The level filter does not parse.
    #[error("log level {0:?} is not a valid filter: {1}")]
    Filter(String, String),
    /// The log folder or file cannot be created.
    #[error("cannot open log file in {0}: {1}")]
    File(PathBuf, String),
}

/// Keeps the file writer alive; dropping it flushes what is buffered.
pub struct LogGuard {
    _worker: Option<WorkerGuard>,
    dropped: Option<ErrorCounter>,
}

impl LogGuard {
    /// Exposes the count of dropped file lines on `registry`.
    pub fn register_metrics(&self, registry: &mut Registry) {
        if let Some(counter) = &self.dropped {
            registry.register_collector(Box::new(DroppedLines(counter.clone())));
        }
    }
}

/// Installs the global subscriber. A second call in the same process (tests)
/// keeps the first subscriber and returns a guard that does nothing.
pub fn init(cfg: &LogConfig) -> Result<LogGuard, LogError> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(env) if !env.is_empty() => env,
        _ => cfg.level.clone(),
    };
    let mut env_filter =
        EnvFilter::try_new(&filter).map_err(|e| LogError::Filter(filter.clone(), e.to_string()))?;
    if !cfg.access && !filter.contains(ACCESS_TARGET) {
        // Off in the filter itself, so the disabled call sites cost nothing.
        env_filter = env_filter.add_directive(access_off());
    }
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_filter(filter_fn(|meta| meta.target() != ACCESS_TARGET));

    let (file_layer, worker, dropped) = match cfg.to_file {
        true => {
            let (writer, worker) = tracing_appender::non_blocking::NonBlockingBuilder::default()
                .buffered_lines_limit(BUFFERED_LINES)
                .lossy(true)
                .finish(appender(cfg)?);
            let dropped = writer.error_counter();
            let layer = tracing_subscriber::fmt::layer()
                .json()
                .with_current_span(true)
                .with_writer(writer);
            (Some(layer.boxed()), Some(worker), Some(dropped))
        }
        false => (None, None, None),
    };

    let installed = tracing_subscriber::registry()
        .with(env_filter)
        .with(stderr)
        .with(file_layer)
        .try_init();
    if installed.is_err() {
        return Ok(LogGuard {
            _worker: None,
            dropped: None,
        });
    }
    Ok(LogGuard {
        _worker: worker,
        dropped,
    })
}

fn access_off() -> Directive {
    format!("{ACCESS_TARGET}=off")
        .parse()
        .expect("a target with level off is a valid directive")
}

fn appender(cfg: &LogConfig) -> Result<RollingFileAppender, LogError> {
    std::fs::create_dir_all(&cfg.dir)
        .map_err(|e| LogError::File(cfg.dir.clone(), e.to_string()))?;
    RollingFileAppender::builder()
        .rotation(Rotation::DAILY)
        .filename_prefix(&cfg.file)
        .filename_suffix("log")
        .max_log_files(cfg.max_files.max(1))
        .latest_symlink(format!("{}.log", cfg.file))
        .build(&cfg.dir)
        .map_err(|e| LogError::File(cfg.dir.clone(), e.to_string()))
}

#[derive(Debug)]
struct DroppedLines(ErrorCounter);

impl Collector for DroppedLines {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let counter = ConstCounter::new(self.0.dropped_lines() as u64);
        let metric = encoder.encode_descriptor(
            "switchboard_log_dropped_lines",
            "Log lines dropped because the file writer fell behind",
            None,
            counter.metric_type(),
        )?;
        counter.encode(metric)
    }
}
