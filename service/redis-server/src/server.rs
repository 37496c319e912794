//! One `redis-server` process on a loopback port, with its own data directory.

use std::fs;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::HarnessError;
use crate::binaries::{Binaries, binaries, tools_dir};
use crate::tls::{ClientAuth, TestPki, TlsProxy};

/// How long a server may take to answer after it was started.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// How a server is started.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// `requirepass`: clients must `AUTH` with this password (as the `default` user).
    pub password: Option<String>,
    /// An ACL user with every permission and this password, besides `default`.
    pub acl_user: Option<(String, String)>,
    /// Start as a Redis Cluster node (`cluster-enabled yes`).
    pub cluster: bool,
    /// Further `--name value` arguments, e.g. `["--maxmemory", "10mb"]`.
    pub extra_args: Vec<String>,
}

/// A running (or stopped) `redis-server` on `127.0.0.1`. Dropping it kills the process and
/// removes its data directory.
#[derive(Debug)]
pub struct RedisServer {
    binaries: &'static Binaries,
    options: ServerOptions,
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
    tls: Option<TlsProxy>,
}

impl RedisServer {
    /// A standalone server without authentication on a free port.
    pub fn start() -> Result<RedisServer, HarnessError> {
        RedisServer::start_with(ServerOptions::default())
    }

    /// A server started with `options` on a free port.
    pub fn start_with(options: ServerOptions) -> Result<RedisServer, HarnessError> {
        RedisServer::start_fronted(options, None)
    }

    /// A Redis Cluster node behind a TLS terminator that announces the terminator's port to
    /// the cluster (`cluster-announce-port`; the bus stays on the plain port + 10000), so
    /// that clients following the cluster's slot map reach every node over TLS.
    pub(crate) fn start_tls_cluster_node(
        pki: &TestPki,
        client_auth: ClientAuth,
    ) -> Result<RedisServer, HarnessError> {
        let options = ServerOptions {
            cluster: true,
            ..ServerOptions::default()
        };
        RedisServer::start_fronted(options, Some((pki, client_auth)))
    }

    fn start_fronted(
        options: ServerOptions,
        tls_front: Option<(&TestPki, ClientAuth)>,
    ) -> Result<RedisServer, HarnessError> {
        let binaries = binaries()?;
        let dir = fresh_dir()?;
        let mut last = None;
        // A free port may be taken between our probe and the server's bind: try another.
        for _ in 0..8 {
            let port = free_port(options.cluster)?;
            let mut options = options.clone();
            let tls = match tls_front {
                Some((pki, client_auth)) => {
                    let proxy = TlsProxy::start(port, pki, client_auth)?;
                    options.extra_args.extend([
                        "--cluster-announce-port".to_owned(),
                        proxy.port().to_string(),
                        "--cluster-announce-bus-port".to_owned(),
                        (port + 10_000).to_string(),
                    ]);
                    Some(proxy)
                }
                None => None,
            };
            let mut server = RedisServer {
                binaries,
                options,
                port,
                dir: dir.clone(),
                child: None,
                tls,
            };
            match server.spawn() {
                Ok(()) => return Ok(server),
                Err(e) => {
                    server.kill();
                    // Keep the directory for the next try (Drop would remove it).
                    server.dir = PathBuf::new();
                    last = Some(e);
                }
            }
        }
        let _ = fs::remove_dir_all(&dir);
        Err(last.unwrap_or_else(|| HarnessError::Start("no free port".to_owned())))
    }

    /// A server started with `options`, reached over TLS through a terminator on another
    /// loopback port that presents `pki`'s server certificate (for `127.0.0.1` and
    /// `localhost`) and, with [`ClientAuth::Required`], accepts only clients presenting a
    /// certificate signed by `pki`'s CA. The plain port stays open for the harness itself.
    pub fn start_tls(
        options: ServerOptions,
        pki: &TestPki,
        client_auth: ClientAuth,
    ) -> Result<RedisServer, HarnessError> {
        let mut server = RedisServer::start_with(options)?;
        server.tls = Some(TlsProxy::start(server.port, pki, client_auth)?);
        Ok(server)
    }

    /// The TLS terminator's port, for a server started with [`RedisServer::start_tls`].
    pub fn tls_port(&self) -> Option<u16> {
        self.tls.as_ref().map(TlsProxy::port)
    }

    /// `rediss://127.0.0.1:<TLS port>` without credentials, for a server started with
    /// [`RedisServer::start_tls`].
    pub fn tls_url(&self) -> Option<String> {
        self.tls_port()
            .map(|port| format!("rediss://127.0.0.1:{port}"))
    }

    /// The server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>`, without credentials.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The URL with the server's credentials: the ACL user if there is one, else the
    /// `requirepass` password, else none.
    pub fn url_with_credentials(&self) -> String {
        match (&self.options.acl_user, &self.options.password) {
            (Some((user, password)), _) => {
                format!("redis://{user}:{password}@127.0.0.1:{}", self.port)
            }
            (None, Some(password)) => format!("redis://:{password}@127.0.0.1:{}", self.port),
            (None, None) => self.url(),
        }
    }

    /// The options the server was started with.
    pub fn options(&self) -> &ServerOptions {
        &self.options
    }

