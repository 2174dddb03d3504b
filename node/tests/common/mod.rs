//! What the process tests share: a `cairn` process started in the background, waited for
//! until its banner says how to connect, and killed if a test fails before stopping it.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A running `cairn` process and the banner it printed.
pub struct Running {
    /// The process.
    pub child: Child,
    /// Its standard output up to the end of the banner.
    pub banner: String,
}

impl Running {
    /// The rest of the banner's first line that starts with `label` ("bootstrap server" for
    /// `cairn dev`, "bootstrap servers" for `cairn dev --nodes 3`), trimmed.
    #[allow(dead_code)] // Each test binary compiles this module; not all of them ask.
    pub fn banner_value(&self, label: &str) -> &str {
        let line = self.banner.lines().map(str::trim_start).find(|l| l.starts_with(label));
        line.unwrap_or_else(|| panic!("the banner has no {label:?}: {}", self.banner))
            [label.len()..]
            .trim()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `command` (a `cairn dev`) and waits, at most `wait`, for the banner's last line.
#[allow(dead_code)] // Each test binary compiles this module; not all of them ask.
pub fn start_until_banner(command: Command, wait: Duration) -> Running {
    start_until_banner_with_stderr(command, wait, Stdio::inherit())
}

/// [`start_until_banner`], with the process's standard error going to `stderr`.
pub fn start_until_banner_with_stderr(
    mut command: Command,
    wait: Duration,
    stderr: Stdio,
) -> Running {
    let mut child = command.stdout(Stdio::piped()).stderr(stderr).spawn().expect("start cairn dev");
    let stdout = child.stdout.take().expect("piped stdout");
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = sender.send(line);
        }
    });
    let mut running = Running { child, banner: String::new() };
    let deadline = Instant::now() + wait;
    while !running.banner.contains("Stop with Ctrl-C") {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = receiver.recv_timeout(left).expect("cairn dev printed its banner in time");
        running.banner.push_str(&line);
        running.banner.push('\n');
    }
    running
}

/// The text `/metrics` at `url` (as the banner prints it) answers with, waiting at most `wait`.
#[allow(dead_code)] // Each test binary compiles this module; not all of them ask.
pub fn metrics(url: &str, wait: Duration) -> String {
    let address = url.trim_start_matches("http://").trim_end_matches("/metrics");
    let mut stream = TcpStream::connect(address).expect("connect to /metrics");
    stream.set_read_timeout(Some(wait)).unwrap();
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: cairn\r\n\r\n").expect("ask");
    let mut text = String::new();
    stream.read_to_string(&mut text).expect("read the answer");
    text
}
