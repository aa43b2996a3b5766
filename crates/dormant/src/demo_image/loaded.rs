//! What this very process needs to run somewhere else: the ELF interpreter its executable names
//! and the shared objects it has mapped, read from `/proc/self`. The demo image is built from
//! exactly these, so it needs neither a source tree nor a compiler.

use std::path::PathBuf;

use anyhow::{bail, Context as _};

/// The running executable and what it loaded.
pub struct Loaded {
    /// The executable's bytes (read through `/proc/self/exe`, so a rebuild since start is
    /// harmless), without debug info: see [`strip_to_segments`].
    pub executable: Vec<u8>,
    /// The interpreter path written in the executable (`/lib64/ld-linux-x86-64.so.2`), where the
    /// kernel looks for it; `None` for a static executable.
    pub interpreter: Option<String>,
    /// Every shared object mapped into this process (the interpreter's real file among them), by
    /// its real path, in the order of the mappings.
    pub shared_objects: Vec<PathBuf>,
}

/// Reads this process's executable and the shared objects it has mapped.
pub fn this_process() -> anyhow::Result<Loaded> {
    let executable =
        std::fs::read("/proc/self/exe").context("reading this executable (/proc/self/exe)")?;
    let interpreter = interpreter(&executable).context("reading this executable's ELF headers")?;
    let executable =
        strip_to_segments(executable).context("stripping this executable for the image")?;
    let maps = std::fs::read_to_string("/proc/self/maps").context("reading /proc/self/maps")?;
    Ok(Loaded {
        executable,
        interpreter,
        shared_objects: shared_objects(&maps)?,
    })
}

/// `elf` without what only debuggers and linkers read: everything past the last byte a program
/// header maps (section headers, symbols, debug info) is cut and the section header table is
/// forgotten. The kernel and the dynamic loader read only program headers, so it runs the same;
/// a release `dormant` shrinks from ~90 MB to ~16 MB.
pub fn strip_to_segments(mut elf: Vec<u8>) -> anyhow::Result<Vec<u8>> {
    let headers = program_headers(&elf)?;
    let mut end = 0usize;
    for at in headers {
        let offset = read_usize(&elf, at + 8)?;
        let size = read_usize(&elf, at + 32)?;
        end = end.max(offset.checked_add(size).ok_or_else(truncated)?);
    }
    if end > elf.len() {
        return Err(truncated());
    }
    elf.truncate(end);
    // e_shoff, e_shnum, e_shstrndx: no section header table.
    elf[40..48].fill(0);
    elf[60..64].fill(0);
    Ok(elf)
}

/// The distinct shared objects (`*.so`, `*.so.N...`) in a `/proc/<pid>/maps` text, in order.
pub fn shared_objects(maps: &str) -> anyhow::Result<Vec<PathBuf>> {
    let mut found: Vec<PathBuf> = Vec::new();
    for line in maps.lines() {
        let Some(path) = mapped_path(line) else {
            continue;
        };
        let name = path.rsplit('/').next().unwrap_or_default();
        if !(name.ends_with(".so") || name.contains(".so.")) {
            continue;
        }
        if let Some(gone) = path.strip_suffix(" (deleted)") {
            bail!(
                "the shared object {gone} was replaced after dormant started (an upgrade?); \
                 run the command again"
            );
        }
        let path = PathBuf::from(path);
        if !found.contains(&path) {
            found.push(path);
        }
    }
    Ok(found)
}

/// The path column of one maps line (`addr perms offset dev inode path`), when it is a file.
fn mapped_path(line: &str) -> Option<&str> {
    let mut rest = line;
    for _ in 0..5 {
        rest = rest.trim_start();
        let end = rest.find(char::is_whitespace)?;
        rest = &rest[end..];
    }
    Some(rest.trim_start()).filter(|path| path.starts_with('/'))
}

