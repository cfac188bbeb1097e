//! A Redis server of the benchmark's own, started beside the load generator.
//!
//! Started from this process, it inherits the load generator's CPU pinning, so Redis never
//! takes time from the broker's core and runs are comparable; the machine's Redis, wherever
//! the scheduler puts it, made the broker's figures move by 20 % between runs.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `redis-server`, stopped on drop.
pub struct OwnRedis {
    child: Child,
    /// `redis://127.0.0.1:PORT`
    pub url: String,
}

impl OwnRedis {
    /// Starts `redis-server` (no persistence) on a free port; `None` when it is not installed.
    pub fn start() -> Result<Option<OwnRedis>, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port for Redis: {e}"))?
            .port();
        let child = match Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot start redis-server: {e}")),
        };
        let mut own = OwnRedis {
            child,
            url: format!("redis://127.0.0.1:{port}"),
        };
        let client = redis::Client::open(own.url.as_str()).map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let ready = client
                .get_connection_with_timeout(Duration::from_millis(200))
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
            if let Ok(Some(status)) = own.child.try_wait() {
                return Err(format!(
                    "redis-server exited at start ({status}); is the port free?"
                ));
            }
            match ready {
                Ok(_) => return Ok(Some(own)),
                Err(e) if Instant::now() > deadline => {
                    return Err(format!("redis-server did not answer on {}: {e}", own.url))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
