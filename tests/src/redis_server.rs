//! A real `redis-server` for tests: started on a free port in a directory
//! of its own, without persistence, killed by its PID when dropped.
//!
//! Only the standard library, so crates that must test without root or
//! clang (relay-state) can include this file as it is (`#[path]`).
//!
//! Debian's `redis-server` is installed when missing and the tests run
//! as root (as `cargo xtask test` does); without it the test says why and
//! skips.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// Makes the command that runs a program (the plain one, or one entering
/// a network namespace).
pub type Launcher = Box<dyn Fn(&str) -> Command + Send + Sync>;

/// A launcher running programs in the network namespace named `ns`
/// (through `nsenter`, so the child is a plain process whose PID the guard
/// kills).
pub fn in_netns(ns: &str) -> Launcher {
    let path = format!("--net=/run/netns/{ns}");
    Box::new(move |program| {
        let mut cmd = Command::new("nsenter");
        cmd.args([path.as_str(), program]);
        cmd
    })
}

/// A running `redis-server`.
pub struct RedisServer {
    /// Its TCP port.
    pub port: u16,
    /// The address it listens on (127.0.0.1 unless started with
    /// [`RedisServer::start_on`]).
    pub host: String,
    password: Option<String>,
    dir: PathBuf,
    launcher: Launcher,
    child: Option<Child>,
}

impl std::fmt::Debug for RedisServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisServer")
            .field("port", &self.port)
            .finish()
    }
}

/// Whether `program` is on the PATH.
fn found(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program} >/dev/null 2>&1")])
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether redis-server (and its redis-cli) can be run, installing
/// Debian's package when missing and root; prints why not for `test`.
pub fn available(test: &str) -> bool {
    if found("redis-server") && found("redis-cli") {
        return true;
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    if root && found("apt-get") {
        let install = || {
            Command::new("apt-get")
                .args(["install", "-y", "-q", "redis-server"])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if !install() {
            let _ = Command::new("apt-get")
                .args(["update", "-q"])
                .stdout(Stdio::null())
                .status();
            install();
        }
        // The package starts a system-wide server on 6379; the tests use
        // their own.
        let _ = Command::new("sh")
            .args(["-c", "systemctl stop redis-server >/dev/null 2>&1 || true"])
            .status();
    }
    if found("redis-server") && found("redis-cli") {
        return true;
    }
    eprintln!(
        "SKIPPED {test}: redis-server not found and not installable \
         (cargo xtask test installs Debian's redis-server)"
    );
    false
}

/// A TCP port nobody listens on now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl RedisServer {
    /// Starts one on a free port, requiring `password` if given; None
    /// (having said why) when redis-server is not available.
    pub fn start(test: &str, password: Option<&str>) -> Option<RedisServer> {
        Self::start_with(test, password, Box::new(|program| Command::new(program)))
    }

    /// [`RedisServer::start`], with programs run by `launcher` (e.g. in a
    /// network namespace, where 127.0.0.1 is that namespace's).
    pub fn start_with(
        test: &str,
        password: Option<&str>,
        launcher: Launcher,
    ) -> Option<RedisServer> {
        Self::start_on(test, password, launcher, "127.0.0.1")
    }

    /// [`RedisServer::start_with`], listening on `host` (an address of the
    /// namespace `launcher` runs it in), for relays in other namespaces.
    pub fn start_on(
        test: &str,
        password: Option<&str>,
        launcher: Launcher,
        host: &str,
    ) -> Option<RedisServer> {
        if !available(test) {
            return None;
        }
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("xrelay-redis-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("redis test directory");
        let mut server = RedisServer {
            port: free_port(),
            host: host.to_owned(),
            password: password.map(str::to_owned),
            dir,
            launcher,
            child: None,
        };
        server.launch();
        Some(server)
    }

    /// `[PASSWORD@]HOST:PORT/DB`, as `--redis` takes it.
    pub fn url(&self, db: u32) -> String {
        match &self.password {
            Some(pw) => format!("{pw}@{}:{}/{db}", self.host, self.port),
            None => format!("{}:{}/{db}", self.host, self.port),
        }
    }

    /// Its directory (logs).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn launch(&mut self) {
        let mut cmd = (self.launcher)("redis-server");
        cmd.args(["--port", &self.port.to_string(), "--bind", &self.host])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .arg("--logfile")
            .arg(self.dir.join("redis.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(pw) = &self.password {
            cmd.args(["--requirepass", pw]);
        }
        if self.host != "127.0.0.1" {
            // Without a password Redis turns away clients from other
            // hosts (here: the relays' namespaces) unless told not to.
            cmd.args(["--protected-mode", "no"]);
        }
        self.child = Some(cmd.spawn().expect("redis-server starts"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.answers() {
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not answer within 10 s (log: {})",
                self.port,
                self.dir.join("redis.log").display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether it answers `PING`.
    pub fn answers(&self) -> bool {
        self.cli(&["PING"]).is_some_and(|out| out.trim() == "PONG")
    }

    /// `redis-cli ARGS` against it (logged in), its output when it ran.
    pub fn cli(&self, args: &[&str]) -> Option<String> {
        let mut cmd = (self.launcher)("redis-cli");
        cmd.args(["-h", &self.host, "-p", &self.port.to_string()]);
        if let Some(pw) = &self.password {
            cmd.args(["--no-auth-warning", "-a", pw]);
        }
        let out = cmd.args(args).stderr(Stdio::null()).output().ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Its process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills it (by PID) and waits for it to go: an outage.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, empty (it keeps nothing).
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
