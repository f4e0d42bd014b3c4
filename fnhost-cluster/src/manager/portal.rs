//! The portal's Workers pages over the state store: [`Cluster`] is a
//! [`WorkersView`].

use fnhost_deploy::manage::{
    InstanceInfo, PlacementInfo, Scale, WorkerInfo, WorkersError, WorkersView,
};

use super::{Cluster, instances_of, shown_state};
use crate::now_ms;
use crate::state::{Placement, PlacementMode, WorkerState};

#[async_trait::async_trait]
impl WorkersView for Cluster {
    async fn workers(&self) -> Result<Vec<WorkerInfo>, WorkersError> {
        let inner = &self.inner;
        let now = now_ms();
        let assignments = inner.state.assignments().await?;
        let workers = inner.state.workers().await?;
        Ok(workers
            .into_iter()
            .filter(|w| w.state != WorkerState::Gone)
            .map(|w| {
                let reported = instances_of(&w);
                let instances = assignments
                    .iter()
                    .filter(|a| a.worker == w.name)
                    .map(|a| {
                        let running = reported.iter().find(|i| {
                            i.app == a.app && i.slot == a.slot && i.deployment == a.deployment
                        });
                        InstanceInfo {
                            app: a.app.clone(),
                            slot: a.slot.clone(),
                            deployment: a.deployment.clone(),
                            state: match running {
                                Some(i) if i.ready => "ready",
                                Some(_) => "starting",
                                None => "assigned",
                            }
                            .into(),
                            in_flight: running.map_or(0, |i| i.in_flight),
                        }
                    })
                    .collect();
                WorkerInfo {
                    state: shown_state(&w, now, inner.heartbeat_ms).to_string(),
                    in_flight: reported.iter().map(|i| i.in_flight).sum(),
                    last_heartbeat_ms_ago: now - w.last_heartbeat,
                    labels: w.labels,
                    capacity: w.capacity,
                    instances,
                    name: w.name,
                }
            })
            .collect())
    }

    async fn placements(&self) -> Result<Vec<PlacementInfo>, WorkersError> {
        let placements = self.inner.state.placements().await?;
        Ok(placements
            .into_iter()
            .map(|p| PlacementInfo {
                scale: match p.mode {
                    PlacementMode::Auto => Scale::Auto {
                        min: p.min_instances,
                        max: p.max_instances,
                    },
                    PlacementMode::EveryWorker => Scale::EveryWorker,
                    PlacementMode::Fixed => Scale::Instances {
                        instances: p.min_instances,
                    },
                },
                app: p.app,
                slot: p.slot,
                labels: p.labels,
            })
            .collect())
    }

    async fn drain(&self, worker: &str) -> Result<bool, WorkersError> {
        let found = self.inner.state.request_drain(worker).await?;
        if found {
            (self.inner.log)(&format!("cluster: worker {worker} asked to drain"));
        }
        Ok(found)
    }

    async fn place(&self, placement: &PlacementInfo) -> Result<(), WorkersError> {
        let (app, slot) = (&placement.app, &placement.slot);
        let set = match placement.scale {
            Scale::Instances { instances } => Placement::fixed(app, slot, instances),
            Scale::Auto { min, max } => Placement::auto(app, slot, min, max),
            Scale::EveryWorker => Placement::every_worker(app, slot),
            ref other => {
                let why = format!("{app}/{slot}: scale {other:?} is not known to this manager");
                return Err(why.into());
            }
        };
        let set = set.with_labels(placement.labels.clone());
        self.inner.state.set_placement(&set).await?;
        Ok(())
    }

    async fn unplace(&self, app: &str, slot: &str) -> Result<(), WorkersError> {
        self.inner.state.remove_placement(app, slot).await?;
        Ok(())
    }

    async fn join_token(&self) -> Result<String, WorkersError> {
        Ok(crate::state::new_join_token(&*self.inner.state).await?)
    }
}