/// The program interpreter (`PT_INTERP`) of a 64-bit little-endian ELF executable; `None` when it
/// has none (a static executable).
pub fn interpreter(elf: &[u8]) -> anyhow::Result<Option<String>> {
    const PT_INTERP: u32 = 3;
    for at in program_headers(elf)? {
        if read_u32(elf, at)? != PT_INTERP {
            continue;
        }
        let offset = read_usize(elf, at + 8)?;
        let size = read_usize(elf, at + 32)?;
        let bytes = offset
            .checked_add(size)
            .and_then(|end| elf.get(offset..end))
            .ok_or_else(|| anyhow::anyhow!("the ELF interpreter path lies outside the file"))?;
        let path = bytes.split(|b| *b == 0).next().unwrap_or_default();
        let path = std::str::from_utf8(path).context("the ELF interpreter path is not UTF-8")?;
        if !path.starts_with('/') {
            bail!("the ELF interpreter path `{path}` is not absolute");
        }
        return Ok(Some(path.to_owned()));
    }
    Ok(None)
}

/// Where each program header of a 64-bit little-endian ELF file starts.
fn program_headers(elf: &[u8]) -> anyhow::Result<Vec<usize>> {
    const PHDR_SIZE: usize = 56;
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" {
        bail!("not an ELF file");
    }
    if elf[4] != 2 || elf[5] != 1 {
        bail!("not a 64-bit little-endian ELF file; the demo image supports only those");
    }
    let phoff = read_usize(elf, 32)?;
    let phentsize = usize::from(read_u16(elf, 54)?);
    let phnum = usize::from(read_u16(elf, 56)?);
    if phentsize < PHDR_SIZE {
        bail!("ELF program header entries of {phentsize} bytes are too small");
    }
    (0..phnum)
        .map(|i| {
            let at = phoff.checked_add(i * phentsize).ok_or_else(truncated)?;
            elf.get(at..at + PHDR_SIZE).ok_or_else(truncated)?;
            Ok(at)
        })
        .collect()
}

fn truncated() -> anyhow::Error {
    anyhow::anyhow!("truncated ELF program headers")
}

fn read_u16(elf: &[u8], at: usize) -> anyhow::Result<u16> {
    let bytes = elf.get(at..at + 2).ok_or_else(truncated)?;
    Ok(u16::from_le_bytes([bytes[0], bytes[1]]))
}

