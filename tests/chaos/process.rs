//! A child process known by its PID: registered for the watchdog, reaped by
//! a thread of its own (so its exit can be awaited), signalled with kill(1),
//! SIGKILLed when dropped while still running.

use std::process::ExitStatus;
use std::time::Duration;

use anyhow::Context;

use crate::report::{forget_child, register_child, signal};

pub struct Process {
    pid: u32,
    exit: tokio::sync::watch::Receiver<Option<ExitStatus>>,
}

impl Process {
    /// Spawns `cmd`; returns the process and its stderr if it was piped.
    pub fn spawn(
        mut cmd: std::process::Command,
        what: &str,
    ) -> anyhow::Result<(Process, Option<std::process::ChildStderr>)> {
        let mut child = cmd.spawn().with_context(|| format!("cannot start {what}"))?;
        let pid = child.id();
        register_child(pid);
        let stderr = child.stderr.take();
        let (tx, exit) = tokio::sync::watch::channel(None);
        std::thread::spawn(move || {
            let status = child.wait();
            forget_child(pid);
            if let Ok(status) = status {
                let _ = tx.send(Some(status));
            }
        });
        Ok((Process { pid, exit }, stderr))
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The exit status, once it has exited.
    pub fn status(&self) -> Option<ExitStatus> {
        *self.exit.borrow()
    }

    /// Waits at most `within` for the exit.
    pub async fn wait(&mut self, within: Duration) -> Option<ExitStatus> {
        let mut exit = self.exit.clone();
        tokio::time::timeout(within, exit.wait_for(Option::is_some)).await.ok()?.ok().and_then(|s| *s)
    }

    /// Sends `sig` (`TERM`, `HUP`, `KILL`…) unless it has exited.
    pub fn signal(&self, sig: &str) -> bool {
        self.status().is_none() && signal(self.pid, sig)
    }

    /// SIGKILL, and waits for the exit.
    pub async fn kill(&mut self) {
        self.signal("KILL");
        self.wait(Duration::from_secs(5)).await;
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.signal("KILL");
    }
}
