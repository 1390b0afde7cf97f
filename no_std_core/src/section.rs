//! Custom sections of a WebAssembly module, read and rewritten over plain bytes.
//!
//! Format (Wasm core spec 5.5.3): after the 8-byte header (`\0asm`, version 1) come
//! sections, each `id: u8`, `size: uLEB128 u32`, then `size` bytes. A custom section has
//! id 0 and its body starts with `name_len: uLEB128 u32` and a UTF-8 name; the rest is the
//! payload. fluxrig signs modules by appending such a section at the end (see
//! `spec/fluxrig-compat.md` section 3).
//!
//! Entry points: [`sections`] walks every section, [`find_custom`] finds the first custom
//! section of a name, [`strip_custom`] removes it, [`append_custom`] adds one at the end.
//!
//! Guarantees: no function here panics or reads out of bounds for any input; a module
//! that is not well formed at the section level is a [`SectionError`]. Only the section
//! framing is checked, not what is inside non-custom sections: that is the engine's job.

use alloc::vec::Vec;
use core::fmt;
use core::ops::Range;

use crate::limits::MAX_MODULE_BYTES;

/// The 8-byte header of every Wasm module this core accepts: magic `\0asm`, version 1.
pub const WASM_HEADER: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];

/// Why a module's section framing could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SectionError {
    /// The module is larger than [`MAX_MODULE_BYTES`].
    ModuleTooLarge {
        /// The limit, in bytes.
        limit: usize,
        /// The module's size, in bytes.
        got: usize,
    },
    /// The first 8 bytes are not `\0asm` version 1.
    BadHeader,
    /// A LEB128 size is longer than 5 bytes, too large for u32, or cut off.
    BadLeb128 {
        /// Byte offset of the size field.
        offset: usize,
    },
    /// A section (or a custom section's name) claims more bytes than the module has.
    Truncated {
        /// Byte offset of the section.
        offset: usize,
    },
    /// A custom section's name is not UTF-8.
    BadName {
        /// Byte offset of the section.
        offset: usize,
    },
}

impl core::error::Error for SectionError {}

impl fmt::Display for SectionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ModuleTooLarge { limit, got } => {
                write!(f, "module is {got} bytes, limit is {limit} bytes")
            }
            Self::BadHeader => f.write_str("not a WebAssembly module (bad magic or version)"),
            Self::BadLeb128 { offset } => write!(f, "malformed LEB128 size at byte {offset}"),
            Self::Truncated { offset } => {
                write!(f, "section at byte {offset} runs past the end of the module")
            }
            Self::BadName { offset } => {
                write!(f, "custom section at byte {offset} has a name that is not UTF-8")
            }
        }
    }
}

/// One section of a module, as byte ranges into the module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section<'a> {
    /// Section id (0 = custom).
    pub id: u8,
    /// The whole section: id byte, size field and body.
    pub range: Range<usize>,
    /// For a custom section, its name; `None` otherwise.
    pub name: Option<&'a str>,
    /// The body after the name (custom) or the whole body (others).
    pub payload: &'a [u8],
}

/// Reads a uLEB128 u32 at `*pos`, advancing it.
fn read_u32_leb(bytes: &[u8], pos: &mut usize) -> Result<u32, SectionError> {
    let offset = *pos;
    let mut result: u32 = 0;
    for i in 0..5 {
        let byte = *bytes.get(*pos).ok_or(SectionError::BadLeb128 { offset })?;
        *pos += 1;
        let low = u32::from(byte & 0x7f);
        if i == 4 && low > 0x0f {
            return Err(SectionError::BadLeb128 { offset });
        }
        result |= low << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(result);
        }
    }
    Err(SectionError::BadLeb128 { offset })
}

/// Appends `value` as uLEB128 (shortest form).
fn write_u32_leb(out: &mut Vec<u8>, mut value: u32) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// An iterator over the sections of a module; see [`sections`].
#[derive(Debug, Clone)]
pub struct Sections<'a> {
    bytes: &'a [u8],
    pos: usize,
    failed: bool,
}

impl<'a> Iterator for Sections<'a> {
    type Item = Result<Section<'a>, SectionError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.bytes.len() {
            return None;
        }
        let result = self.read_one();
        if result.is_err() {
            self.failed = true;
        }
        Some(result)
    }
}

