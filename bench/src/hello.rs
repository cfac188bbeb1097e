//! The reference of the static endpoints (issue #17): an actix-web "hello" handler, served
//! by this program re-run as `bench --hello-server` with one worker, pinned to the broker's
//! core like the broker, and loaded by the same [`crate::raw_get`] loop as discovery and
//! JWKS in the same run. Nothing but the framework answers it (no middleware, no state), so
//! discovery and JWKS as shares of it say what the broker adds to actix-web.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Internal argument: serve the hello handler and print its address.
pub const SERVE_ARG: &str = "--hello-server";
/// The path it answers.
pub const PATH: &str = "/";
/// The line the server prints once it listens (followed by `ip:port`).
const LISTENING: &str = "hello listening on ";

async fn hello() -> &'static str {
    "Hello world!"
}

/// Serves `GET /` with one actix-web worker until killed (run in the re-executed process).
pub fn serve() -> Result<(), String> {
    actix_web::rt::System::new().block_on(async {
        let server = actix_web::HttpServer::new(|| {
            actix_web::App::new().route(PATH, actix_web::web::get().to(hello))
        })
        .workers(1)
        .bind("127.0.0.1:0")
        .map_err(|e| format!("hello server: bind: {e}"))?;
        let addr = server
            .addrs()
            .first()
            .copied()
            .ok_or("hello server: no address")?;
        println!("{LISTENING}{addr}");
        server.run().await.map_err(|e| format!("hello server: {e}"))
    })
}

/// A running hello server; killed on drop.
pub struct Hello {
    child: Child,
    /// Process id (taskset execs this program, so it is the server's own).
    pub pid: u32,
    /// `ip:port`
    pub addr: String,
}

impl Drop for Hello {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Hello {
    /// Starts `self_exe --hello-server`, under `taskset -c cpu` when given, and waits until
    /// it says where it listens.
    pub fn start(self_exe: &Path, cpu: Option<usize>) -> Result<Hello, String> {
        let mut cmd = match cpu {
            Some(cpu) => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(cpu.to_string()).arg(self_exe);
                c
            }
            None => Command::new(self_exe),
        };
        let mut child = cmd
            .arg(SERVE_ARG)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start the hello server: {e}"))?;
        let pid = child.id();
        let stdout = child.stdout.take().ok_or("hello server: no stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix(LISTENING) {
                    let _ = tx.send(addr.trim().to_string());
                }
            }
        });
        let mut hello = Hello {
            child,
            pid,
            addr: String::new(),
        };
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(addr) => {
                hello.addr = addr;
                Ok(hello)
            }
            Err(_) => Err("the hello server did not listen within 30 s".into()),
        }
    }
}
