//! A private `redis-server` per test: started on a free loopback port with
//! no persistence, stopped (killed) when dropped. Never the machine's shared
//! server on 6379.

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::PathBuf,
    process::{Child, Command, Stdio},
    thread::sleep,
    time::{Duration, Instant},
};

use crate::{free_port, tools::INSTALL};

/// A private `redis-server` process on a loopback port, with a scratch
/// directory of its own; killed, and its directory removed, when dropped.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    /// The port it serves TLS on, when its configuration asked for one
    /// (`{tls_port}`).
    tls_port: Option<u16>,
    dir: PathBuf,
    child: Option<Child>,
    /// Configuration lines of its own (a cluster node, a replica, TLS, a
    /// renamed command), written to `<dir>/redis.conf`.
    config: Vec<String>,
}

impl RedisServer {
    /// Starts a server on a free port.
    pub fn start() -> Self {
        Self::start_configured(&[] as &[&str])
    }

    /// Starts a server on a free port with configuration lines of its own
    /// (`{dir}` in a line stands for the server's scratch directory,
    /// `{port}` for its port, `{tls_port}` for a second free port, at most
    /// 55535 so that a cluster node's bus port, 10000 above, exists).
    pub fn start_configured(config: &[impl AsRef<str>]) -> Self {
        for _ in 0..5 {
            let port = free_port();
            let tls_port = config
                .iter()
                .any(|line| line.as_ref().contains("{tls_port}"))
                .then(|| std::iter::repeat_with(free_port).find(|port| *port <= 55535))
                .flatten();
            let dir = std::env::temp_dir().join(format!("tps-redis-{}-{port}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("create a scratch dir for redis-server");
            let config = config
                .iter()
                .map(|line| {
                    let line = line
                        .as_ref()
                        .replace("{dir}", &dir.display().to_string())
                        .replace("{port}", &port.to_string());
                    match tls_port {
                        Some(tls_port) => line.replace("{tls_port}", &tls_port.to_string()),
                        None => line,
                    }
                })
                .collect();
            let mut server = Self {
                port,
                tls_port,
                dir,
                child: None,
                config,
            };
            if server.spawn() {
                return server;
            }
        }
        panic!("redis-server did not start on any of 5 free ports");
    }

    /// Spawns the process on `self.port` and waits until it answers PING.
    fn spawn(&mut self) -> bool {
        let config = self.dir.join("redis.conf");
        let mut text = self.config.join("\n");
        text.push('\n');
        std::fs::write(&config, text).expect("write redis.conf");
        let child = Command::new("redis-server")
            .arg(&config)
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--protected-mode", "no", "--enable-debug-command", "yes"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let mut child = match child {
            Ok(child) => child,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => panic!(
                "redis-server is not installed; the tests start their own private one. \
                 {INSTALL} (on macOS: `brew install redis`)"
            ),
            Err(error) => panic!("could not run redis-server: {error}"),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return false; // exited: most likely the port was taken meanwhile
            }
            if ping(self.port) {
                self.child = Some(child);
                return true;
            }
            sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its `redis://` URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The port it serves TLS on, if its configuration has `{tls_port}`.
    pub fn tls_port(&self) -> Option<u16> {
        self.tls_port
    }

    /// Its `rediss://` URL (by IP address: cluster nodes announce theirs),
    /// if it serves TLS.
    pub fn tls_url(&self) -> Option<String> {
        self.tls_port
            .map(|port| format!("rediss://127.0.0.1:{port}"))
    }

    /// Whether the process runs (not stopped by the test).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Kills the server (connections drop, later connects are refused).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the process (`SIGSTOP`): its connections stay open and it
    /// answers nothing, reads nothing and acknowledges nothing until
    /// [`resume`](Self::resume), like a server stuck in a long command or
    /// a replica lagging behind. Returns once the process is stopped.
    pub fn pause(&self) {
        let pid = self.signal("STOP");
        let stat = format!("/proc/{pid}/stat");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            // The state is the field after the `(command)`.
            let text = std::fs::read_to_string(&stat).unwrap_or_default();
            let state = text.rsplit_once(')').map(|(_, rest)| rest.trim_start());
            if state.is_some_and(|rest| rest.starts_with('T')) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server {pid} did not stop: {text}"
            );
            sleep(Duration::from_millis(10));
        }
    }

