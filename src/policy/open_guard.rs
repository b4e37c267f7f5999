//! Validation of the `[open_guard]` table.
#![forbid(unsafe_code)]

use toml::Spanned;

use super::Located;
use super::raw::RawOpenGuard;
use crate::error::PolicyError;
use crate::open_guard::{OpenGuardConfig, ProgramName};

pub(super) fn validate(at: &Located<'_>, raw: &RawOpenGuard) -> Result<OpenGuardConfig, PolicyError> {
    let mut out = OpenGuardConfig::default();
    if let Some(enabled) = raw.enabled {
        out.enabled = enabled;
    }
    if let Some(list) = &raw.interpreters {
        out.interpreters = names(at, list, "interpreters", "python3")?;
    }
    if let Some(list) = &raw.elf_readers {
        out.elf_readers = names(at, list, "elf_readers", "sha256sum")?;
    }
    if let Some(list) = &raw.script_parents {
        out.script_parents = names(at, list, "script_parents", "rpm")?;
    }
    Ok(out)
}

/// Program file names (`python3`, `*-ld.bfd`): not paths, not empty, valid globs.
fn names(
    at: &Located<'_>,
    list: &[Spanned<String>],
    key: &str,
    example: &str,
) -> Result<Vec<ProgramName>, PolicyError> {
    list.iter()
        .map(|entry| {
            let name = entry.get_ref();
            if name.is_empty() {
                return Err(at.error(entry.span(), format!("{key} holds an empty name: write a program's file name such as \"{example}\"")));
            }
            if name.contains('/') || name.contains('\0') {
                return Err(at.error(entry.span(), format!("{key} entry \"{name}\" is a path: write the program's file name alone, such as \"{example}\" (it matches the executable's name in any directory)")));
            }
            ProgramName::new(name).map_err(|e| {
                at.error(entry.span(), format!("{key} entry \"{name}\" is not a valid glob: {}", e.kind()))
            })
        })
        .collect()
}
