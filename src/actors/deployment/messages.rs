//! Messages of the deployment actor.

use actix::prelude::*;

use super::DeploymentActor;
use crate::engines::StopReason;

/// Ask the run to stop: cancel (final status `cancelled`) or shutdown (lease released).
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopRun(pub StopReason);

impl Handler<StopRun> for DeploymentActor {
    type Result = ();

    fn handle(&mut self, msg: StopRun, _: &mut Context<Self>) {
        tracing::info!(deployment.id = %self.deployment.id, run.id = %self.run.id, reason = ?msg.0, "stopping run");
        self.stop_tx.send_replace(Some(msg.0));
    }
}

/// The supervisor could not renew this run's lease: another node may own it now. Stop the
/// engine cleanly and write nothing.
#[derive(Message)]
#[rtype(result = "()")]
pub struct LeaseLost;

impl Handler<LeaseLost> for DeploymentActor {
    type Result = ();

    fn handle(&mut self, _: LeaseLost, _: &mut Context<Self>) {
        if self.finishing {
            return;
        }
        tracing::warn!(deployment.id = %self.deployment.id, "lease lost; interrupting the run");
        self.lease_lost = true;
        self.stop_tx.send_replace(Some(StopReason::Shutdown));
    }
}