impl<'a> Sections<'a> {
    fn read_one(&mut self) -> Result<Section<'a>, SectionError> {
        let start = self.pos;
        let truncated = SectionError::Truncated { offset: start };
        let id = *self.bytes.get(start).ok_or(truncated)?;
        let mut pos = start + 1;
        let size = read_u32_leb(self.bytes, &mut pos)? as usize;
        let end = pos
            .checked_add(size)
            .filter(|end| *end <= self.bytes.len())
            .ok_or(SectionError::Truncated { offset: start })?;
        let body = self.bytes.get(pos..end).ok_or(truncated)?;
        let (name, payload) = if id == 0 {
            let mut name_pos = 0;
            let name_len = read_u32_leb(body, &mut name_pos)
                .map_err(|_| SectionError::Truncated { offset: start })? as usize;
            let name_end = name_pos
                .checked_add(name_len)
                .filter(|e| *e <= body.len())
                .ok_or(SectionError::Truncated { offset: start })?;
            let (head, payload) = body.split_at_checked(name_end).ok_or(truncated)?;
            let name = core::str::from_utf8(head.get(name_pos..).ok_or(truncated)?)
                .map_err(|_| SectionError::BadName { offset: start })?;
            (Some(name), payload)
        } else {
            (None, body)
        };
        self.pos = end;
        Ok(Section { id, range: start..end, name, payload })
    }
}

/// Checks the header and size of `module` and returns an iterator over its sections.
///
/// # Errors
/// [`SectionError::ModuleTooLarge`] or [`SectionError::BadHeader`] at once; framing errors
/// come out of the iterator, after which it ends.
pub fn sections(module: &[u8]) -> Result<Sections<'_>, SectionError> {
    if module.len() > MAX_MODULE_BYTES {
        return Err(SectionError::ModuleTooLarge { limit: MAX_MODULE_BYTES, got: module.len() });
    }
    if module.get(..8) != Some(&WASM_HEADER[..]) {
        return Err(SectionError::BadHeader);
    }
    Ok(Sections { bytes: module, pos: 8, failed: false })
}

/// Checks that every section of `module` is well framed.
///
/// # Errors
/// The first [`SectionError`] found.
pub fn check_framing(module: &[u8]) -> Result<(), SectionError> {
    sections(module)?.try_for_each(|s| s.map(|_| ()))
}

/// Finds the first custom section named `name`, after checking the framing of the whole
/// module.
///
/// # Errors
/// Any [`SectionError`] of the module, even one after the section found.
pub fn find_custom<'a>(module: &'a [u8], name: &str) -> Result<Option<Section<'a>>, SectionError> {
    let mut found = None;
    for section in sections(module)? {
        let section = section?;
        if found.is_none() && section.name == Some(name) {
            found = Some(section);
        }
    }
    Ok(found)
}

/// Counts the custom sections named `name`.
///
/// # Errors
/// Any [`SectionError`] of the module.
pub fn count_custom(module: &[u8], name: &str) -> Result<usize, SectionError> {
    let mut count = 0;
    for section in sections(module)? {
        if section?.name == Some(name) {
            count += 1;
        }
    }
    Ok(count)
}

/// Counts the functions a module defines (its function section's vector length).
///
/// # Errors
/// Any [`SectionError`] of the module.
pub fn function_count(module: &[u8]) -> Result<u32, SectionError> {
    for section in sections(module)? {
        let section = section?;
        if section.id == 3 {
            let mut pos = 0;
            return read_u32_leb(section.payload, &mut pos)
                .map_err(|_| SectionError::Truncated { offset: section.range.start });
        }
    }
    Ok(0)
}

/// What a module's sections ask the host to hold besides code, read from section headers
/// alone (the budget prices it: [`crate::budget::gear_worst_case_bytes`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Contents {
    /// Functions the module defines (the function section's vector length).
    pub functions: u32,
    /// Data segments (the data section's vector length).
    pub data_segments: u32,
    /// Bytes of the type, import, global, export and element sections: the module
    /// metadata the engine turns into host structures several times their size.
    pub metadata_bytes: usize,
    /// Bytes after the count of a code section that declares no function bodies (0 in a
    /// valid module).
    pub bodiless_code_bytes: usize,
}

/// Reads a module's [`Contents`] from its section headers, adding up repeated sections.
///
/// # Errors
/// Any [`SectionError`] of the module.
pub fn contents(module: &[u8]) -> Result<Contents, SectionError> {
    let mut contents = Contents::default();
    for section in sections(module)? {
        let section = section?;
        // A repeated section (invalid, but framed) is counted each time: the price stays an
        // upper bound whichever one the engine reads.
        if let 1 | 2 | 6 | 7 | 9 = section.id {
            contents.metadata_bytes = contents.metadata_bytes.saturating_add(section.range.len());
            continue;
        }
        if !matches!(section.id, 3 | 10 | 11) {
            continue;
        }
        let mut pos = 0;
        let count = read_u32_leb(section.payload, &mut pos)
            .map_err(|_| SectionError::Truncated { offset: section.range.start })?;
        match section.id {
            3 => contents.functions = contents.functions.saturating_add(count),
            11 => contents.data_segments = contents.data_segments.saturating_add(count),
            _ if count == 0 => {
                let rest = section.payload.len().saturating_sub(pos);
                contents.bodiless_code_bytes = contents.bodiless_code_bytes.saturating_add(rest);
            }
            _ => {}
        }
    }
    Ok(contents)
}

