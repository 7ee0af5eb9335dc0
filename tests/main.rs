//! The one integration-test binary: each module is one area (the AWS SDK is linked once).
//! Shared fixtures: `common` (stage, binary, plans), `assets_support`, `view_support`.

mod assets_support;
mod common;
mod view_support;

mod assets_localstack;
mod assets_stage;
mod aws_adapters;
mod daytwo;
mod daytwo_stage;
mod drills;
mod edge_errors;
mod ending;
mod engine;
mod engine_contract;
mod engine_live;
mod engine_read_only;
mod engine_shards;
mod gate_replay;
mod gate_resume;
mod gate_smoke;
mod gate_stage;
mod localstack;
mod manual;
mod notify_stage;
mod operator_stage;
mod plan_files;
mod read_only_stage;
mod rehearse;
mod release_stage;
mod restore_stage;
mod schema_stage;
mod sequences;
mod shards_stage;
mod stage;
mod stage_cli;
mod stage_sequences;
mod timing;
mod tui_e2e;
mod view_cockpit;
mod view_text;
mod watch;
mod watch_drills;
mod watch_stage;
