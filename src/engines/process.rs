//! The one wrapper around child processes (terraform, bicep).
//!
//! - The child runs in its own process group, so signals reach terraform *and* its providers,
//!   and a Ctrl-C at the daemon's terminal does not reach it behind our back.
//! - stdout and stderr go to files in the workspace, not pipes: if the daemon dies, terraform
//!   keeps writing and finishes instead of dying of SIGPIPE mid-apply (design.md §4). The files
//!   are tailed concurrently, line by line, so any amount of output never blocks anything.
//! - Stop (cancel, timeout, shutdown): SIGINT to the group (terraform stops cleanly and saves
//!   state), SIGKILL to the group after the grace period. The child is always reaped.
//! - Argument and environment values are never logged (they can hold credentials).

use std::fs::File;
use std::io::{Read, Seek};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::Command;
use tokio::time::{Instant, sleep, sleep_until};

use super::{StopReason, StopSignal, Stream};

/// How often the output files are read while the child runs.
const TAIL_INTERVAL: Duration = Duration::from_millis(50);

/// One command to run.
#[derive(Debug, Clone)]
pub struct Step {
    /// Short name, used for the output files (`init`, `plan`...).
    pub name: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    /// The complete environment of the child: nothing of the daemon's is inherited.
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
    /// Where `<name>.stdout` and `<name>.stderr` are written.
    pub output_dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("{program} not found: install it or set its path in the configuration")]
    NotFound { program: String },
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("i/o error on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("timed out after {0} s")]
    TimedOut(u64),
    #[error("stopped ({0:?})")]
    Stopped(StopReason),
}

/// Limits that apply to one step.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The run's deadline (the whole run, not this step).
    pub deadline: Instant,
    /// The run timeout in seconds, for the message.
    pub timeout_secs: u64,
    /// Time between SIGINT and SIGKILL.
    pub grace: Duration,
}

impl Limits {
    /// The limits of a step of `job`, whose run ends at `deadline`.
    pub fn for_run(job: &super::RunJob, deadline: Instant) -> Limits {
        Limits {
            deadline,
            timeout_secs: job.timeout.as_secs(),
            grace: job.cancel_grace,
        }
    }
}

impl From<ProcessError> for super::EngineError {
    fn from(e: ProcessError) -> Self {
        use super::EngineError;
        match e {
            ProcessError::TimedOut(s) => EngineError::TimedOut(s),
            ProcessError::Stopped(r) => EngineError::Stopped(r),
            e @ ProcessError::NotFound { .. } => EngineError::Unavailable(e.to_string()),
            other => EngineError::Failed(other.to_string()),
        }
    }
}

/// What a step printed, for steps whose output is data (`terraform output -json`, `bicep build
/// --stdout`) rather than a log.
pub struct Captured {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: Vec<String>,
}

/// Runs `step` to its end and keeps its output.
pub async fn capture(
    step: &Step,
    limits: Limits,
    stop: &mut StopSignal,
) -> Result<Captured, ProcessError> {
    let mut stdout = String::new();
    let mut stderr = Vec::new();
    let status = run_step(step, limits, stop, |stream, line| match stream {
        Stream::Stdout => {
            stdout.push_str(line);
            stdout.push('\n');
        }
        _ => stderr.push(line.to_string()),
    })
    .await?;
    Ok(Captured {
        status,
        stdout,
        stderr,
    })
}