    /// Its data directory (the RDB file, `nodes.conf` of a cluster node, the log).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Which binary runs it.
    pub fn binaries(&self) -> &'static Binaries {
        self.binaries
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// A new synchronous connection, authenticated as the server's credentials say.
    pub fn connection(&self) -> Result<redis::Connection, HarnessError> {
        let client = redis::Client::open(self.url_with_credentials())
            .map_err(|e| HarnessError::Command(format!("client for {}: {e}", self.url())))?;
        client
            .get_connection_with_timeout(Duration::from_secs(2))
            .map_err(|e| HarnessError::Command(format!("connect to {}: {e}", self.url())))
    }

    /// Sends one command and returns its reply.
    pub fn command(&self, args: &[&str]) -> Result<redis::Value, HarnessError> {
        let mut connection = self.connection()?;
        let mut cmd = redis::Cmd::new();
        for arg in args {
            cmd.arg(*arg);
        }
        cmd.query(&mut connection)
            .map_err(|e| HarnessError::Command(format!("{args:?} on {}: {e}", self.url())))
    }

    /// Stops the server cleanly (`SHUTDOWN SAVE`): its data is on disk for
    /// [`RedisServer::restart`] with `keep_data`.
    pub fn stop(&mut self) -> Result<(), HarnessError> {
        if !self.is_running() {
            self.child = None;
            return Ok(());
        }
        // The connection drops as the server exits: the reply is an I/O error, not a failure.
        let _ = self.command(&["SHUTDOWN", "SAVE"]);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.is_running() {
            if Instant::now() >= deadline {
                self.kill();
                return Err(HarnessError::Command(format!(
                    "{} did not shut down within 10 s (killed)",
                    self.url()
                )));
            }
            thread::sleep(Duration::from_millis(10));
        }
        self.child = None;
        Ok(())
    }

    /// Kills the server at once (`SIGKILL`): nothing is saved.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, stopping it first if it runs. With
    /// `keep_data` it loads what a clean [`RedisServer::stop`] saved; without, it starts
    /// empty. A cluster node keeps its identity and slots either way (`nodes.conf`).
    pub fn restart(&mut self, keep_data: bool) -> Result<(), HarnessError> {
        if keep_data {
            self.stop()?;
        } else {
            self.kill();
            let _ = fs::remove_file(self.dir.join("dump.rdb"));
        }
        self.spawn()
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default()
    }

    fn spawn(&mut self) -> Result<(), HarnessError> {
        let mut command = Command::new(&self.binaries.server);
        command
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(&self.dir)
            .args(["--logfile", "redis.log"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--daemonize", "no"])
            .args(["--protected-mode", "no"]);
        if let Some(password) = &self.options.password {
            command.args(["--requirepass", password]);
        }
        if let Some((user, password)) = &self.options.acl_user {
            command
                .arg("--user")
                .arg(user)
                .arg("on")
                .arg(format!(">{password}"))
                .args(["~*", "&*", "+@all"]);
        }
        if self.options.cluster {
            command
                .args(["--cluster-enabled", "yes"])
                .args(["--cluster-config-file", "nodes.conf"])
                .args(["--cluster-node-timeout", "1000"]);
        }
        command.args(&self.options.extra_args);
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                HarnessError::Start(format!(
                    "cannot run {}: {e}",
                    self.binaries.server.display()
                ))
            })?;
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if !self.is_running() {
                let stderr = self
                    .child
                    .take()
                    .and_then(|c| c.wait_with_output().ok())
                    .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
                    .unwrap_or_default();
                return Err(HarnessError::Start(format!(
                    "{} on port {} exited at start:\n{}{}",
                    self.binaries.server.display(),
                    self.port,
                    stderr.trim(),
                    tail(&self.log())
                )));
            }
            if let Ok(redis::Value::SimpleString(pong)) = self.command(&["PING"])
                && pong == "PONG"
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.kill();
                return Err(HarnessError::Start(format!(
                    "{} on port {} did not answer PING within {:?}:{}",
                    self.binaries.server.display(),
                    self.port,
                    START_TIMEOUT,
                    tail(&self.log())
                )));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        if !self.dir.as_os_str().is_empty() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    let start = lines.len().saturating_sub(10);
    let tail = lines.get(start..).unwrap_or_default().join("\n");
    if tail.is_empty() {
        String::new()
    } else {
        format!("\n--- last lines of its log\n{tail}")
    }
}

/// A new, empty data directory under `target/redis-server/run/`.
pub(crate) fn fresh_dir() -> Result<PathBuf, HarnessError> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = tools_dir().join("run").join(format!(
        "{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir)
        .map_err(|e| HarnessError::Start(format!("cannot create {}: {e}", dir.display())))?;
    Ok(dir)
}

/// A loopback port nobody listens on (and, for a cluster node, its bus port + 10000 too).
fn free_port(cluster: bool) -> Result<u16, HarnessError> {
    let bindable =
        |port: u16| TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)).is_ok();
    if !cluster {
        let listener = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))
            .map_err(|e| HarnessError::Start(format!("cannot bind a loopback port: {e}")))?;
        return listener
            .local_addr()
            .map(|a| a.port())
            .map_err(|e| HarnessError::Start(format!("no local address: {e}")));
    }
    // Below the usual ephemeral range, so port + 10000 stays a valid port.
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
        ^ std::process::id().wrapping_mul(2_654_435_761);
    for i in 0..2000u32 {
        let port = 20_000 + (seed.wrapping_add(i.wrapping_mul(7919)) % 20_000) as u16;
        if bindable(port) && bindable(port + 10_000) {
            return Ok(port);
        }
    }
    Err(HarnessError::Start(
        "no free loopback port pair (port, port + 10000) for a cluster node".to_owned(),
    ))
}
