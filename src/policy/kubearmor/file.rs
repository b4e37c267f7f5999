//! `spec.file` of a KubeArmor policy: its `matchPaths`, `matchDirectories` and `matchPatterns` rules, with
//! `readOnly`, `ownerOnly`, `fromSource` (not on patterns) and `recursive` as KubeArmor has them. They are
//! read with the process rules' reader (`process.rs`), which knows each section's keys.

use super::fields::{Ctx, Res};
use super::model::Policy;
use super::process::{Section, rules_section};
use super::report::Report;
use super::yaml::Node;

pub(super) fn file(ctx: &Ctx<'_>, section: &Node, policy: &mut Policy, reports: &mut Vec<Report>) -> Res<()> {
    rules_section(ctx, Section::File, section, &mut policy.file_meta, &mut policy.file_rules, reports)
}
