//! Paced shards share one simulated clock: the run's [`ClockSchedule`] in `sim_runs.clock`,
//! anchored at a wall-clock instant. A change made on one shard (the dashboard's pause or
//! scale keys) is written there, and every shard adopts what it finds there, so all shards'
//! simulated times agree (given wall clocks kept in step by NTP, as Kubernetes nodes are).

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::sim::clock::{ClockSchedule, PacedClock};
use crate::sim::records::RecordsError;
use crate::sim::records::shards::Fence;
use crate::store::Db;

/// How often a shard looks for (and publishes) clock changes: at 600x, a quarter second is
/// 2.5 simulated minutes of disagreement at most, only while a change propagates.
pub const SYNC_EVERY: Duration = Duration::from_millis(250);

/// The run's stored clock, if any (`None` also when it does not parse).
pub async fn load_clock(db: &Db, run_id: &str) -> Result<Option<ClockSchedule>, RecordsError> {
    let tx = db.read().await?;
    let row = tx
        .query_opt(
            "SELECT clock FROM sim_runs WHERE run_id = $1",
            vec![run_id.to_string().into()],
        )
        .await?;
    tx.commit().await?;
    let Some(row) = row else { return Ok(None) };
    Ok(serde_json::from_value(row.json("clock")?).ok())
}

/// Stores the run's clock (the writer must still hold its shard's lease).
pub async fn store_clock(
    db: &Db,
    fence: &Fence,
    clock: &ClockSchedule,
) -> Result<(), RecordsError> {
    let json = serde_json::to_value(clock)
        .map_err(|e| RecordsError::Invalid(format!("cannot serialise the clock: {e}")))?;
    let tx = db.write().await?;
    fence.check(&tx).await?;
    let c = tx.codec();
    tx.exec(
        "UPDATE sim_runs SET clock = $1 WHERE run_id = $2",
        vec![c.json(&json), fence.run_id.clone().into()],
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Keeps `pacer` and the stored clock in step until `cancel`: a local change is published, a
/// stored change is adopted. Database errors are retried at the next tick.
pub fn spawn(
    db: Db,
    fence: Fence,
    pacer: PacedClock,
    cancel: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut synced = pacer.schedule();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(SYNC_EVERY) => {}
                _ = cancel.cancelled() => return,
            }
            let local = pacer.schedule();
            if local != synced {
                match store_clock(&db, &fence, &local).await {
                    Ok(()) => {
                        tracing::info!(
                            scale = local.scale(),
                            "clock change shared with the other shards"
                        );
                        synced = local;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "could not share a clock change; retrying")
                    }
                }
                continue;
            }
            match load_clock(&db, &fence.run_id).await {
                Ok(Some(stored)) if stored != synced => {
                    tracing::info!(
                        scale = stored.scale(),
                        "clock changed by another shard; following it"
                    );
                    pacer.replace(stored.clone());
                    synced = stored;
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "could not read the shared clock"),
            }
        }
    })
}
