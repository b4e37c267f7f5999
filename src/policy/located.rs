//! Places in configuration text: byte spans as `file:line:col`, and where bytes stop being UTF-8. A leaf
//! the loader, its `[open_guard]` table and the KubeArmor conversion all use.

use std::ops::Range;
use std::path::Path;

use crate::error::{NotUtf8, PolicyError};

/// A file's text, to turn byte spans into `file:line:col`.
pub(crate) struct Located<'a> {
    pub file: &'a Path,
    pub text: &'a str,
}

impl Located<'_> {
    pub fn error(&self, span: Range<usize>, message: impl Into<String>) -> PolicyError {
        let (line, col) = self.place(span.start);
        PolicyError { file: self.file.to_owned(), line, col, message: message.into() }
    }

    /// The 1-based line and column of byte `offset`; the column counts characters.
    pub fn place(&self, offset: usize) -> (usize, usize) {
        let mut at = offset.min(self.text.len());
        while !self.text.is_char_boundary(at) {
            at = at.saturating_sub(1);
        }
        let before = self.text.get(..at).unwrap_or_default();
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, col)
    }

    pub fn origin(&self, span: Range<usize>) -> String {
        let e = self.error(span, "");
        format!("{}:{}:{}", e.file.display(), e.line, e.col)
    }
}

/// The text of a file's bytes, or where they stop being UTF-8 (line and column counted as [`Located`]
/// counts them: characters, from 1).
pub fn utf8(bytes: Vec<u8>) -> Result<String, NotUtf8> {
    String::from_utf8(bytes).map_err(|e| {
        let bytes = e.as_bytes();
        let offset = e.utf8_error().valid_up_to();
        // Everything before `offset` is UTF-8.
        let valid = std::str::from_utf8(bytes.get(..offset).unwrap_or_default()).unwrap_or_default();
        let (line, col) = Located { file: Path::new(""), text: valid }.place(offset);
        let byte = bytes.get(offset).copied().unwrap_or_default();
        NotUtf8 { line, col, offset, byte, cut_short: e.utf8_error().error_len().is_none() }
    })
}
