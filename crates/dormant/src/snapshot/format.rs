//! The snapshot's on-disk vocabulary: the manifest, overlay markers, which xattrs travel, and
//! tar headers with PAX records (written and parsed here, byte-exact), sparse files' among them.
//!
//! We parse PAX records ourselves (the tar crate runs in raw mode) because the crate splits
//! records at newlines, which silently mangles names and binary xattr values containing `\n`.

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};

/// Name of the first entry of every snapshot.
pub(super) const MANIFEST_NAME: &str = "dormant-snapshot.json";
/// The format this code writes. Version 2 added sparse entries and the manifest's
/// `disk_bytes`; version 1 snapshots are read as well.
pub(super) const FORMAT_VERSION: u32 = 2;
/// The versions this code reads.
pub(super) const READABLE_VERSIONS: [u32; 2] = [1, 2];
/// OCI layer convention: `d/.wh.x` says `d/x` was deleted.
pub(super) const WHITEOUT_PREFIX: &[u8] = b".wh.";
/// OCI layer convention: `d/.wh..wh..opq` says `d` hides its lower contents.
pub(super) const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
/// The opaque marker restored into an upper dir; every overlay driver we know reads it.
pub(super) const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
/// Opaque markers as overlay drivers write them (kernel overlay, fuse-overlayfs without
/// `trusted.*`, kernel overlay with `userxattr`).
pub(super) const OPAQUE_XATTRS: [&str; 3] = [
    "trusted.overlay.opaque",
    "user.fuseoverlayfs.opaque",
    "user.overlay.opaque",
];
const PAX_XATTR: &[u8] = b"SCHILY.xattr.";
/// PAX keys of GNU tar's sparse format 1.0 (see `sparse`).
const SPARSE_MAJOR: &[u8] = b"GNU.sparse.major";
const SPARSE_MINOR: &[u8] = b"GNU.sparse.minor";
const SPARSE_NAME: &[u8] = b"GNU.sparse.name";
const SPARSE_REALSIZE: &[u8] = b"GNU.sparse.realsize";
/// Largest manifest or PAX header we accept; ours are a few hundred bytes.
pub(super) const MAX_META_BYTES: u64 = 1 << 20;

/// The first entry: what the snapshot holds.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Manifest {
    pub format: u32,
    pub trees: Vec<String>,
    pub created_unix_ms: u64,
    /// Disk space each tree took when captured (its allocated blocks), in `trees`' order: what
    /// a restore needs free. Empty in version 1.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disk_bytes: Vec<u64>,
}

/// Overlay-internal xattrs describe one driver's bookkeeping (origin, redirect, metacopy...);
/// they are never copied and never restored.
pub(super) fn is_internal_xattr(name: &[u8]) -> bool {
    [
        &b"trusted.overlay."[..],
        b"user.overlay.",
        b"user.fuseoverlayfs.",
    ]
    .iter()
    .any(|p| name.starts_with(p))
}

/// Owner, permissions and time of one entry.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Meta {
    /// Permission bits including setuid, setgid and sticky.
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// Seconds since the epoch (times before 1970 are stored as 0).
    pub mtime: u64,
}

/// One xattr: name and value, raw bytes.
pub(super) type Xattr = (Vec<u8>, Vec<u8>);

/// The header of one entry.
pub(super) struct Head<'a> {
    pub kind: tar::EntryType,
    pub path: &'a [u8],
    pub link: Option<&'a [u8]>,
    pub meta: Meta,
    pub xattrs: &'a [Xattr],
    /// For a sparse file: its apparent size; the content is then a sparse map and the data.
    pub sparse: Option<u64>,
}

