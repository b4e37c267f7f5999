//! The version a running daemon reports (its STATUS= line, the status file, the start log): the package's,
//! followed by the suffix a built binary may carry in [`SUFFIX_SLOT`]. The slot is empty in every build; the
//! booted-systemd test writes a suffix into a copy of the release binary (`packaging/build.sh next`) to get
//! a second version of the same build without compiling it again, and upgrades to it.

/// The marker the suffix follows, then up to [`SUFFIX_MAX`] bytes of suffix, NUL-padded.
pub const SUFFIX_MARKER: &[u8] = b"NOEXECD-VERSION-SUFFIX:";
pub const SUFFIX_MAX: usize = 24;

/// The marker and the suffix slot, as they lie in the binary (found there by the marker, which occurs once).
#[used]
static SUFFIX_SLOT: [u8; 23 + SUFFIX_MAX] = *b"NOEXECD-VERSION-SUFFIX:\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0";

/// `0.1.0`, or `0.1.0+suffix` for a binary whose slot was written to.
pub fn version() -> String {
    // Read through an opaque reference: the compiler must not fold the slot's build-time bytes into the code,
    // as the binary's file is what carries the suffix.
    let slot: &[u8] = std::hint::black_box(&SUFFIX_SLOT[..]);
    let suffix = slot.get(SUFFIX_MARKER.len()..).unwrap_or_default();
    let suffix = suffix.split(|&b| b == 0).next().unwrap_or_default();
    let suffix = std::str::from_utf8(suffix).unwrap_or_default();
    format!("{}{suffix}", env!("CARGO_PKG_VERSION"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slot_starts_with_its_marker_and_an_unwritten_slot_adds_nothing() {
        assert!(SUFFIX_SLOT.starts_with(SUFFIX_MARKER));
        assert_eq!(SUFFIX_SLOT.len(), SUFFIX_MARKER.len() + SUFFIX_MAX);
        assert_eq!(version(), env!("CARGO_PKG_VERSION"));
    }
}