/// Runs `step` to its end, calling `on_line` for every line of output as it appears.
pub async fn run_step(
    step: &Step,
    limits: Limits,
    stop: &mut StopSignal,
    mut on_line: impl FnMut(Stream, &str),
) -> Result<ExitStatus, ProcessError> {
    std::fs::create_dir_all(&step.output_dir).map_err(|source| ProcessError::Io {
        path: step.output_dir.clone(),
        source,
    })?;
    let out_path = step.output_dir.join(format!("{}.stdout", step.name));
    let err_path = step.output_dir.join(format!("{}.stderr", step.name));
    let create = |p: &Path| {
        File::create(p).map_err(|source| ProcessError::Io {
            path: p.to_path_buf(),
            source,
        })
    };
    let (out_file, err_file) = (create(&out_path)?, create(&err_path)?);

    let mut cmd = Command::new(&step.program);
    cmd.args(&step.args)
        .env_clear()
        .envs(step.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&step.cwd)
        .stdin(Stdio::null())
        .stdout(out_file)
        .stderr(err_file)
        .process_group(0);
    let program = step.program.display().to_string();
    let mut child = cmd.spawn().map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => ProcessError::NotFound {
            program: program.clone(),
        },
        _ => ProcessError::Spawn {
            program: program.clone(),
            source,
        },
    })?;
    let pgid = child.id().map(|id| Pid::from_raw(id as i32));
    let mut guard = GroupGuard { pgid, done: false };
    tracing::debug!(step = %step.name, pid = ?pgid, "child started");

    let mut out = Tail::open(&out_path, Stream::Stdout)?;
    let mut err = Tail::open(&err_path, Stream::Stderr)?;
    let mut stopping: Option<(Result<(), ProcessError>, Instant)> = None;
    let stop_requested = *stop.borrow();
    if let Some(reason) = stop_requested {
        signal_group(pgid, Signal::SIGINT);
        stopping = Some((
            Err(ProcessError::Stopped(reason)),
            Instant::now() + limits.grace,
        ));
    }

    let status = loop {
        let kill_at = stopping.as_ref().map(|(_, at)| *at);
        tokio::select! {
            status = child.wait() => {
                break status.map_err(|source| ProcessError::Io { path: step.program.clone(), source })?;
            }
            _ = sleep(TAIL_INTERVAL) => {
                out.drain(&mut on_line, false);
                err.drain(&mut on_line, false);
            }
            _ = sleep_until(limits.deadline), if stopping.is_none() => {
                signal_group(pgid, Signal::SIGINT);
                stopping = Some((Err(ProcessError::TimedOut(limits.timeout_secs)), Instant::now() + limits.grace));
            }
            changed = stop.changed(), if stopping.is_none() => {
                let reason = if changed.is_ok() { *stop.borrow() } else { None };
                match reason {
                    Some(reason) => {
                        signal_group(pgid, Signal::SIGINT);
                        stopping = Some((Err(ProcessError::Stopped(reason)), Instant::now() + limits.grace));
                    }
                    // The sender is gone: nobody can ask us to stop any more. Keep running.
                    None if changed.is_err() => {
                        stopping = Some((Ok(()), Instant::now() + Duration::from_secs(u32::MAX as u64)));
                    }
                    None => {}
                }
            }
            _ = sleep_until(kill_at.unwrap_or_else(Instant::now)), if kill_at.is_some() => {
                tracing::warn!(step = %step.name, "child did not stop after SIGINT; sending SIGKILL to its group");
                signal_group(pgid, Signal::SIGKILL);
                stopping = stopping.map(|(r, _)| (r, Instant::now() + Duration::from_secs(u32::MAX as u64)));
            }
        }
    };
    guard.done = true;
    // Providers may outlive terraform by a moment; make sure nothing of the group is left.
    signal_group(pgid, Signal::SIGKILL);
    out.drain(&mut on_line, true);
    err.drain(&mut on_line, true);
    match stopping {
        Some((Err(e), _)) => Err(e),
        _ => Ok(status),
    }
}

/// If the future running a step is dropped (the actor died), ask the group to stop cleanly:
/// SIGINT, never SIGKILL, so terraform saves its state.
struct GroupGuard {
    pgid: Option<Pid>,
    done: bool,
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if !self.done {
            signal_group(self.pgid, Signal::SIGINT);
        }
    }
}

fn signal_group(pgid: Option<Pid>, signal: Signal) {
    if let Some(pgid) = pgid {
        // ESRCH (the group is gone) is the normal case after exit.
        let _ = killpg(pgid, signal);
    }
}

/// Reads what a child appended to a file since the last call and yields complete lines.
struct Tail {
    file: File,
    stream: Stream,
    pending: Vec<u8>,
}

impl Tail {
    fn open(path: &Path, stream: Stream) -> Result<Tail, ProcessError> {
        let file = File::open(path).map_err(|source| ProcessError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Tail {
            file,
            stream,
            pending: Vec::new(),
        })
    }

    fn drain(&mut self, on_line: &mut impl FnMut(Stream, &str), eof: bool) {
        let mut buf = Vec::new();
        if self.file.read_to_end(&mut buf).is_err() {
            // Keep our place; the next call tries again.
            let _ = self.file.stream_position();
            return;
        }
        self.pending.extend_from_slice(&buf);
        while let Some(pos) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=pos).collect();
            emit(&line[..line.len() - 1], self.stream, on_line);
        }
        if eof && !self.pending.is_empty() {
            let rest = std::mem::take(&mut self.pending);
            emit(&rest, self.stream, on_line);
        }
    }
}

