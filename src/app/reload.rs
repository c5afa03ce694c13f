//! Reloading: on SIGHUP or when a watched file changes, the config is read,
//! validated and built into a new gateway on a blocking thread (files are
//! read, policies compiled, system roots loaded: on the one-CPU
//! `current_thread` runtime that work would otherwise stall every request),
//! then swapped in. Reloads run one at a time; a failed one changes nothing.
//!
//! The watcher watches the folders of the config file, the certificates and
//! the policies, as absolute canonical paths (a relative `--config` works),
//! and re-registers its watches after every reload, so a reload that moves
//! `policies:` or the certificates watches the new places.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::{Runtime, build, spawn_key_refresh};
use crate::config::{Config, ConfigErrors};
use crate::telemetry::ResultLabels;
use crate::yaml::SourceError;

/// Quiet period after a change before reloading (editors write files in
/// several steps).
const SETTLE: Duration = Duration::from_millis(200);

/// Paths whose change triggers a reload, absolute and canonical where they
/// exist.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Watched {
    files: Vec<PathBuf>,
    policies: PathBuf,
}

/// `path` made absolute, and canonical when it exists.
fn canonical(path: &Path) -> PathBuf {
    path.canonicalize().or_else(|_| std::path::absolute(path)).unwrap_or_else(|_| path.to_owned())
}

impl Watched {
    pub(super) fn of(config: &Config) -> Self {
        let mut files = vec![canonical(&config.source)];
        if let Some(t) = &config.tls {
            files.push(canonical(&t.cert));
            files.push(canonical(&t.key));
        }
        Self { files, policies: canonical(&config.policies) }
    }

    /// Folders to watch (non-recursively, except the policy folder).
    fn folders(&self) -> Vec<(PathBuf, bool)> {
        let mut out: Vec<(PathBuf, bool)> = Vec::new();
        for f in &self.files {
            if let Some(parent) = f.parent() {
                out.push((parent.to_owned(), false));
            }
        }
        if self.policies.is_dir() {
            out.push((self.policies.clone(), true));
        } else if let Some(parent) = self.policies.parent() {
            out.push((parent.to_owned(), false));
        }
        out.sort();
        out.dedup();
        out
    }

    /// Whether an event on `path` (absolute, as the watcher reports it)
    /// concerns a watched file.
    fn is_relevant(&self, path: &Path) -> bool {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        // Kubernetes swaps mounted files through a `..data` symlink.
        name.starts_with("..")
            || self.files.iter().any(|f| same_file(f, path))
            || path.starts_with(&self.policies)
            || same_file(&self.policies, path)
    }
}

/// Equal paths, or the same existing file (through symlinks).
fn same_file(a: &Path, b: &Path) -> bool {
    a == b || (a.file_name() == b.file_name() && a.canonicalize().ok() == b.canonicalize().ok())
}

impl Runtime {
    /// Re-reads config, policies and certificates and swaps them in if all
    /// of them are valid. On error nothing changes, the errors (with
    /// file:line) are returned and logged, and a failed reload is counted.
    pub async fn reload(&self) -> Result<(), ConfigErrors> {
        // One reload at a time; the live objects are reused by the build.
        let mut live = self.live.lock().await;
        let path = self.config_path.clone();
        let previous = live.clone();
        let built = tokio::task::spawn_blocking(move || {
            let config = Config::load(&path)?;
            let addresses = (config.listen, config.admin_listen);
            let watched = Watched::of(&config);
            let (gateway, tls, live) = build(config, &previous)?;
            Ok::<_, ConfigErrors>((gateway, tls, live, watched, addresses))
        })
        .await
        .unwrap_or_else(|e| {
            Err(ConfigErrors(vec![SourceError::new(&self.config_path, 0, 0, format!("reload failed: {e}"))]))
        });
        match built {
            Ok((gateway, tls, next, watched, (listen, admin_listen))) => {
                if listen != self.listen || admin_listen != self.admin_listen {
                    tracing::warn!("listen addresses changed; they take effect after a restart");
                }
                let gateway = Arc::new(gateway);
                self.current.store(gateway.clone());
                if tls.is_some() || self.tls.load().is_some() {
                    self.tls.store(tls);
                }
                *live = next;
                drop(live);
                self.watched.send_if_modified(|w| {
                    let changed = **w != watched;
                    *w = Arc::new(watched);
                    changed
                });
                spawn_key_refresh(&gateway, None);
                self.metrics.reloads.get_or_create(&ResultLabels { result: "ok" }).inc();
                tracing::info!(rules = gateway.policy.rules().len(), "configuration reloaded");
                crate::diagnose::log_warnings(&gateway);
                Ok(())
            }
            Err(e) => {
                self.metrics.reloads.get_or_create(&ResultLabels { result: "error" }).inc();
                for err in &e.0 {
                    tracing::error!(error = %err, "reload refused; the running configuration stays in force");
                }
                Err(e)
            }
        }
    }
}

/// Reloads on SIGHUP.
pub(super) async fn on_sighup(rt: Weak<Runtime>) {
    #[cfg(unix)]
    {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
            return;
        };
        while hup.recv().await.is_some() {
            let Some(rt) = rt.upgrade() else { return };
            tracing::info!("SIGHUP: reloading");
            let _ = rt.reload().await;
        }
    }
    #[cfg(not(unix))]
    let _ = rt;
}

/// Watches config, policy and certificate files until the runtime is gone:
/// a change reloads after a short quiet period; after every reload the
/// watches follow the paths the new configuration names.
pub(super) async fn watch_files(rt: Weak<Runtime>) {
    use notify::Watcher;
    let Some(mut changes) = rt.upgrade().map(|rt| rt.watched.subscribe()) else { return };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(16);
    let filter = changes.clone();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event
            && !matches!(event.kind, notify::EventKind::Access(_))
        {
            let watched = filter.borrow().clone();
            if event.paths.iter().any(|p| watched.is_relevant(p)) {
                let _ = tx.try_send(());
            }
        }
    });
    let mut watcher = match watcher {
        Ok(w) => w,
        Err(e) => return tracing::warn!(error = %e, "cannot watch files; reload with SIGHUP"),
    };
    let mut registered: Vec<(PathBuf, bool)> = Vec::new();
    loop {
        // (Re-)register: drop folders no longer named, add new ones.
        let wanted = changes.borrow_and_update().folders();
        for (folder, _) in registered.iter().filter(|f| !wanted.contains(f)) {
            let _ = watcher.unwatch(folder);
        }
        for (folder, recursive) in wanted.iter().filter(|f| !registered.contains(f)) {
            let mode = if *recursive {
                notify::RecursiveMode::Recursive
            } else {
                notify::RecursiveMode::NonRecursive
            };
            if let Err(e) = watcher.watch(folder, mode) {
                tracing::warn!(folder = %folder.display(), error = %e, "cannot watch folder; reload with SIGHUP");
            }
        }
        registered = wanted;
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            event = rx.recv() => {
                if event.is_none() {
                    return;
                }
                tokio::time::sleep(SETTLE).await;
                while rx.try_recv().is_ok() {}
                let Some(rt) = rt.upgrade() else { return };
                tracing::info!("a watched file changed: reloading");
                let _ = rt.reload().await;
            }
        }
    }
}
