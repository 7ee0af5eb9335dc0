//! What the live colour runs, for a release whose index cannot say (before the first
//! release there is no live slot): the live colour's service → its task definition → the
//! deploy container's image → the version the plan's `[deploy].image` template made it
//! from. Rolling back to it, or protecting its assets, needs that version by name.

use super::event::ColourName;
use super::ports::{PortResult, Ports};
use super::retry;
use crate::plan::Plan;

/// The live colour's version, or (when the image was not made by the plan's template)
/// the image it runs instead.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveRuns {
    pub version: Option<String>,
    pub image: Option<String>,
}

/// Read back what `colour`'s service runs (read only).
pub async fn read(plan: &Plan, ports: &Ports, colour: ColourName) -> PortResult<LiveRuns> {
    let service = match colour {
        ColourName::Blue => &plan.blue.service,
        ColourName::Green => &plan.green.service,
    };
    let fleet = ports.fleet.as_ref();
    let state = retry::quietly(|| fleet.service(service)).await?;
    let container = &plan.deploy.container;
    let image = retry::quietly(|| fleet.image_of(&state.task_definition, container)).await?;
    Ok(match image {
        Some(image) => match plan.deploy.version_of(&image) {
            Some(v) => LiveRuns {
                version: Some(v),
                image: None,
            },
            None => LiveRuns {
                version: None,
                image: Some(image),
            },
        },
        None => LiveRuns::default(),
    })
}

/// How `status` names a slot whose version is unknown because of `image`.
pub fn unknown_because(image: &str) -> String {
    format!("image {image}, not from this plan's [deploy].image template")
}