fn emit(raw: &[u8], stream: Stream, on_line: &mut impl FnMut(Stream, &str)) {
    let text = String::from_utf8_lossy(raw);
    let text = strip_ansi(text.trim_end_matches('\r'));
    on_line(stream, &text);
}

/// Removes ANSI escape sequences (colours, cursor moves).
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                // Parameters and intermediates, then one final byte in @..~
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            } else {
                chars.next();
            }
            continue;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::watch;

    fn step(dir: &Path, script: &str) -> Step {
        Step {
            name: "test".into(),
            program: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            env: vec![("PATH".into(), "/usr/bin:/bin".into())],
            cwd: dir.to_path_buf(),
            output_dir: dir.join("out"),
        }
    }

    fn limits(secs: u64) -> Limits {
        Limits {
            deadline: Instant::now() + Duration::from_secs(secs),
            timeout_secs: secs,
            grace: Duration::from_secs(2),
        }
    }

    #[test]
    fn ansi_codes_are_removed() {
        assert_eq!(strip_ansi("\u{1b}[31mError:\u{1b}[0m bad"), "Error: bad");
    }

    #[tokio::test]
    async fn lines_of_both_streams_arrive_and_a_large_output_does_not_block() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_tx, mut rx) = watch::channel(None);
        let mut lines = Vec::new();
        let status = run_step(
            &step(
                dir.path(),
                "echo out; echo err >&2; seq 1 200000; printf tail",
            ),
            limits(30),
            &mut rx,
            |s, l| lines.push((s, l.to_string())),
        )
        .await
        .expect("runs");
        assert!(status.success());
        assert_eq!(lines.len(), 2 + 200_000 + 1);
        assert!(lines.contains(&(Stream::Stderr, "err".into())));
        let last_out = lines.iter().rev().find(|(s, _)| *s == Stream::Stdout);
        assert_eq!(
            last_out,
            Some(&(Stream::Stdout, "tail".into())),
            "unterminated last line kept"
        );
    }

    #[tokio::test]
    async fn environment_is_clean() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_tx, mut rx) = watch::channel(None);
        let mut lines = Vec::new();
        run_step(&step(dir.path(), "env"), limits(30), &mut rx, |_, l| {
            lines.push(l.to_string())
        })
        .await
        .expect("runs");
        assert!(
            lines.iter().all(|l| l.starts_with("PATH=")
                || l.starts_with("PWD=")
                || l.starts_with("SHLVL=")
                || l.starts_with("_=")),
            "{lines:?}"
        );
    }

    #[tokio::test]
    async fn timeout_interrupts_the_group() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_tx, mut rx) = watch::channel(None);
        let started = std::time::Instant::now();
        let err = run_step(
            &step(dir.path(), "sleep 30 & wait"),
            limits(1),
            &mut rx,
            |_, _| {},
        )
        .await
        .expect_err("times out");
        assert!(matches!(err, ProcessError::TimedOut(1)), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[tokio::test]
    async fn stop_sends_sigint_then_sigkill_after_grace() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (tx, mut rx) = watch::channel(None);
        let trap = "trap 'echo got-int' INT; while true; do sleep 0.1; done";
        tokio::spawn(async move {
            sleep(Duration::from_millis(300)).await;
            let _ = tx.send(Some(StopReason::Cancel));
            sleep(Duration::from_secs(10)).await;
        });
        let mut lines = Vec::new();
        let err = run_step(&step(dir.path(), trap), limits(60), &mut rx, |_, l| {
            lines.push(l.to_string())
        })
        .await
        .expect_err("stopped");
        assert!(matches!(err, ProcessError::Stopped(StopReason::Cancel)));
        assert!(
            lines.iter().any(|l| l == "got-int"),
            "SIGINT reached the shell: {lines:?}"
        );
    }

    #[tokio::test]
    async fn missing_program_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_tx, mut rx) = watch::channel(None);
        let mut s = step(dir.path(), "");
        s.program = "/nonexistent/terraform".into();
        let err = run_step(&s, limits(5), &mut rx, |_, _| {})
            .await
            .expect_err("missing");
        assert!(matches!(err, ProcessError::NotFound { .. }));
    }
}