fn read_u32(elf: &[u8], at: usize) -> anyhow::Result<u32> {
    let bytes = elf.get(at..at + 4).ok_or_else(truncated)?;
    Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

fn read_usize(elf: &[u8], at: usize) -> anyhow::Result<usize> {
    let bytes: [u8; 8] = elf
        .get(at..at + 8)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(truncated)?;
    usize::try_from(u64::from_le_bytes(bytes)).map_err(|_| truncated())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: &str = "\
55d0c0a00000-55d0c0b00000 r--p 00000000 fd:00 1234    /opt/my dir/dormant
55d0c1000000-55d0c1021000 rw-p 00000000 00:00 0       [heap]
7f0000000000-7f0000028000 r--p 00000000 fd:00 42      /usr/lib/x86_64-linux-gnu/libc.so.6
7f0000028000-7f00001bd000 r-xp 00028000 fd:00 42      /usr/lib/x86_64-linux-gnu/libc.so.6
7f00001bd000-7f00001c0000 r--p 00000000 fd:00 43      /usr/lib/x86_64-linux-gnu/libgcc_s.so.1
7f00001c0000-7f00001c1000 r--p 00000000 fd:00 44      /usr/lib/locale/locale-archive
7f00001c1000-7f00001c2000 rw-s 00000000 00:01 45      /memfd:shm (deleted)
7f00001c2000-7f00001c3000 r--p 00000000 fd:00 46      /usr/local/lib/libplain.so
7f00001c3000-7f00001f0000 r--p 00000000 fd:00 47      /usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0       [stack]
7ffd00100000-7ffd00102000 r-xp 00000000 00:00 0       [vdso]
";

    #[test]
    fn shared_objects_are_listed_once_in_order_and_nothing_else() {
        let found = shared_objects(MAPS).unwrap();
        let expected: Vec<PathBuf> = [
            "/usr/lib/x86_64-linux-gnu/libc.so.6",
            "/usr/lib/x86_64-linux-gnu/libgcc_s.so.1",
            "/usr/local/lib/libplain.so",
            "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        assert_eq!(found, expected);
    }

    #[test]
    fn a_replaced_shared_object_is_an_error_naming_it() {
        let maps = "7f0-7f1 r--p 00000000 fd:00 42 /usr/lib/libz.so.1 (deleted)\n";
        let err = shared_objects(maps).unwrap_err().to_string();
        assert!(
            err.contains("/usr/lib/libz.so.1") && err.contains("replaced"),
            "{err}"
        );
    }

    #[test]
    fn this_process_names_its_interpreter_and_maps_it() {
        let loaded = this_process().unwrap();
        assert!(!loaded.executable.is_empty());
        // The test binary is linked like dormant itself: dynamically on a glibc host.
        let interpreter = loaded
            .interpreter
            .expect("a dynamically linked test binary");
        let real = std::fs::canonicalize(&interpreter).unwrap();
        assert!(
            loaded.shared_objects.contains(&real),
            "{real:?} not in {:?}",
            loaded.shared_objects
        );
    }

    /// A minimal ELF header with one program header of type `p_type` pointing at `payload`.
    fn elf_with(p_type: u32, payload: &[u8]) -> Vec<u8> {
        let mut elf = vec![0u8; 64 + 56];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        elf[32..40].copy_from_slice(&64u64.to_le_bytes());
        elf[54..56].copy_from_slice(&56u16.to_le_bytes());
        elf[56..58].copy_from_slice(&1u16.to_le_bytes());
        elf[64..68].copy_from_slice(&p_type.to_le_bytes());
        elf[72..80].copy_from_slice(&(120u64).to_le_bytes());
        elf[96..104].copy_from_slice(&(payload.len() as u64).to_le_bytes());
        elf.extend_from_slice(payload);
        elf
    }

    #[test]
    fn interpreter_is_read_from_pt_interp() {
        let elf = elf_with(3, b"/lib/ld-musl-x86_64.so.1\0");
        assert_eq!(
            interpreter(&elf).unwrap().as_deref(),
            Some("/lib/ld-musl-x86_64.so.1")
        );
        assert_eq!(interpreter(&elf_with(1, b"")).unwrap(), None, "static");
    }

    #[test]
    fn stripping_keeps_every_segment_and_drops_the_rest() {
        let elf = std::fs::read("/proc/self/exe").unwrap();
        let stripped = strip_to_segments(elf.clone()).unwrap();
        assert!(
            stripped.len() < elf.len(),
            "a test binary has debug info to drop"
        );
        assert_eq!(
            program_headers(&stripped).unwrap(),
            program_headers(&elf).unwrap()
        );
        assert_eq!(interpreter(&stripped).unwrap(), interpreter(&elf).unwrap());
        assert_eq!(read_usize(&stripped, 40).unwrap(), 0, "no section headers");
        let mut cut = elf_with(1, b"payload");
        cut.truncate(cut.len() - 1);
        assert!(
            strip_to_segments(cut).is_err(),
            "a segment past the end of the file"
        );
    }

    #[test]
    fn malformed_headers_are_errors_not_panics() {
        assert!(interpreter(b"\x7fELF").is_err());
        assert!(interpreter(&[0u8; 80]).is_err());
        let mut elf = elf_with(3, b"/ld.so\0");
        elf[96..104].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(interpreter(&elf).is_err());
        let mut elf = elf_with(1, b"");
        elf[56..58].copy_from_slice(&u16::MAX.to_le_bytes());
        assert!(interpreter(&elf).is_err());
        assert!(interpreter(&elf_with(3, b"relative\0")).is_err());
    }
}