/// Returns `module` without its first custom section named `name` (unchanged if none).
///
/// # Errors
/// Any [`SectionError`] of the module.
pub fn strip_custom(module: &[u8], name: &str) -> Result<Vec<u8>, SectionError> {
    let mut out = Vec::with_capacity(module.len());
    match find_custom(module, name)? {
        Some(section) => {
            // The range came from walking `module`, so both parts exist.
            out.extend_from_slice(module.get(..section.range.start).unwrap_or_default());
            out.extend_from_slice(module.get(section.range.end..).unwrap_or_default());
        }
        None => out.extend_from_slice(module),
    }
    Ok(out)
}

/// Returns `module` with a custom section `name` holding `payload` appended at the end.
///
/// # Errors
/// Any [`SectionError`] of the module, or [`SectionError::ModuleTooLarge`] if the result
/// would exceed [`MAX_MODULE_BYTES`].
pub fn append_custom(module: &[u8], name: &str, payload: &[u8]) -> Result<Vec<u8>, SectionError> {
    check_framing(module)?;
    let too_large = |got| SectionError::ModuleTooLarge { limit: MAX_MODULE_BYTES, got };
    let name_len = u32::try_from(name.len()).map_err(|_| too_large(usize::MAX))?;
    let mut body = Vec::with_capacity(5 + name.len() + payload.len());
    write_u32_leb(&mut body, name_len);
    body.extend_from_slice(name.as_bytes());
    body.extend_from_slice(payload);
    let body_len = u32::try_from(body.len()).map_err(|_| too_large(usize::MAX))?;
    let total = module.len().saturating_add(6).saturating_add(body.len());
    if total > MAX_MODULE_BYTES {
        return Err(too_large(total));
    }
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(module);
    out.push(0);
    write_u32_leb(&mut out, body_len);
    out.extend_from_slice(&body);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    const BARE: [u8; 8] = WASM_HEADER;

    #[test]
    fn append_then_find_then_strip_round_trips() {
        let signed = append_custom(&BARE, "fluxrig.signature", &[7u8; 64]).unwrap();
        // 0x00, size 0x52 = 1 + 17 + 64, name len 0x11.
        assert_eq!(&signed[8..11], &[0x00, 0x52, 0x11]);
        let found = find_custom(&signed, "fluxrig.signature").unwrap().unwrap();
        assert_eq!(found.payload, &[7u8; 64][..]);
        assert_eq!(found.range, 8..signed.len());
        assert_eq!(strip_custom(&signed, "fluxrig.signature").unwrap(), BARE.to_vec());
        assert_eq!(find_custom(&signed, "other").unwrap(), None);
    }

    #[test]
    fn strip_removes_only_the_first_of_a_name() {
        let once = append_custom(&BARE, "a", b"1").unwrap();
        let twice = append_custom(&once, "a", b"2").unwrap();
        assert_eq!(count_custom(&twice, "a").unwrap(), 2);
        let stripped = strip_custom(&twice, "a").unwrap();
        assert_eq!(find_custom(&stripped, "a").unwrap().unwrap().payload, b"2");
    }

    #[test]
    fn counts_defined_functions() {
        assert_eq!(function_count(&BARE), Ok(0));
        let mut m = BARE.to_vec();
        m.extend_from_slice(&[0x03, 0x03, 0x02, 0x00, 0x00]); // function section: 2 functions
        assert_eq!(function_count(&m), Ok(2));
        m.truncate(10);
        m[9] = 0x00; // empty section: no count
        assert_eq!(function_count(&m), Err(SectionError::Truncated { offset: 8 }));
    }

    #[test]
    fn contents_add_up_repeated_sections_and_find_bodiless_code() {
        let mut m = BARE.to_vec();
        m.extend_from_slice(&[0x03, 0x02, 0x01, 0x00]); // 1 function
        m.extend_from_slice(&[0x03, 0x03, 0x02, 0x00, 0x00]); // 2 more (invalid, but framed)
        m.extend_from_slice(&[0x0b, 0x01, 0x05]); // 5 data segments
        m.extend_from_slice(&[0x01, 0x04, 0x01, 0x60, 0x00, 0x00]); // a type: 6 metadata bytes
        let c = contents(&m).unwrap();
        assert_eq!((c.functions, c.data_segments, c.metadata_bytes, c.bodiless_code_bytes), (3, 5, 6, 0));
        // Found by the `section` fuzz target: function_count reads the first section only.
        assert_eq!(function_count(&m), Ok(1));
        m.extend_from_slice(&[0x0a, 0x04, 0x00, 0x0b, 0x0b, 0x0b]); // no bodies, 3 bytes more
        assert_eq!(contents(&m).unwrap().bodiless_code_bytes, 3);
        m.extend_from_slice(&[0x0a, 0x01]); // a code section cut short
        assert!(contents(&m).is_err());
    }

    #[test]
    fn long_payload_uses_multi_byte_leb() {
        let payload = vec![1u8; 300];
        let m = append_custom(&BARE, "n", &payload).unwrap();
        assert_eq!(&m[8..11], &[0x00, 0xae, 0x02]); // 1 + 1 + 300 = 302 = 0x12e
        assert_eq!(find_custom(&m, "n").unwrap().unwrap().payload.len(), 300);
    }

    #[test]
    fn malformed_framing_is_an_error() {
        assert_eq!(sections(b"\0asm").err(), Some(SectionError::BadHeader));
        assert_eq!(sections(b"\0asm\x02\0\0\0").err(), Some(SectionError::BadHeader));
        let mut truncated = BARE.to_vec();
        truncated.extend_from_slice(&[0x01, 0x05, 0x00]);
        assert_eq!(check_framing(&truncated), Err(SectionError::Truncated { offset: 8 }));
        let mut bad_leb = BARE.to_vec();
        bad_leb.extend_from_slice(&[0x00, 0xff, 0xff, 0xff, 0xff, 0x7f]);
        assert_eq!(check_framing(&bad_leb), Err(SectionError::BadLeb128 { offset: 9 }));
        let mut cut_leb = BARE.to_vec();
        cut_leb.extend_from_slice(&[0x00, 0x80]);
        assert_eq!(check_framing(&cut_leb), Err(SectionError::BadLeb128 { offset: 9 }));
        let mut bad_name = BARE.to_vec();
        bad_name.extend_from_slice(&[0x00, 0x02, 0x01, 0xff]);
        assert_eq!(check_framing(&bad_name), Err(SectionError::BadName { offset: 8 }));
        let mut name_past_body = BARE.to_vec();
        name_past_body.extend_from_slice(&[0x00, 0x01, 0x05]);
        assert_eq!(check_framing(&name_past_body), Err(SectionError::Truncated { offset: 8 }));
        // An error after the wanted section still fails the lookup.
        let mut tail = append_custom(&BARE, "a", b"x").unwrap();
        tail.push(0x01);
        assert!(find_custom(&tail, "a").is_err());
    }

    #[test]
    fn module_size_limit_edge() {
        let mut at_limit = vec![0u8; MAX_MODULE_BYTES];
        at_limit[..8].copy_from_slice(&BARE);
        // A custom section filling the rest exactly: id, 4-byte LEB size, then body.
        let body_len = MAX_MODULE_BYTES - 8 - 1 - 4;
        at_limit[8] = 0;
        let leb = [
            (body_len & 0x7f) as u8 | 0x80,
            ((body_len >> 7) & 0x7f) as u8 | 0x80,
            ((body_len >> 14) & 0x7f) as u8 | 0x80,
            ((body_len >> 21) & 0x7f) as u8,
        ];
        at_limit[9..13].copy_from_slice(&leb);
        at_limit[13] = 0; // empty name
        assert_eq!(check_framing(&at_limit), Ok(()));
        at_limit.push(0);
        assert_eq!(
            check_framing(&at_limit),
            Err(SectionError::ModuleTooLarge { limit: MAX_MODULE_BYTES, got: MAX_MODULE_BYTES + 1 })
        );
    }

    #[test]
    fn never_panics_on_any_short_input() {
        // Every prefix and every single-byte corruption of a signed module.
        let m = append_custom(&BARE, "fluxrig.signature", &[9u8; 64]).unwrap();
        for end in 0..=m.len() {
            let _ = check_framing(&m[..end]);
        }
        for i in 0..m.len() {
            for b in [0x00, 0x7f, 0x80, 0xff] {
                let mut c = m.clone();
                c[i] = b;
                let _ = find_custom(&c, "fluxrig.signature");
                let _ = strip_custom(&c, "fluxrig.signature");
            }
        }
    }
}
