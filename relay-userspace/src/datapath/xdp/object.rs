//! Reading the ABI table out of the embedded object before anything is
//! loaded, so an incompatible object is refused before it touches a map.

use object::{Object as _, ObjectSection as _, ObjectSymbol as _};
use relay_common::{check_meta, parse_meta, AbiMeta, AbiMismatch};

/// Why the object cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// Not a readable ELF file.
    #[error("the BPF object is not valid ELF: {0}")]
    Elf(#[from] object::Error),
    /// The ABI table symbol is missing or truncated.
    #[error("the BPF object has no usable `{0}` ABI table")]
    NoAbiTable(&'static str),
    /// The table disagrees with this build of relay-common.
    #[error("the BPF object does not match this relayd: {0}")]
    Mismatch(#[from] AbiMismatch),
}

/// The `relay_abi` table compiled into `elf`.
pub fn read_abi_meta(elf: &[u8]) -> Result<AbiMeta, ObjectError> {
    let symbol_name = relay_ebpf::SYMBOL_ABI;
    let file = object::File::parse(elf)?;
    let symbol = file
        .symbols()
        .find(|s| s.name() == Ok(symbol_name))
        .ok_or(ObjectError::NoAbiTable(symbol_name))?;
    let section_index = symbol
        .section_index()
        .ok_or(ObjectError::NoAbiTable(symbol_name))?;
    let data = file.section_by_index(section_index)?.data()?;
    let start =
        usize::try_from(symbol.address()).map_err(|_| ObjectError::NoAbiTable(symbol_name))?;
    let end = start.saturating_add(usize::try_from(symbol.size()).unwrap_or(usize::MAX));
    let bytes = data
        .get(start..end)
        .ok_or(ObjectError::NoAbiTable(symbol_name))?;
    parse_meta(bytes).ok_or(ObjectError::NoAbiTable(symbol_name))
}

/// Refuses an object whose ABI table does not match relay-common.
pub fn verify(elf: &[u8]) -> Result<AbiMeta, ObjectError> {
    let meta = read_abi_meta(elf)?;
    check_meta(&meta)?;
    Ok(meta)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The drift check: the compiled C layout equals the Rust layout.
    #[test]
    fn embedded_object_matches_relay_common() {
        let meta = verify(relay_ebpf::relay_object()).expect("C and Rust ABI agree");
        assert_eq!(meta.version, relay_common::ABI_VERSION);
    }

    #[test]
    fn garbage_is_refused_with_a_reason() {
        let err = verify(b"not an elf file at all").unwrap_err();
        assert!(matches!(err, ObjectError::Elf(_)), "{err}");
    }

    #[test]
    fn a_tampered_table_is_refused() {
        let elf = relay_ebpf::relay_object();
        let meta = read_abi_meta(elf).unwrap();
        // Find the table in the file and bump the version in a copy.
        let needle: Vec<u8> = [meta.magic, meta.version]
            .iter()
            .flat_map(|w| w.to_ne_bytes())
            .collect();
        let at = elf.windows(needle.len()).position(|w| w == needle).unwrap();
        let mut copy = elf.to_vec();
        copy[at + 4..at + 8].copy_from_slice(&(meta.version + 1).to_ne_bytes());
        let err = verify(&copy).unwrap_err();
        assert!(
            matches!(err, ObjectError::Mismatch(AbiMismatch::Version { .. })),
            "{err}"
        );
    }
}