/// Appends one entry: a PAX header first when the path or link does not fit a plain ustar
/// field, the entry has xattrs or it is sparse, then the ustar header and the content. `data`
/// must yield exactly `size` bytes (tar pads by what it copied, so a short reader would
/// misalign). A sparse entry's real name is only in its PAX header, as GNU tar writes it.
pub(super) fn append<W: Write>(
    out: &mut tar::Builder<W>,
    head: &Head,
    size: u64,
    data: impl Read,
) -> io::Result<()> {
    let mut pax = Vec::new();
    let stand_in;
    let name = match head.sparse {
        Some(realsize) => {
            pax_record(&mut pax, SPARSE_MAJOR, b"1");
            pax_record(&mut pax, SPARSE_MINOR, b"0");
            pax_record(&mut pax, SPARSE_NAME, head.path);
            pax_record(&mut pax, SPARSE_REALSIZE, realsize.to_string().as_bytes());
            stand_in = super::sparse::stand_in_name(head.path);
            &stand_in[..]
        }
        None => {
            if !fits_ustar(head.path, 100) {
                pax_record(&mut pax, b"path", head.path);
            }
            head.path
        }
    };
    if let Some(link) = head.link.filter(|l| !fits_ustar(l, 100)) {
        pax_record(&mut pax, b"linkpath", link);
    }
    for (name, value) in head.xattrs {
        let key = [PAX_XATTR, name].concat();
        pax_record(&mut pax, &key, value);
    }
    if !pax.is_empty() {
        let mut h = tar::Header::new_ustar();
        set_bytes(&mut h.as_old_mut().name, b"././@PaxHeader");
        h.set_entry_type(tar::EntryType::XHeader);
        h.set_mode(0o644);
        h.set_size(pax.len() as u64);
        h.set_cksum();
        out.append(&h, pax.as_slice())?;
    }
    let mut h = tar::Header::new_ustar();
    set_bytes(&mut h.as_old_mut().name, name);
    if let Some(link) = head.link {
        set_bytes(&mut h.as_old_mut().linkname, link);
    }
    h.set_entry_type(head.kind);
    h.set_mode(head.meta.mode & 0o7777);
    h.set_uid(head.meta.uid);
    h.set_gid(head.meta.gid);
    h.set_mtime(head.meta.mtime);
    h.set_size(size);
    h.set_cksum();
    out.append(&h, data)
}

fn fits_ustar(bytes: &[u8], field: usize) -> bool {
    bytes.len() <= field && bytes.is_ascii() && !bytes.contains(&0)
}

/// Fills a fixed header field; what does not fit (or is not ASCII) is in a PAX record, so the
/// field gets an ASCII stand-in for tools that ignore PAX.
fn set_bytes(field: &mut [u8], bytes: &[u8]) {
    field.fill(0);
    for (slot, b) in field.iter_mut().zip(bytes) {
        *slot = if b.is_ascii() && *b != 0 { *b } else { b'_' };
    }
}

pub(super) fn pax_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    // "<len> <key>=<value>\n" where <len> counts itself.
    let rest = key.len() + value.len() + 3;
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

/// What a PAX header says about the next entry.
#[derive(Debug, Default)]
pub(super) struct Pax {
    pub path: Option<Vec<u8>>,
    pub linkpath: Option<Vec<u8>>,
    pub xattrs: Vec<Xattr>,
    /// A sparse file's name and apparent size.
    pub sparse: Option<(Vec<u8>, u64)>,
}

/// The GNU sparse records of one PAX header, as read.
#[derive(Default)]
struct SparseRecords {
    major: Option<Vec<u8>>,
    minor: Option<Vec<u8>>,
    name: Option<Vec<u8>>,
    realsize: Option<Vec<u8>>,
}

