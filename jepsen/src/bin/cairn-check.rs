//! `cairn-check HISTORY.jsonl [--html REPORT.html] [--time-limit SECS]`
//!
//! Checks a history (design §9) and prints one JSON object on stdout:
//! `{"valid": true|false|"unknown", "ops": N, "anomalies": {...}, ...}`. Exits 0 when the
//! history is valid, 1 when it has anomalies, 2 when the verdict is unknown (out of time)
//! or the history cannot be read, with the line and the problem on stderr.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use cairn_jepsen::limits::ANOMALIES_PER_KIND_MAX_DEFAULT;
use cairn_jepsen::{HistoryReader, Options, Report, check_history, html};
use clap::Parser;
use serde_json::json;

/// Checks a Cairn history for Kafka anomalies and non-linearizable committed offsets.
#[derive(Parser, Debug)]
#[command(name = "cairn-check", version)]
struct Args {
    /// The history: JSON Lines, one operation per line (design §9).
    history: PathBuf,
    /// Also write an HTML report with a timeline of the operations around each anomaly.
    #[arg(long, value_name = "REPORT.html")]
    html: Option<PathBuf>,
    /// Give up on the linearizability search after this many seconds and answer "unknown".
    #[arg(long, value_name = "SECS", default_value_t = 60.0, value_parser = parse_seconds)]
    time_limit: f64,
    /// Anomalies of each kind listed in the output (all are counted).
    #[arg(long, value_name = "N", default_value_t = ANOMALIES_PER_KIND_MAX_DEFAULT)]
    anomalies_max: usize,
}

fn parse_seconds(text: &str) -> Result<f64, String> {
    let seconds: f64 = text.parse().map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if seconds.is_finite() && seconds > 0.0 {
        Ok(seconds)
    } else {
        Err(format!("the time limit must be a positive number of seconds, not {text}"))
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let options = Options {
        time_limit: Some(Duration::from_secs_f64(args.time_limit)),
        search_steps_max: None,
        anomalies_per_kind_max: args.anomalies_max,
    };
    let report = match check_file(&args.history, &options) {
        Ok(report) => report,
        Err(message) => return unreadable(&args.history, &message),
    };
    if let Err(error) = print_report(&report) {
        eprintln!("cairn-check: cannot write the report to stdout: {error}");
        return ExitCode::from(2);
    }
    if let Some(path) = &args.html
        && let Err(error) = write_html(&report, &args.history, path)
    {
        eprintln!("cairn-check: cannot write {}: {error}", path.display());
        return ExitCode::from(2);
    }
    ExitCode::from(report.exit_code() as u8)
}

fn check_file(path: &Path, options: &Options) -> Result<Report, String> {
    let file = File::open(path).map_err(|error| format!("cannot open: {error}"))?;
    check_history(BufReader::with_capacity(1 << 20, file), options).map_err(|e| e.to_string())
}

/// The history could not be checked: say so on stderr, and still print one JSON object.
fn unreadable(path: &Path, message: &str) -> ExitCode {
    eprintln!("cairn-check: {}: {message}", path.display());
    let output = json!({
        "valid": "unknown",
        "ops": 0,
        "anomalies": {},
        "error": format!("{}: {message}", path.display()),
    });
    println!("{output}");
    ExitCode::from(2)
}

fn print_report(report: &Report) -> io::Result<()> {
    let stdout = io::stdout();
    let mut out = stdout.lock();
    serde_json::to_writer(&mut out, report)?;
    out.write_all(b"\n")?;
    out.flush()
}

/// Reads the history a second time to draw the operations around each anomaly.
fn write_html(report: &Report, history: &Path, path: &Path) -> io::Result<()> {
    let reader = HistoryReader::new(BufReader::with_capacity(1 << 20, File::open(history)?));
    let out = BufWriter::new(File::create(path)?);
    html::write_report(report, reader.map_while(Result::ok), out)
}
