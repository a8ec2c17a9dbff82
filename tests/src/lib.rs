//! Helpers for silt's integration tests: start the real `silt` binary, talk raw Kafka to it.
//!
//! The binary is `target/debug/silt` (built by `cargo build`; the README's test command builds
//! it first), or `SILT_TEST_BIN`. Every broker binds 127.0.0.1 on ports the OS picks, keeps its
//! data in a temporary directory, and is stopped (by PID) when its handle drops.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};

/// Path of the `silt` binary under test.
pub fn silt_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("SILT_TEST_BIN") {
        return PathBuf::from(path);
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/silt");
    assert!(
        path.exists(),
        "{} is missing: run `cargo build -p silt` first",
        path.display()
    );
    path
}

/// A `silt` command with the test environment cleaned of `SILT_*` variables.
pub fn silt_command() -> Command {
    let mut command = Command::new(silt_bin());
    for (key, _) in std::env::vars() {
        if key.starts_with("SILT_") {
            command.env_remove(key);
        }
    }
    command
}

/// A running `silt serve`.
pub struct Silt {
    child: Child,
    /// Kafka API address.
    pub kafka: String,
    /// Admin HTTP address.
    pub admin: String,
    /// Data directory (kept by `_dir` while the handle lives).
    pub data_dir: PathBuf,
    log: Arc<Mutex<String>>,
    _dir: Option<tempfile::TempDir>,
}

impl Silt {
    /// Starts a broker in a fresh temporary directory with extra `serve` arguments.
    pub fn start(extra: &[&str]) -> Silt {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let mut silt = Silt::start_in(&data, extra);
        silt._dir = Some(dir);
        silt
    }

    /// Starts a broker on `data_dir` and waits for its "serving" line.
    pub fn start_in(data_dir: &Path, extra: &[&str]) -> Silt {
        let mut command = silt_command();
        command.args([
            "serve",
            "--kafka-addr",
            "127.0.0.1:0",
            "--admin-addr",
            "127.0.0.1:0",
        ]);
        // A node of a cluster listens for its peers where its seeds say.
        if !extra.contains(&"--rpc-addr") {
            command.args(["--rpc-addr", "127.0.0.1:0"]);
        }
        command
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra)
            .env("RUST_LOG", "info,openraft=error")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("spawn silt");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (ready_tx, ready_rx) = mpsc::channel();
        let pump_log = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("silt is serving") {
                    let _ = ready_tx.send(line.clone());
                }
                let mut log = pump_log.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let line = match ready_rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!("silt did not start:\n{}", log.lock().unwrap());
            }
        };
        let field = |name: &str| {
            let start = line.find(&format!("{name}=")).unwrap() + name.len() + 1;
            line[start..].split_whitespace().next().unwrap().to_string()
        };
        Silt {
            child,
            kafka: field("kafka"),
            admin: field("admin"),
            data_dir: data_dir.to_path_buf(),
            log,
            _dir: None,
        }
    }

    /// Everything the broker logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// SIGTERM, then the exit status code.
    pub fn terminate(&mut self) -> Option<i32> {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(Instant::now() < deadline, "silt did not stop after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs a `silt` CLI command against this broker; returns (exit code, stdout, stderr).
    pub fn cli(&self, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
        let mut command = silt_command();
        command.args(args).args(["--brokers", &self.kafka]);
        run(command, stdin)
    }
}

impl Drop for Silt {
    fn drop(&mut self) {
        if self.is_running() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs a command with optional stdin; returns (exit code, stdout, stderr).
pub fn run(mut command: Command, stdin: Option<&str>) -> (i32, String, String) {
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    let input = stdin.unwrap_or("").to_string();
    let mut pipe = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let _ = pipe.write_all(input.as_bytes());
    });
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A raw Kafka connection for protocol tests.
pub struct Raw {
    /// The socket.
    pub stream: TcpStream,
}

impl Raw {
    /// Connects with a read timeout.
    pub fn connect(addr: &str) -> Raw {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        Raw { stream }
    }

    /// Writes raw bytes.
    pub fn send_bytes(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Encodes and writes a request frame at `version` with `correlation_id`.
    pub fn send<R: Request>(&mut self, request: &R, version: i16, correlation_id: i32) {
        self.send_bytes(&encode_request(request, version, correlation_id));
    }

    /// Reads one response frame: (correlation id, body).
    pub fn read_frame(&mut self, api: ApiKey, version: i16) -> Option<(i32, Bytes)> {
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size).ok()?;
        let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
        self.stream.read_exact(&mut body).ok()?;
        let mut body = Bytes::from(body);
        let header =
            ResponseHeader::decode(&mut body, api.response_header_version(version)).unwrap();
        Some((header.correlation_id, body))
    }

    /// Reads and decodes one response.
    pub fn receive<R: Request>(&mut self, version: i16) -> (i32, R::Response) {
        let api = ApiKey::try_from(R::KEY).unwrap();
        let (correlation_id, mut body) = self.read_frame(api, version).expect("a response");
        (
            correlation_id,
            R::Response::decode(&mut body, version).unwrap(),
        )
    }

    /// True when the server closed the connection (read returns 0 or an error, not a timeout).
    pub fn is_closed_by_server(&mut self) -> bool {
        let mut buf = [0u8; 1];
        match self.stream.read(&mut buf) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        }
    }
}

/// A whole request frame.
pub fn encode_request<R: Request>(request: &R, version: i16, correlation_id: i32) -> Vec<u8> {
    let api = ApiKey::try_from(R::KEY).unwrap();
    let mut buf = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("raw")))
        .encode(&mut buf, api.request_header_version(version))
        .unwrap();
    request.encode(&mut buf, version).unwrap();
    let mut frame = (buf.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&buf);
    frame
}

/// Polls `condition` every 20 ms until true or `timeout`.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    condition()
}