impl SparseRecords {
    /// None without sparse records; else all four, version 1.0, a size a file can have.
    fn check(self, path: &Option<Vec<u8>>) -> Result<Option<(Vec<u8>, u64)>, String> {
        let SparseRecords {
            major,
            minor,
            name,
            realsize,
        } = self;
        if major.is_none() && minor.is_none() && name.is_none() && realsize.is_none() {
            return Ok(None);
        }
        if major.as_deref() != Some(b"1") || minor.as_deref() != Some(b"0") {
            return Err("a sparse entry not in GNU's PAX sparse format 1.0".into());
        }
        if path.is_some() {
            return Err("a sparse entry with both a path and a sparse name".into());
        }
        let name = name.ok_or("a sparse entry without a name")?;
        let realsize = realsize
            .and_then(|v| std::str::from_utf8(&v).ok()?.parse::<u64>().ok())
            .filter(|size| i64::try_from(*size).is_ok())
            .ok_or("a sparse entry without a valid size")?;
        Ok(Some((name, realsize)))
    }
}

/// Parses PAX records by their length prefix (values may hold any byte, `\n` included).
/// Keys we never write that would change how an entry reads (size, uid, sparse maps other than
/// GNU's 1.0...) are refused, so that we and the tar crate can never disagree about the
/// archive's layout.
pub(super) fn parse_pax(mut data: &[u8]) -> Result<Pax, String> {
    let mut pax = Pax::default();
    let mut sparse = SparseRecords::default();
    while !data.is_empty() {
        let space = data
            .iter()
            .position(|b| *b == b' ')
            .ok_or("PAX record without a length")?;
        let len: usize = std::str::from_utf8(&data[..space])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or("PAX record with a bad length")?;
        if len <= space + 1 || len > data.len() || data[len - 1] != b'\n' {
            return Err("PAX record with a wrong length".into());
        }
        let record = &data[space + 1..len - 1];
        let eq = record
            .iter()
            .position(|b| *b == b'=')
            .ok_or("PAX record without '='")?;
        let (key, value) = (&record[..eq], &record[eq + 1..]);
        match key {
            b"path" => pax.path = Some(value.to_vec()),
            b"linkpath" => pax.linkpath = Some(value.to_vec()),
            SPARSE_MAJOR => sparse.major = Some(value.to_vec()),
            SPARSE_MINOR => sparse.minor = Some(value.to_vec()),
            SPARSE_NAME => sparse.name = Some(value.to_vec()),
            SPARSE_REALSIZE => sparse.realsize = Some(value.to_vec()),
            b"mtime" | b"atime" | b"ctime" | b"comment" | b"charset" | b"uname" | b"gname" => {}
            _ if key.starts_with(PAX_XATTR) => {
                pax.xattrs
                    .push((key[PAX_XATTR.len()..].to_vec(), value.to_vec()));
            }
            _ => {
                return Err(format!(
                    "unsupported PAX record {:?}",
                    String::from_utf8_lossy(key)
                ))
            }
        }
        data = &data[len..];
    }
    pax.sparse = sparse.check(&pax.path)?;
    Ok(pax)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_records_round_trip_any_bytes() {
        let mut data = Vec::new();
        let long = vec![b'x'; 300];
        pax_record(&mut data, b"path", &long);
        pax_record(&mut data, b"SCHILY.xattr.user.bin", b"a\nb=c\0d");
        pax_record(&mut data, b"linkpath", "dé/\n".as_bytes());
        let pax = parse_pax(&data).unwrap();
        assert_eq!(pax.path.as_deref(), Some(&long[..]));
        assert_eq!(pax.linkpath.as_deref(), Some("dé/\n".as_bytes()));
        assert_eq!(
            pax.xattrs,
            vec![(b"user.bin".to_vec(), b"a\nb=c\0d".to_vec())]
        );
        // Lengths across a digit boundary: 9+... records of 99..101 bytes.
        for n in 85..100 {
            let mut d = Vec::new();
            pax_record(&mut d, b"path", &vec![b'y'; n]);
            assert_eq!(parse_pax(&d).unwrap().path.unwrap().len(), n);
        }
        assert!(parse_pax(b"12 size=100\n").is_err());
        assert!(parse_pax(b"99 path=x\n").is_err());
    }
}
