//! A shard's lease: taken (waiting while another live process holds it), kept by a heartbeat,
//! checked by every write ([`Fence`]), and let go when the shard stops.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use super::ShardSpec;
use crate::sim::records::shards::{Acquire, Claim, Fence, ShardProgress, ShardRecord, try_acquire};
use crate::sim::records::{RecordsError, RunStatus};
use crate::store::Db;

/// How long a lease lasts without a heartbeat, and how often it is renewed.
#[derive(Debug, Clone, Copy)]
pub struct LeaseConfig {
    /// A lease not renewed for this long may be taken over.
    pub ttl: Duration,
}

impl LeaseConfig {
    /// Renewals come three times per TTL, so two missed heartbeats do not lose the lease.
    pub fn heartbeat(&self) -> Duration {
        (self.ttl / 3).max(Duration::from_millis(100))
    }
}

/// A held lease.
pub struct Lease {
    db: Db,
    spec: ShardSpec,
    fence: Fence,
    config: LeaseConfig,
    owner: String,
    previous: Option<ShardRecord>,
    /// Why the lease was lost, once it was.
    lost: Mutex<Option<String>>,
}

/// This process's owner name: `host:pid`.
pub fn owner_name() -> String {
    format!("{}:{}", host_name(), std::process::id())
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "unknown-host".to_string())
}

/// True when `owner` names a process on this host that no longer exists: its lease can be
/// taken at once instead of waiting for it to lapse (a process killed and started again on
/// the same machine). Unknown hosts are never presumed dead.
fn holder_gone(owner: &str) -> bool {
    let Some((host, pid)) = owner.rsplit_once(':') else {
        return false;
    };
    let Ok(pid) = pid.parse::<i32>() else {
        return false;
    };
    if host != host_name() || pid <= 0 || pid as u32 == std::process::id() {
        return false;
    }
    // Signal 0 checks existence without sending anything.
    // SAFETY: kill(2) with signal 0 has no effect on the target.
    let r = unsafe { libc::kill(pid, 0) };
    r != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
}

/// What [`Lease::acquire`] ends with.
pub enum Acquired {
    /// The lease is ours.
    Lease(Arc<Lease>),
    /// The shard finished earlier: nothing to do.
    Finished(ShardRecord),
}

impl Lease {
    /// Takes the lease of `spec`'s shard of `run_id`, waiting while another live process holds
    /// it (a restarted pod waits for its predecessor's lease to lapse). `cancel` ends the wait.
    pub async fn acquire(
        db: &Db,
        run_id: &str,
        spec: ShardSpec,
        config: LeaseConfig,
        cancel: &CancellationToken,
    ) -> anyhow::Result<Acquired> {
        let owner = owner_name();
        let ttl = chrono::Duration::from_std(config.ttl)
            .map_err(|_| anyhow::anyhow!("--lease-ttl {:?} is too long", config.ttl))?;
        let claim = Claim {
            run_id,
            shard: spec.index,
            shards: spec.count,
            owner: &owner,
            ttl,
        };
        let mut told: Option<std::time::Instant> = None;
        loop {
            match try_acquire(db, &claim, holder_gone).await {
                Ok(Acquire::Acquired { fence, previous }) => {
                    tracing::info!(shard = %spec, fence, owner = %owner, taken_from = previous.as_ref().map(|p| p.owner.as_str()), "lease taken");
                    return Ok(Acquired::Lease(Arc::new(Lease {
                        db: db.clone(),
                        spec,
                        fence: Fence {
                            run_id: run_id.to_string(),
                            shard: spec.index,
                            fence,
                        },
                        config,
                        owner,
                        previous,
                        lost: Mutex::new(None),
                    })));
                }
                Ok(Acquire::Finished(row)) => return Ok(Acquired::Finished(row)),
                Ok(Acquire::Held(row)) => {
                    if told.is_none_or(|t| t.elapsed() >= Duration::from_secs(30)) {
                        let left = (row.lease_until - chrono::Utc::now())
                            .to_std()
                            .unwrap_or_default();
                        tracing::warn!(
                            shard = %spec,
                            holder = %row.owner,
                            fence = row.fence,
                            "shard {spec} of run {run_id} is leased by {} (heartbeat {} ago); waiting for it to stop or its lease to lapse (in {}); this process writes nothing meanwhile",
                            row.owner,
                            humantime::format_duration(Duration::from_secs((chrono::Utc::now() - row.heartbeat_at).num_seconds().max(0) as u64)),
                            humantime::format_duration(Duration::from_secs(left.as_secs())),
                        );
                        told = Some(std::time::Instant::now());
                    }
                }
                Err(RecordsError::Store(e)) if e.is_unavailable() => {
                    tracing::warn!(error = %e, "database unreachable while taking the shard's lease; retrying");
                }
                Err(e) => return Err(e.into()),
            }
            let pause = (config.ttl / 4).clamp(Duration::from_millis(100), Duration::from_secs(1));
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = cancel.cancelled() => anyhow::bail!(
                    "stopped while waiting for the lease of shard {spec} of run {run_id}"
                ),
            }
        }
    }

    /// The fence every write for this shard checks.
    pub fn fence(&self) -> &Fence {
        &self.fence
    }

    /// The shard.
    pub fn spec(&self) -> ShardSpec {
        self.spec
    }

    /// This process's owner name.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The shard's row before this process took it (`None` on its first start).
    pub fn previous(&self) -> Option<&ShardRecord> {
        self.previous.as_ref()
    }

    /// Why the lease was lost, if it was.
    pub fn lost(&self) -> Option<String> {
        self.lost.lock().clone()
    }

    /// Keeps the lease until `stop`: renews it every third of its TTL with the shard's
    /// progress. When another process took the shard over, records why and cancels `run` (the
    /// run stops; its writes are fenced off anyway). A database outage is waited out: nobody else can
    /// take the lease while the database is unreachable for everyone, and a process that
    /// could is fenced off when this one comes back.
    pub fn keep(
        self: &Arc<Self>,
        progress: impl Fn() -> ShardProgress + Send + 'static,
        stop: CancellationToken,
        run: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let lease = self.clone();
        tokio::spawn(async move {
            let ttl = chrono::Duration::from_std(lease.config.ttl)
                .unwrap_or_else(|_| chrono::Duration::seconds(30));
            let mut down_since: Option<std::time::Instant> = None;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(lease.config.heartbeat()) => {}
                    _ = stop.cancelled() => return,
                }
                match lease.fence.renew(&lease.db, ttl, &progress()).await {
                    Ok(()) => {
                        if let Some(since) = down_since.take() {
                            tracing::info!(waited = ?since.elapsed(), "lease renewed after a database outage");
                        }
                    }
                    Err(e @ RecordsError::LeaseLost { .. }) => {
                        let why = e.to_string();
                        tracing::error!("{why}");
                        *lease.lost.lock() = Some(why);
                        run.cancel();
                        return;
                    }
                    Err(e) => {
                        if down_since.is_none() {
                            tracing::warn!(error = %e, "could not renew the shard's lease; retrying");
                            down_since = Some(std::time::Instant::now());
                        }
                    }
                }
            }
        })
    }

    /// Lets the lease go with the shard's final status and sets the run's (finished once all
    /// its shards are); returns the run's status.
    pub async fn finish(&self, status: RunStatus) -> Result<RunStatus, RecordsError> {
        self.fence.finish(&self.db, status, self.spec.count).await
    }

    /// Records a write's loss of the lease (a fenced write failed) so the run reports it.
    pub fn mark_lost(&self, why: String) {
        self.lost.lock().get_or_insert(why);
    }
}
