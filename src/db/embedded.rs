//! The embedded PostgreSQL cluster used when `database.url` is empty (design.md §8).
//!
//! It lives under `<data_dir>/postgres` (`data/` is the cluster, `run/` the unix socket
//! directory), listens on no TCP port, is reused by the next start, and is stopped when this
//! value is dropped. The daemon owns its cluster: one left running by a process that died
//! (kill -9) is adopted and stopped on shutdown like one started here. An exclusive lock on
//! `<data_dir>/postgres/owner.lock` makes sure only one live process owns it at a time. When the daemon runs as root, PostgreSQL (which refuses root) runs as the
//! system `postgres` user, or `nobody` when there is none. All of this is blocking and runs before
//! the actix system starts.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use diesel::pg::PgConnection;
use diesel::{Connection, RunQueryDsl};
use nix::fcntl::{Flock, FlockArg};
use nix::unistd::{Gid, Uid, User};

/// The database the daemon uses inside its own cluster.
pub const DATABASE: &str = "multicloud";
const SUPERUSER: &str = "postgres";
/// Unix socket paths are limited to 107 bytes (`sun_path`).
const MAX_SOCKET_DIR: usize = 90;

#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found on PATH or under \
         /usr/lib/postgresql/*/bin; install PostgreSQL (Debian: apt-get install postgresql) or \
         set database.url to an existing server"
    )]
    NotInstalled,
    #[error("{0}")]
    Io(String),
    #[error("{step} failed: {detail}")]
    Command { step: &'static str, detail: String },
}

/// A running embedded cluster. Dropping it stops the server.
#[derive(Debug)]
pub struct EmbeddedPostgres {
    bin: PathBuf,
    data: PathBuf,
    socket_dir: PathBuf,
    log_file: PathBuf,
    run_as: Option<(Uid, Gid)>,
    /// Whether the server still has to be stopped by this value.
    running: bool,
    /// Held for as long as this process owns the cluster (released by the kernel on death).
    _owner: Flock<fs::File>,
}

impl EmbeddedPostgres {
    /// Initializes the cluster on first use, starts it (or reuses one still running from a
    /// previous process), and makes sure the `multicloud` database exists.
    pub fn start(data_dir: &Path) -> Result<EmbeddedPostgres, EmbeddedError> {
        let bin = find_bin_dir().ok_or(EmbeddedError::NotInstalled)?;
        let root = absolute(&data_dir.join("postgres"))?;
        let data = root.join("data");
        let socket_dir = socket_dir_for(&root);
        let log_file = root.join("server.log");
        let run_as = unprivileged_user()?;

        for dir in [&root, &socket_dir] {
            fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
            set_mode(dir, 0o700)?;
            chown(dir, run_as)?;
        }
        if let Some((uid, _)) = run_as {
            check_reachable(&root, uid)?;
        }
        let owner = lock_owner(&root.join("owner.lock"))?;

        let mut pg = EmbeddedPostgres {
            bin,
            data,
            socket_dir,
            log_file,
            run_as,
            running: false,
            _owner: owner,
        };
        if !pg.data.join("PG_VERSION").is_file() {
            pg.initdb()?;
        }
        if pg.is_running() {
            tracing::info!(data = %pg.data.display(), "adopting the embedded PostgreSQL left running by a previous process; it is stopped with this one");
        } else {
            pg.pg_ctl_start()?;
        }
        pg.running = true;
        pg.ensure_database()?;
        Ok(pg)
    }

    /// A libpq URL over the unix socket.
    pub fn url(&self) -> String {
        self.url_for(DATABASE)
    }

    fn url_for(&self, database: &str) -> String {
        format!(
            "postgres:///{database}?host={}&user={SUPERUSER}",
            self.socket_dir.display()
        )
    }

    fn initdb(&self) -> Result<(), EmbeddedError> {
        tracing::info!(data = %self.data.display(), "initializing the embedded PostgreSQL cluster");
        let out = self.run(
            "initdb",
            [
                OsStr::new("-D"),
                self.data.as_os_str(),
                OsStr::new("-U"),
                OsStr::new(SUPERUSER),
                OsStr::new("--auth=trust"),
                OsStr::new("-E"),
                OsStr::new("UTF8"),
                OsStr::new("--locale=C"),
                OsStr::new("--no-instructions"),
            ],
        )?;
        check("initdb", &out)
    }

    fn is_running(&self) -> bool {
        let pid_file = self.data.join("postmaster.pid");
        pid_file.exists()
            && self
                .run("pg_ctl", [OsStr::new("status"), OsStr::new("-D"), self.data.as_os_str()])
                .map(|o| o.status.success())
                .unwrap_or(false)
                // A server left by a previous process answers on our socket: reuse it.
                && PgConnection::establish(&self.url_for("postgres")).is_ok()
    }

    fn pg_ctl_start(&self) -> Result<(), EmbeddedError> {
        let options = format!(
            "-c listen_addresses='' -k {} -c unix_socket_permissions=0700 -c max_connections=200",
            self.socket_dir.display()
        );
        let out = self.run(
            "pg_ctl",
            [
                OsStr::new("start"),
                OsStr::new("-w"),
                OsStr::new("-t"),
                OsStr::new("60"),
                OsStr::new("-D"),
                self.data.as_os_str(),
                OsStr::new("-l"),
                self.log_file.as_os_str(),
                OsStr::new("-o"),
                OsStr::new(&options),
            ],
        )?;
        check("pg_ctl start", &out).map_err(|e| match e {
            EmbeddedError::Command { step, detail } => EmbeddedError::Command {
                step,
                detail: format!("{detail} (server log: {})", self.log_file.display()),
            },
            other => other,
        })?;
        tracing::info!(socket = %self.socket_dir.display(), "embedded PostgreSQL started");
        Ok(())
    }

    fn ensure_database(&self) -> Result<(), EmbeddedError> {
        let mut conn = PgConnection::establish(&self.url_for("postgres")).map_err(|e| {
            EmbeddedError::Command {
                step: "connect",
                detail: e.to_string(),
            }
        })?;
        #[derive(diesel::QueryableByName)]
        struct Exists {
            #[diesel(sql_type = diesel::sql_types::Bool)]
            exists: bool,
        }
        let found: Exists = diesel::sql_query(format!(
            "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = '{DATABASE}') AS exists"
        ))
        .get_result(&mut conn)
        .map_err(|e| EmbeddedError::Command {
            step: "query pg_database",
            detail: e.to_string(),
        })?;
        if !found.exists {
            diesel::sql_query(format!("CREATE DATABASE {DATABASE}"))
                .execute(&mut conn)
                .map_err(|e| EmbeddedError::Command {
                    step: "create database",
                    detail: e.to_string(),
                })?;
        }
        Ok(())
    }

    /// Stops the server (fast shutdown: sessions are ended, data is flushed), whether this
    /// process started it or adopted it.
    pub fn stop(&mut self) {
        if !self.running {
            return;
        }
        self.running = false;
        match self.run(
            "pg_ctl",
            [
                OsStr::new("stop"),
                OsStr::new("-w"),
                OsStr::new("-m"),
                OsStr::new("fast"),
                OsStr::new("-D"),
                self.data.as_os_str(),
            ],
        ) {
            Ok(out) if out.status.success() => tracing::info!("embedded PostgreSQL stopped"),
            Ok(out) => tracing::warn!(
                stderr = %String::from_utf8_lossy(&out.stderr).trim(),
                "embedded PostgreSQL did not stop cleanly"
            ),
            Err(e) => tracing::warn!(error = %e, "could not stop embedded PostgreSQL"),
        }
    }

    fn run<I, S>(&self, program: &str, args: I) -> Result<Output, EmbeddedError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new(self.bin.join(program));
        cmd.args(args)
            .current_dir(self.data.parent().unwrap_or(Path::new("/")));
        // PostgreSQL's tools read PG* variables; start from a known environment.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("PG") {
                cmd.env_remove(key);
            }
        }
        // PostgreSQL speaks sd_notify too: it must not talk to the daemon's service manager.
        cmd.env_remove("NOTIFY_SOCKET");
        if let Some((uid, gid)) = self.run_as {
            use std::os::unix::process::CommandExt;
            cmd.uid(uid.as_raw()).gid(gid.as_raw());
            if let Ok(Some(user)) = User::from_uid(uid) {
                cmd.env("HOME", user.dir).env("USER", user.name);
            }
        }
        cmd.output().map_err(|e| EmbeddedError::Command {
            step: "spawn",
            detail: format!("{program}: {e}"),
        })
    }
}

impl Drop for EmbeddedPostgres {
    fn drop(&mut self) {
        self.stop();
    }
}

fn check(step: &'static str, out: &Output) -> Result<(), EmbeddedError> {
    if out.status.success() {
        return Ok(());
    }
    let mut detail = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if detail.is_empty() {
        detail = String::from_utf8_lossy(&out.stdout).trim().to_string();
    }
    Err(EmbeddedError::Command { step, detail })
}

/// Takes the cluster's owner lock, or says which process holds it.
fn lock_owner(path: &Path) -> Result<Flock<fs::File>, EmbeddedError> {
    use std::io::{Read, Seek, Write};
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| io_err(path, e))?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(mut locked) => {
            let pid = std::process::id().to_string();
            let written = locked
                .set_len(0)
                .and_then(|_| locked.rewind())
                .and_then(|_| locked.write_all(pid.as_bytes()));
            written.map_err(|e| io_err(path, e))?;
            Ok(locked)
        }
        Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            Err(EmbeddedError::Io(format!(
                "another multicloud process (pid {}) runs the embedded PostgreSQL of {}; stop it \
                 first, or give this one another paths.data_dir",
                holder.trim(),
                path.parent().unwrap_or(path).display()
            )))
        }
        Err((_, e)) => Err(EmbeddedError::Io(format!("lock {}: {e}", path.display()))),
    }
}

/// `pg_ctl` on PATH, else the newest `/usr/lib/postgresql/<version>/bin`.
fn find_bin_dir() -> Option<PathBuf> {
    let has_all = |dir: &Path| {
        ["initdb", "pg_ctl", "postgres"]
            .iter()
            .all(|b| dir.join(b).is_file())
    };
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if has_all(&dir) {
                return Some(dir);
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            has_all(&bin).then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// As root: the `postgres` system user, else `nobody`. Otherwise: ourselves.
fn unprivileged_user() -> Result<Option<(Uid, Gid)>, EmbeddedError> {
    if !Uid::effective().is_root() {
        return Ok(None);
    }
    for name in ["postgres", "nobody"] {
        if let Ok(Some(user)) = User::from_name(name) {
            return Ok(Some((user.uid, user.gid)));
        }
    }
    Err(EmbeddedError::Io(
        "running as root, the embedded PostgreSQL needs an unprivileged user (postgres or nobody) \
         to run as, and none exists"
            .into(),
    ))
}

/// Every ancestor of `dir` must be searchable by the unprivileged user, or PostgreSQL cannot
/// reach its own data. Say so clearly instead of failing deep inside pg_ctl.
fn check_reachable(dir: &Path, uid: Uid) -> Result<(), EmbeddedError> {
    use std::os::unix::fs::MetadataExt;
    for ancestor in dir.ancestors().skip(1) {
        let Ok(meta) = fs::metadata(ancestor) else {
            continue;
        };
        let mode = meta.mode();
        let searchable = if meta.uid() == uid.as_raw() {
            mode & 0o100 != 0
        } else {
            // Group membership aside (we clear supplementary groups), "other" decides.
            mode & 0o001 != 0
        };
        if !searchable {
            return Err(EmbeddedError::Io(format!(
                "the embedded PostgreSQL runs as an unprivileged user (the daemon runs as root) \
                 and cannot reach {}: {} is not searchable by others (mode {:o}); choose a \
                 paths.data_dir outside it, or set database.url",
                dir.display(),
                ancestor.display(),
                mode & 0o7777
            )));
        }
    }
    Ok(())
}

/// `<root>/run`, or a short directory under /tmp when that path would be too long for a socket.
fn socket_dir_for(root: &Path) -> PathBuf {
    let dir = root.join("run");
    if dir.as_os_str().len() <= MAX_SOCKET_DIR {
        return dir;
    }
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    root.hash(&mut h);
    std::env::temp_dir().join(format!("multicloud-pg-{:016x}", h.finish()))
}

fn absolute(path: &Path) -> Result<PathBuf, EmbeddedError> {
    std::path::absolute(path).map_err(|e| io_err(path, e))
}

fn set_mode(path: &Path, mode: u32) -> Result<(), EmbeddedError> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|e| io_err(path, e))
}

fn chown(path: &Path, run_as: Option<(Uid, Gid)>) -> Result<(), EmbeddedError> {
    if let Some((uid, gid)) = run_as {
        nix::unistd::chown(path, Some(uid), Some(gid))
            .map_err(|e| EmbeddedError::Io(format!("chown {}: {e}", path.display())))?;
    }
    Ok(())
}

fn io_err(path: &Path, e: std::io::Error) -> EmbeddedError {
    EmbeddedError::Io(format!("{}: {e}", path.display()))
}