    /// Lets a [`pause`](Self::pause)d process go on (`SIGCONT`).
    pub fn resume(&self) {
        self.signal("CONT");
    }

    /// Sends `SIG<name>` to the process; returns its id.
    fn signal(&self, name: &str) -> u32 {
        let pid = self
            .child
            .as_ref()
            .expect("the redis-server is running")
            .id();
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(pid.to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} {pid}: {status}");
        pid
    }

    /// Starts the server again on the same port (as
    /// [`restart`](Self::restart) does), with one more configuration line.
    pub fn restart_with(&mut self, line: &str) {
        self.config.push(line.to_owned());
        self.restart();
    }

    /// Writes what the server holds to its scratch directory (`SAVE`):
    /// the next [`restart`](Self::restart) starts with it, as a server
    /// with persistence comes back after an outage.
    pub fn save(&self) {
        let _: () = redis::cmd("SAVE")
            .query(&mut self.admin())
            .expect("SAVE on the private redis-server");
    }

    /// Starts the server again on the same port: empty, or with what the
    /// last [`save`](Self::save) wrote.
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.spawn() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not restart on port {}",
                self.port
            );
            sleep(Duration::from_millis(100));
        }
    }

    /// A synchronous admin connection for inspecting and poking the server.
    pub fn admin(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .and_then(|client| client.get_connection())
            .expect("admin connection to the private redis-server")
    }

    /// Calls per command since the last reset, from `INFO commandstats`,
    /// leaving out the admin commands the tests send themselves.
    pub fn command_calls(&self) -> std::collections::BTreeMap<String, u64> {
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query(&mut self.admin())
            .expect("INFO commandstats");
        info.lines()
            .filter_map(|line| {
                let (name, stats) = line.strip_prefix("cmdstat_")?.split_once(':')?;
                let calls = stats.split(',').find_map(|kv| kv.strip_prefix("calls="))?;
                Some((name.to_owned(), calls.parse().ok()?))
            })
            .filter(|(name, _)| {
                // Redis 7 counts subcommands as `command|subcommand`
                // (`config|resetstat`, `client|setinfo`).
                let command = name.split('|').next().unwrap_or_default();
                !matches!(command, "info" | "config" | "hello" | "client" | "ping")
            })
            .collect()
    }

    /// Zeroes the command statistics.
    pub fn reset_stats(&self) {
        let _: () = redis::cmd("CONFIG")
            .arg("RESETSTAT")
            .query(&mut self.admin())
            .expect("CONFIG RESETSTAT");
    }

    /// Every key on the server.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = redis::cmd("KEYS")
            .arg("*")
            .query(&mut self.admin())
            .expect("KEYS");
        keys.sort();
        keys
    }

    /// The TTL of a key in seconds (-2: no key, -1: no TTL).
    pub fn ttl(&self, key: &str) -> i64 {
        redis::cmd("TTL")
            .arg(key)
            .query(&mut self.admin())
            .expect("TTL")
    }

    /// Sets a key's TTL behind the layer's back.
    pub fn expire(&self, key: &str, seconds: u64) {
        let _: () = redis::cmd("EXPIRE")
            .arg(key)
            .arg(seconds)
            .query(&mut self.admin())
            .expect("EXPIRE");
    }

    /// Deletes a key behind the layer's back.
    pub fn del(&self, key: &str) {
        let _: () = redis::cmd("DEL")
            .arg(key)
            .query(&mut self.admin())
            .expect("DEL");
    }

    /// The raw value of a key.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        redis::cmd("GET")
            .arg(key)
            .query(&mut self.admin())
            .expect("GET")
    }

    /// Sets a raw value with a TTL, behind the layer's back.
    pub fn set(&self, key: &str, value: &[u8]) {
        let _: () = redis::cmd("SET")
            .arg(key)
            .arg(value)
            .arg("EX")
            .arg(600)
            .query(&mut self.admin())
            .expect("SET");
    }
}

fn ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut reply = [0u8; 7];
    stream.write_all(b"PING\r\n").is_ok()
        && stream.read_exact(&mut reply).is_ok()
        && &reply == b"+PONG\r\n"
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
