//! Alerts, after the answer: the KubeArmor schema (`schema`), the writer that takes them off the bounded
//! channel (`sink`), the rate limit shared with the decision path's gate (`rate_limit`), the live socket
//! (`stream`), KubeArmor's gRPC LogService (`grpc`) and the once-a-minute report of lost alerts (`drop_report`).
#![forbid(unsafe_code)]

pub mod drop_report;
pub mod grpc;
pub mod rate_limit;
pub mod schema;
pub mod sink;
pub mod stream;

pub use schema::{Alert, ExecAlert, FileAlert, Origin, open_data};
